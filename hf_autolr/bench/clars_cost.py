"""Suite ``clars_cost``: what a CLARS step costs (per-sample-norm hooks included) against SGD and
``pytorch_optimizer.LARS``.

CLARS: Huo, Gu, Huang, "Large Batch Training Does Not Need Warmup", arXiv 2002.01576
(``hf_autolr.optim.CLARS`` is a reconstruction). Workloads, on random data at batch 256: ``mlp``
784-1024-1024-10; ``cnn`` two 3×3 convolutions (3-32-64, max-pool after each) and a linear head
on 3×32×32 inputs. A step is forward + backward + ``optimizer.step()``. Arms: ``sgd`` (momentum
0.9), ``lars`` and ``clars`` (attached to the model: its hooks run in the backward). Time: the
three paired in one process by :func:`~hf_autolr.bench.timing.paired_cpu_time` (the ratio to
SGD per block; full tier 5 blocks of 10 steps, quick 2 × 2). Memory (quick tier: ``mlp`` only): each arm in a fresh
subprocess that imports the same modules for every arm: peak RSS (``VmHWM``) and its growth over
the RSS before the first step.

    python -m hf_autolr.bench clars_cost --quick
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

RESUMABLE = False
BATCH = 256
ARMS = ("sgd", "lars", "clars")
WORKLOADS = ("mlp", "cnn")
SIZES = {"full": {"blocks": 5, "block_steps": 10, "memory_steps": 10, "memory_workloads": list(WORKLOADS)},
         "quick": {"blocks": 2, "block_steps": 2, "memory_steps": 2, "memory_workloads": ["mlp"]}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")


def config(args: argparse.Namespace) -> dict[str, Any]:
    sizes = SIZES["quick" if args.quick else "full"]
    return {"batch": BATCH, "arms": list(ARMS), "workloads": list(WORKLOADS), **sizes,
            "memory_workloads": [] if args.no_memory else sizes["memory_workloads"]}


def make(workload: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    if workload == "mlp":
        model = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
        x = torch.randn(BATCH, 784)
    else:
        model = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 8 * 8, 10),
        )
        x = torch.randn(BATCH, 3, 32, 32)
    return model, x, torch.randint(0, 10, (BATCH,))


def optimizer_for(arm: str, model: nn.Module) -> torch.optim.Optimizer:
    if arm == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    if arm == "lars":
        from pytorch_optimizer import LARS  # noqa: PLC0415

        return LARS(model.parameters(), lr=1.0, momentum=0.9, trust_coefficient=1e-3)
    from hf_autolr.optim import CLARS  # noqa: PLC0415

    optimizer = CLARS(model.parameters(), lr=1.0, momentum=0.9, trust_coefficient=1e-3)
    optimizer.attach(model)
    return optimizer


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(batch[0]), batch[1]).backward()
    optimizer.step()


def _memory_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        return next(float(line.split()[1]) / 1024 for line in status if line.startswith(field + ":"))


def child(workload: str, arm: str, steps: int, threads: int) -> None:
    """In a fresh process: ``steps`` steps of ``arm``; prints the peak RSS and its growth (MB)."""
    import pytorch_optimizer  # noqa: F401, PLC0415 - the same imports in every arm

    import hf_autolr.optim  # noqa: F401, PLC0415

    torch.set_num_threads(threads)
    model, x, y = make(workload)
    optimizer = optimizer_for(arm, model)
    before = _memory_mb("VmRSS")
    for _ in range(steps):
        train_step(model, optimizer, (x, y))
    peak = _memory_mb("VmHWM")
    print(f"{peak:.1f} {peak - before:.1f}")


def peak_memory_mb(workload: str, arm: str, steps: int, threads: int) -> tuple[float, float]:
    code = f"from hf_autolr.bench.clars_cost import child; child({workload!r}, {arm!r}, {steps}, {threads})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[-2]), float(out[-1])


def run(args: argparse.Namespace, results: dict[str, Any], save) -> None:
    from hf_autolr.bench.timing import paired_cpu_time  # noqa: PLC0415

    cfg = results["config"]
    for workload in cfg["workloads"]:
        steps, optimizers = {}, []
        for arm in cfg["arms"]:
            model, x, y = make(workload)  # every arm: the same initial weights and batch
            optimizers.append(optimizer_for(arm, model))
            steps[arm] = functools.partial(train_step, model, optimizers[-1])
        batch = (x, y)
        timed = paired_cpu_time(steps, iter(lambda: batch, None), "sgd", blocks=cfg["blocks"], block_steps=cfg["block_steps"])
        for optimizer in optimizers:
            getattr(optimizer, "detach", lambda: None)()
        for arm in cfg["arms"]:
            record = {"workload": workload, "arm": arm, "parameters": sum(p.numel() for p in model.parameters()), **timed[arm]}
            if workload in cfg["memory_workloads"]:
                record["peak_mb"], record["growth_mb"] = peak_memory_mb(workload, arm, cfg["memory_steps"], args.threads)
            results["runs"][f"{workload}|{arm}"] = record
            print(f"{workload} {arm}: {record['ms_per_step']:.1f} ms/step, ×{1 + record['overhead']:.2f} SGD", flush=True)
        save()


def report(results: dict[str, Any], out: Path) -> str:
    cfg = results["config"]
    lines = [f"CPU time per step (forward + backward + step) at batch {cfg['batch']}, random data; ×SGD = median over "
             f"{cfg['blocks']} paired blocks of {cfg['block_steps']} steps of the arm's time / SGD's [min … max]; "
             "peak RSS of a fresh process running the arm, and its growth over the RSS before the first step.\n"]
    for workload in cfg["workloads"]:
        mine = [r for r in results["runs"].values() if r["workload"] == workload]
        lines += [f"\n### {workload} ({mine[0]['parameters'] / 1e6:.2f} M parameters)\n\n",
                  "| arm | ms/step | ×SGD | peak MB | growth MB |\n|---|---|---|---|---|\n"]
        for r in mine:
            memory = f"{r['peak_mb']:.0f} | {r['growth_mb']:.0f}" if "peak_mb" in r else "– | –"
            lines.append(f"| {r['arm']} | {r['ms_per_step']:.1f} | {1 + r['overhead']:.2f} [{1 + r['overhead_min']:.2f} … "
                         f"{1 + r['overhead_max']:.2f}] | {memory} |\n")
    return "".join(lines)
