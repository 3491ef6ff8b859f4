"""Cost of a CLARS step (per-sample-norm hooks included) against SGD and pytorch_optimizer's LARS.

Workloads (random data, CPU, batch 256): ``mlp`` 784-1024-1024-10; ``cnn`` two 3x3 convs (3-32-64,
max-pool after each) and a linear head, 3x32x32 input. A step is forward + backward + optimizer
step. Arms: ``sgd`` (torch SGD, momentum 0.9), ``lars`` (pytorch_optimizer.LARS), ``clars`` (CLARS
attached to the model: its hooks run in the backward). Timing: arms alternate in one process
(rotating order, ``--rounds`` rounds of ``--steps`` steps) so machine load hits all alike; medians
of the time per step and of its backward and ``step()`` parts, and the per-round paired ratio to
SGD (median, min-max). Times are process CPU time by default (``--clock wall`` for wall time):
with ``--threads 1`` that is the step's own compute, little affected by other load. Peak memory:
each arm in a fresh subprocess that imports the same modules for every arm: peak RSS (``VmHWM``;
``ru_maxrss`` would include the parent's) and its growth over the RSS before the first step.

    python scripts/bench_clars_cost.py [--threads 1] [--rounds 5] [--steps 10] [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

BATCH = 256


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
        from pytorch_optimizer import LARS

        return LARS(model.parameters(), lr=1.0, momentum=0.9, trust_coefficient=1e-3)
    from hf_autolr.optim import CLARS

    opt = CLARS(model.parameters(), lr=1.0, momentum=0.9, trust_coefficient=1e-3)
    opt.attach(model)
    return opt


CLOCK = time.process_time  # CPU time of this process: with one thread, robust to a busy machine


def run_steps(model, opt, x, y, steps: int) -> tuple[list[float], list[float], list[float]]:
    total, backward, step = [], [], []
    for _ in range(steps):
        t0 = CLOCK()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        t1 = CLOCK()
        loss.backward()
        t2 = CLOCK()
        opt.step()
        t3 = CLOCK()
        total.append(t3 - t0)
        backward.append(t2 - t1)
        step.append(t3 - t2)
    return total, backward, step


def memory_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        return next(float(line.split()[1]) / 1024 for line in status if line.startswith(field + ":"))


def peak_rss_mb(workload: str, arm: str, steps: int, threads: int) -> tuple[float, float]:
    cmd = [sys.executable, __file__, "--child", workload, arm, "--steps", str(steps), "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    peak, growth = out.split()
    return float(peak), float(growth)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "ARM"))
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    if args.child:
        import pytorch_optimizer  # noqa: F401  same imports in every arm
        import hf_autolr.optim  # noqa: F401

        model, x, y = make(args.child[0])
        opt = optimizer_for(args.child[1], model)
        before = memory_mb("VmRSS")
        run_steps(model, opt, x, y, args.steps)
        peak = memory_mb("VmHWM")
        print(f"{peak:.1f} {peak - before:.1f}")
        return
    arms = ["sgd", "lars", "clars"]
    print(f"torch {torch.__version__}, CPU threads {args.threads}, batch {BATCH}, {args.clock} time")
    for workload in ("mlp", "cnn"):
        model, x, y = make(workload)
        n_params = sum(p.numel() for p in model.parameters())
        state = {k: v.clone() for k, v in model.state_dict().items()}
        rounds: list[dict[str, tuple[float, float, float]]] = []  # per round: arm -> medians
        for r in range(args.rounds):
            medians = {}
            for arm in arms[r % 3 :] + arms[: r % 3]:
                model.load_state_dict(state)
                opt = optimizer_for(arm, model)
                run_steps(model, opt, x, y, 2)  # warm-up
                medians[arm] = tuple(statistics.median(v) * 1e3 for v in run_steps(model, opt, x, y, args.steps))
                if hasattr(opt, "detach"):
                    opt.detach()
            rounds.append(medians)
        print(f"\n{workload}: {n_params / 1e6:.2f} M parameters; {args.rounds} rounds of {args.steps} steps")
        print(
            f"{'arm':6} {'step ms':>8} {'backward ms':>12} {'opt.step ms':>12} {'vs SGD (paired, min-max)':>25} "
            f"{'peak MB':>8} {'growth MB':>10}"
        )
        for arm in arms:
            total, backward, step = (statistics.median(rd[arm][k] for rd in rounds) for k in range(3))
            ratios = [rd[arm][0] / rd["sgd"][0] for rd in rounds]
            spread = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
            peak, growth = peak_rss_mb(workload, arm, args.steps, args.threads)
            print(f"{arm:6} {total:8.1f} {backward:12.1f} {step:12.2f} {spread:>25} {peak:8.0f} {growth:10.0f}")


if __name__ == "__main__":
    main()
