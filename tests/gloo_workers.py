"""Two-process gloo helpers for the tests: a free loopback port, and workers that cannot hang CI."""

from __future__ import annotations

import gc
import os
import socket
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _in_process_group(rank: int, world: int, port: int, fn: Callable[..., None], args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    assert dist.get_world_size() == world
    fn(rank, *args)
    # fn's objects are gone now. They must go while the group is still registered: a DDP Reducer
    # holding the last reference to the group would, when freed, join gloo's threads with the GIL
    # held while one of them waits for the GIL to free a tensor (pytorch/pytorch#56297) -- the
    # hang this test suite once had.
    gc.collect()
    dist.destroy_process_group()


def run_workers(fn: Callable[..., None], args: tuple = (), nprocs: int = 2, timeout: float = 180.0) -> None:
    """``fn(rank, *args)`` in ``nprocs`` forked processes, each in a gloo process group on a free
    loopback port (world size asserted). A worker's exception is re-raised; a run past ``timeout``
    seconds fails the test (workers killed) instead of hanging it. Workers report through files.

    Fork, not spawn: the children reuse the imported modules (spawn re-imports transformers)."""
    port = free_port()
    context = mp.start_processes(
        _in_process_group, args=(nprocs, port, fn, args), nprocs=nprocs, join=False, start_method="fork"
    )
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"{nprocs} worker processes did not finish within {timeout:.0f} s")
