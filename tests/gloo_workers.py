"""Two-process helpers for the gloo tests: a free loopback port, and workers that cannot hang CI."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import pytest
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_workers(fn: Callable[..., None], args: tuple, nprocs: int = 2, timeout: float = 180.0) -> None:
    """``fn(rank, *args)`` in ``nprocs`` forked processes with MASTER_ADDR/PORT set to a free loopback
    port; a worker's exception is re-raised, and a run past ``timeout`` seconds fails the test
    (workers killed) instead of hanging it."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), GLOO_SOCKET_IFNAME="lo")
    context = mp.start_processes(fn, args=args, nprocs=nprocs, join=False, start_method="fork")
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"{nprocs} worker processes did not finish within {timeout:.0f} s")
