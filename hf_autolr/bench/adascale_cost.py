"""Suite ``adascale_cost``: what AdaScale costs per step where its gradient samples come for free.

AdaScale (Johnson et al., ICML 2020, arXiv 2007.05105) needs S ≥ 2 gradient samples per step,
which processes and accumulated micro-batches give. Both arms run the same micro-batches in the
same loop (:class:`~hf_autolr.integrations.driver.FeedbackDriver`, AdamW), one at a constant LR,
one with AdaScale, so only AdaScale's own work is priced: its gradient hooks, the reduction of its
statistics (launched with DDP's last gradient bucket) and its bookkeeping. Settings, as processes
× micro-batches of ``workload.micro_batch`` items per step: ``ddp`` 2 × 1 (gloo), ``ddp_accumulate``
2 × 2, ``accumulate`` 1 × 2. Timing: :func:`~hf_autolr.bench.timing.paired_cpu_time` on every
rank (one torch thread each; rank 0 reported).

    python -m hf_autolr.bench adascale_cost --quick
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from hf_autolr.bench.cli import check_names
from hf_autolr.bench.workloads import QUICK_WORKLOADS, WORKLOADS, Workload

RESUMABLE = False
SETTINGS = {"ddp": (2, 1), "ddp_accumulate": (2, 2), "accumulate": (1, 2)}  # processes, micro-batches
DEFAULT_WORKLOADS = ("digits_mlp", "embedded_qa_minilm")
SIZES = {"full": {"digits": (20, 50), "qa": (3, 2)}, "quick": {"digits": (2, 3), "qa": (1, 1)}}  # blocks, steps
ARMS = ("constant", "adascale")
LR = 1e-3  # AdamW in both arms: a step that moves the weights, far from divergence


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS), help="comma-separated subset of: "
                        + ", ".join(DEFAULT_WORKLOADS))
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated subset of: {', '.join(SETTINGS)}")


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    check_names(parser, "--workloads", args.workloads, list(DEFAULT_WORKLOADS))
    check_names(parser, "--settings", args.settings, list(SETTINGS))


def config(args: argparse.Namespace) -> dict[str, Any]:
    tier = "quick" if args.quick else "full"
    return {"workloads": args.workloads.split(","), "settings": {s: SETTINGS[s] for s in args.settings.split(",")},
            "sizes": SIZES[tier], "lr": LR, "optimizer": "AdamW", "threads_per_process": 1}


def _arm(task: Any, workload: Workload, name: str, processes: int, micro: int):
    """(one-step function, scheduler) for arm ``name``."""
    import hf_autolr  # noqa: PLC0415
    from hf_autolr.bench.methods import adamw  # noqa: PLC0415
    from hf_autolr.integrations.driver import FeedbackDriver  # noqa: PLC0415

    model = task.model(0)
    model.train()
    if processes > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = adamw(model, LR)
    if name == "adascale":
        scheduler = hf_autolr.build_scheduler("adascale", optimizer, num_training_steps=10**7)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    driver = FeedbackDriver(scheduler).attach(model)

    def step(batch: Any) -> None:
        parts = task.split(batch, workload.micro_batch)[:micro]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            context = model.no_sync() if processes > 1 and not last else contextlib.nullcontext()
            with context:
                loss = task.loss(model, part) / len(parts)
                loss.backward()
            driver.add_loss(loss.detach() * len(parts))
        driver.before_optimizer_step()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if not driver.step():
            scheduler.step()  # the constant arm: not a feedback method

    return step, scheduler


def measure(workload: Workload, processes: int, micro: int, blocks: int, block_steps: int, rank: int = 0) -> dict[str, Any]:
    """Both arms on this rank, paired; AdaScale's scale S and gain checked afterwards."""
    from hf_autolr.bench.timing import paired_cpu_time  # noqa: PLC0415

    task = workload.load()
    arms, schedulers = {}, {}
    for name in ARMS:
        arms[name], schedulers[name] = _arm(task, workload, name, processes, micro)
    timed = paired_cpu_time(arms, task.batches(rank), "constant", blocks=blocks, block_steps=block_steps)
    adascale = schedulers["adascale"]
    return {"workload": workload.name, "processes": processes, "micro_batches": micro, "blocks": blocks,
            "block_steps": block_steps, "scale": adascale.scale, "gain": adascale.gain,
            **{f"{arm}_ms_per_step": timed[arm]["ms_per_step"] for arm in ARMS},
            **{key: timed["adascale"][key] for key in ("overhead", "overhead_min", "overhead_max")}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, job: dict[str, Any], out: str) -> None:
    import torch.distributed as dist  # noqa: PLC0415

    from hf_autolr.bench.runner import prepare_process  # noqa: PLC0415

    prepare_process(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=600))
    try:
        if dist.get_world_size() != world:
            raise RuntimeError(f"expected {world} processes, got {dist.get_world_size()}")
        record = measure(_workload(job), world, job["micro"], job["blocks"], job["block_steps"], rank)
        if rank == 0:
            Path(out).write_text(json.dumps(record))
        dist.barrier()
    finally:
        # The DDP models must be freed while the group is still registered: a reducer freed after
        # destroy_process_group can abort the process at exit (pytorch/pytorch#56297).
        gc.collect()
        dist.destroy_process_group()


def _workload(job: dict[str, Any]) -> Workload:
    return (QUICK_WORKLOADS if job["quick"] else WORKLOADS)[job["workload"]]


def run(args: argparse.Namespace, results: dict[str, Any], save) -> None:
    import torch.multiprocessing as mp  # noqa: PLC0415

    from hf_autolr.bench.runner import prepare_process  # noqa: PLC0415

    cfg = config(args)
    for name in cfg["workloads"]:
        for setting, (processes, micro) in cfg["settings"].items():
            key = f"adascale_cost|{name}|{setting}"
            blocks, block_steps = cfg["sizes"][_workload({"quick": args.quick, "workload": name}).loader]
            job = {"workload": name, "quick": args.quick, "micro": micro, "blocks": blocks, "block_steps": block_steps}
            if processes == 1:
                prepare_process(1)
                record = measure(_workload(job), 1, micro, blocks, block_steps)
            else:
                out = Path(args.out or ".") / f".{setting}_{name}.json"
                mp.start_processes(_worker, args=(processes, _free_port(), job, str(out)), nprocs=processes,
                                   start_method="spawn")
                record = json.loads(out.read_text())
                out.unlink()
            results["runs"][key] = dict(record, setting=setting)
            save()


def report(results: dict[str, Any], out: Path) -> str:
    lines = ["## AdaScale's cost per step against the same loop at a constant LR (AdamW, paired, CPU time)\n\n",
             "overhead = median over blocks of (AdaScale's time / constant LR's) − 1 [min … max]; S = the gradient "
             "samples AdaScale counted per step (processes × micro-batches).\n\n",
             "| workload | setting (processes × micro-batches) | S | constant ms/step | AdaScale ms/step | overhead |\n",
             "|---|---|---|---|---|---|\n"]
    for r in results["runs"].values():
        lines.append(f"| {r['workload']} | {r['setting']} ({r['processes']} × {r['micro_batches']}) | {r['scale']} | "
                     f"{r['constant_ms_per_step']:.3g} | {r['adascale_ms_per_step']:.3g} | {100 * r['overhead']:+.1f}% "
                     f"[{100 * r['overhead_min']:+.1f} … {100 * r['overhead_max']:+.1f}] |\n")
    return "".join(lines)
