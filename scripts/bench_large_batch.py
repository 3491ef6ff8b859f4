"""Large-batch demonstration: SGD (linear scaling, with and without warmup) vs LARS vs CLARS-like.

The claim under test is the CLARS paper's (Huo, Gu, Huang, "Large Batch Training Does Not Need
Warmup", arXiv 2002.01576 / AAAI 2021): at a large batch, layer-wise rates with the mean per-sample
gradient norm in the denominator need no warmup. ``hf_autolr.optim.CLARS`` is a reconstruction
(the paper's update rule could not be read, see its docstring).

Task: scikit-learn digits (1,797 8x8 images, 10 classes), a fixed stratified split into train
(1,100), validation (247) and test (450); an MLP 64-128-128-128-10 (ReLU), cross-entropy; one
process, one thread, CPU. The large batch is a quarter of the training set (275; 4 steps per epoch,
``--batch-fraction``), for ``--epochs`` epochs; every arm uses momentum 0.9, weight decay 5e-4 on the
weight matrices only, and a cosine decay to 0 (after the warmup, if any). Arms:

- ``sgd_ls``: SGD at the linear-scaling LR ``lr_32 * B / 32`` (Goyal et al., arXiv 1706.02677), no
  warmup. ``lr_32`` is the best validation LR of SGD at batch 32 (the small-batch reference).
- ``sgd_ls_warmup``: the same LR with a linear warmup over the first 5 epochs (Goyal et al.).
- ``sgd``: SGD without warmup, LR picked on validation from ``--sgd-grid`` (the best plain SGD).
- ``lars_warmup``: ``pytorch_optimizer.LARS`` (trust coefficient 1e-3; biases and other 1-D tensors
  plain SGD at the global LR), 5-epoch warmup, LR picked on validation from ``--grid``: LARS as
  usually run at large batch.
- ``lars``: the same without warmup.
- ``clars``: ``hf_autolr.optim.CLARS`` at its defaults (trust coefficient 1e-3; 1-D tensors plain
  SGD, as in LARS), no warmup, LR picked the same way.
- ``clars_all``: CLARS with ``layer_adaptation=True`` on every tensor (biases get a trust ratio too).
- ``lars_all``: its ablation, the same code with the LARS denominator ``||grad_l||``: the two differ
  only in the denominator.

Every grid LR runs with every seed; the LR with the best mean validation accuracy is reported with
its test accuracy and loss (mean ± std over seeds) and the training loss of the first epochs.
CLARS's coherence (``||grad_l|| / mean_i ||grad_l f_i||``) is recorded at every step.

    python scripts/bench_large_batch.py            # 5 seeds, 30 epochs, 6-point grid
    python scripts/bench_large_batch.py --quick    # 3 seeds, 15 epochs, 3-point grid -> results/tmp/large_batch_quick

Writes ``results/large_batch/results.json``, ``table.md`` and ``curves.png`` (``--out`` to move).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hf_autolr.optim import CLARS

SMALL_BATCH = 32
WARMUP_EPOCHS = 5
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
TRUST = 1e-3
# arm -> (optimizer, warmup, LR grid): "ls" = the linear-scaling LR only, "sgd"/"lars" = --sgd-grid/--grid
ARMS: dict[str, tuple[str, bool, str]] = {
    "sgd_ls": ("sgd", False, "ls"),
    "sgd_ls_warmup": ("sgd", True, "ls"),
    "sgd": ("sgd", False, "sgd"),
    "lars_warmup": ("lars", True, "lars"),
    "lars": ("lars", False, "lars"),
    "clars": ("clars", False, "lars"),
    "lars_all": ("lars_all", False, "lars"),
    "clars_all": ("clars_all", False, "lars"),
}
LABELS = {
    "sgd_ls": "SGD, linear scaling, no warmup",
    "sgd_ls_warmup": "SGD, linear scaling, 5-epoch warmup",
    "sgd": "SGD, LR tuned, no warmup",
    "lars_warmup": "LARS, 5-epoch warmup",
    "lars": "LARS, no warmup",
    "clars": "CLARS-like, no warmup",
    "lars_all": "LARS denominator, all tensors adapted, no warmup",
    "clars_all": "CLARS-like, all tensors adapted, no warmup",
}
GRID_ARMS = [arm for arm, (_, _, grid) in ARMS.items() if grid == "lars"]
COLORS = {arm: f"C{i}" for i, arm in enumerate(ARMS)}


class LarsAllTensors(CLARS):
    """The ablation of ``clars_all``: CLARS's code with the LARS denominator ``||grad_l||`` (given as
    the "per-sample" norm) on every tensor, so only the denominator differs between the two."""

    def step(self, closure=None):  # noqa: D102
        grads = {p: p.grad.norm() for g in self.param_groups for p in g["params"] if p.grad is not None}
        self.set_per_sample_norms(grads)
        return super().step(closure)


def load_split() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_rest, x_te, y_rest, y_te = train_test_split(x, y, test_size=450, stratify=y, random_state=0)
    x_tr, x_va, y_tr, y_va = train_test_split(x_rest, y_rest, test_size=247, stratify=y_rest, random_state=1)
    mean, std = x_tr.mean(0), x_tr.std(0) + 1.0  # +1: some pixels are constant
    pair = lambda a, b: (torch.tensor((a - mean) / std, dtype=torch.float32), torch.tensor(b))  # noqa: E731
    return {"train": pair(x_tr, y_tr), "val": pair(x_va, y_va), "test": pair(x_te, y_te)}


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    widths = (64, 128, 128, 128)
    layers: list[nn.Module] = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], 10))


def make_optimizer(kind: str, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    groups = [
        {"params": [p for p in model.parameters() if p.ndim > 1], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in model.parameters() if p.ndim <= 1], "weight_decay": 0.0},
    ]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=MOMENTUM)
    if kind == "lars":
        from pytorch_optimizer import LARS

        return LARS(groups, lr=lr, momentum=MOMENTUM, trust_coefficient=TRUST)
    if kind.endswith("_all"):  # biases too get a trust ratio (layer_adaptation=True)
        groups[1]["layer_adaptation"] = True
    cls = LarsAllTensors if kind == "lars_all" else CLARS
    optimizer = cls(groups, lr=lr, momentum=MOMENTUM, trust_coefficient=TRUST)
    if cls is CLARS:
        optimizer.attach(model)
    return optimizer


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup over ``warmup`` steps (from lr/warmup), then cosine to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    logits = model(x)
    loss = float(F.cross_entropy(logits, y))
    return float((logits.argmax(1) == y).float().mean()) * 100, loss if math.isfinite(loss) else float("inf")


def run(arm: str, lr: float, seed: int, batch: int, epochs: int, data: dict) -> dict:
    x, y = data["train"]
    kind, warm, _ = ARMS.get(arm, ("sgd", False, ""))
    steps_per_epoch = len(y) // batch  # the short tail of each epoch is dropped
    total = epochs * steps_per_epoch
    warmup = WARMUP_EPOCHS * steps_per_epoch if warm else 0
    model = make_model(seed)
    optimizer = make_optimizer(kind, model, lr)
    generator = torch.Generator().manual_seed(10_000 + seed)
    losses: list[float] = []
    coherence: list[float] = []
    wall, cpu = time.perf_counter(), time.process_time()
    step = 0
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for k in range(steps_per_epoch):
            index = order[k * batch : (k + 1) * batch]
            for group in optimizer.param_groups:
                group["lr"] = lr * lr_factor(step, total, warmup)
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = loss.item()
            losses.append(value if math.isfinite(value) else float("inf"))
            if type(optimizer) is CLARS:
                coherence.append(optimizer.diagnostics().get("clars/coherence_mean", float("nan")))
            step += 1
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if type(optimizer) is CLARS:
        optimizer.detach()
    val_acc, val_loss = evaluate(model, *data["val"])
    test_acc, test_loss = evaluate(model, *data["test"])
    return {
        "arm": arm, "lr": lr, "seed": seed, "batch": batch, "steps": total, "warmup_steps": warmup,
        "val_acc": val_acc, "val_loss": val_loss, "test_acc": test_acc, "test_loss": test_loss,
        "train_loss": losses, "coherence": coherence, "wall_s": wall, "cpu_s": cpu,
    }


def finite_or_none(value):
    """For strict, compact JSON: floats to 5 significant digits, non-finite ones ``null``."""
    if isinstance(value, float):
        return float(f"{value:.5g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def mean_std(values: list[float]) -> tuple[float, float]:
    if not all(math.isfinite(v) for v in values):
        return float("inf"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def select(runs: list[dict]) -> float:
    """The LR with the best mean validation accuracy (ties: lower mean validation loss)."""
    by_lr: dict[float, list[dict]] = {}
    for r in runs:
        by_lr.setdefault(r["lr"], []).append(r)
    return max(by_lr, key=lambda lr: (statistics.fmean(r["val_acc"] for r in by_lr[lr]),
                                      -statistics.fmean(min(r["val_loss"], 1e30) for r in by_lr[lr])))


def fmt(value: float) -> str:
    if not math.isfinite(value):
        return "inf"
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.2e}"


def write_table(out: Path, summary: dict, config: dict) -> str:
    spe = config["steps_per_epoch"]
    lines = [
        f"digits MLP 64-128-128-128-10, train {config['n_train']} / val {config['n_val']} / test {config['n_test']}; "
        f"batch {config['batch']} ({config['batch'] / config['n_train']:.0%} of the training set, "
        f"{spe} steps per epoch), "
        f"{config['epochs']} epochs = {config['epochs'] * spe} steps, momentum {MOMENTUM}, weight decay {WEIGHT_DECAY} "
        f"(weights only), cosine to 0; {len(config['seeds'])} seeds. Small-batch reference: SGD at batch "
        f"{SMALL_BATCH}, LR {config['lr_32']} (best on validation), test {summary['small_batch']['test_acc']}. "
        "Test accuracy % and loss: mean ± std over seeds at the LR picked on validation accuracy; "
        f"train loss: mean over seeds after 1 and {WARMUP_EPOCHS} epochs (last step of the epoch).",
        "",
        "| arm | LR | warmup | test acc | test loss | train loss @1 ep | train loss @5 ep | diverged runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm in ARMS:
        s = summary[arm]
        lines.append(
            f"| {LABELS[arm]} | {fmt(s['lr'])} | {s['warmup_steps']} steps | {s['test_acc']} | {s['test_loss']} | "
            f"{fmt(s['loss_epoch1'])} | {fmt(s['loss_epoch5'])} | {s['diverged']}/{s['runs']} |"
        )
    for title, grid, arms in (
        ("LARS / CLARS", config["grid"], GRID_ARMS),
        ("SGD", config["sgd_grid"], ["sgd"]),
    ):
        lines += ["", f"LR sensitivity ({title}), test accuracy % (mean ± std over seeds) per grid LR:", ""]
        lines += ["| arm | " + " | ".join(fmt(lr) for lr in grid) + " |", "|---|" + "---|" * len(grid)]
        for arm in arms:
            cells = [summary[arm]["by_lr"].get(str(float(lr)), "") for lr in grid]
            lines.append(f"| {LABELS[arm]} | " + " | ".join(cells) + " |")
    for arm in ("clars", "clars_all"):
        coherence = summary[arm]["coherence_by_epoch"]
        lines += ["", f"{LABELS[arm]}: coherence ||grad_l|| / mean_i ||grad_l f_i|| (mean over tensors and seeds, "
                  "at the picked LR) by epoch: " + ", ".join(f"{c:.3f}" for c in coherence)]
    lines += ["", f"Time: wall {config['wall_s']:.0f} s, CPU {config['cpu_s']:.0f} s (one thread); CPU s per arm, "
              "all its runs: " + ", ".join(f"{arm} {summary[arm]['cpu_s']:.0f}" for arm in ARMS)]
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    return text


def plot(out: Path, runs: list[dict], summary: dict, config: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spe = config["steps_per_epoch"]
    first = min(10, config["epochs"]) * spe
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for arm in ARMS:
        picked = [r for r in runs if r["arm"] == arm and r["lr"] == summary[arm]["lr"]]
        curves = torch.tensor([[min(v, 1e3) for v in r["train_loss"][:first]] for r in picked])
        mean, std = curves.mean(0), curves.std(0) if len(picked) > 1 else torch.zeros(first)
        steps = torch.arange(1, first + 1)
        axes[0].plot(steps, mean, color=COLORS[arm], label=f"{LABELS[arm]} (lr {fmt(summary[arm]['lr'])})")
        axes[0].fill_between(steps, (mean - std).clamp_min(1e-3), mean + std, color=COLORS[arm], alpha=0.15)
    axes[0].set(xlabel=f"step ({spe} per epoch)", ylabel="training loss (batch)", yscale="log",
                title=f"first {first // spe} epochs, batch {config['batch']}")
    axes[0].legend(fontsize=8)
    for arm in GRID_ARMS:
        grid = config["grid"]
        accs = [[r["test_acc"] for r in runs if r["arm"] == arm and r["lr"] == lr] for lr in grid]
        axes[1].errorbar(grid, [statistics.fmean(a) for a in accs], yerr=[mean_std(a)[1] for a in accs],
                         marker="o", capsize=3, color=COLORS[arm], label=LABELS[arm])
    for arm in ("sgd_ls_warmup", "sgd"):
        axes[1].axhline(summary[arm]["test_acc_mean"], linestyle="--", color=COLORS[arm],
                        label=f"{LABELS[arm]} (lr {fmt(summary[arm]['lr'])})")
    axes[1].set(xscale="log", xlabel="LR (LARS / CLARS, trust coefficient 1e-3)", ylabel="test accuracy %",
                ylim=(max(0, min(a for a in (summary[x]["test_acc_mean"] for x in ARMS)) - 5), 100),
                title="final test accuracy vs LR")
    axes[1].legend(fontsize=8)
    for arm in ("clars", "clars_all"):
        picked = [r for r in runs if r["arm"] == arm and r["lr"] == summary[arm]["lr"]]
        coherence = torch.tensor([r["coherence"] for r in picked]).nanmean(0)
        label = f"{LABELS[arm]} (lr {fmt(summary[arm]['lr'])})"
        axes[2].plot(torch.arange(1, len(coherence) + 1), coherence, color=COLORS[arm], label=label)
    axes[2].legend(fontsize=8)
    axes[2].set(xlabel="step", ylabel="mean ||grad_l|| / mean_i ||grad_l f_i||",
                title="CLARS coherence: its step / the LARS step")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-fraction", type=float, default=0.25)
    parser.add_argument("--grid", type=float, nargs="+", default=[2, 4, 8, 16, 32, 64, 128])
    parser.add_argument("--sgd-grid", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.4, 0.8])
    parser.add_argument("--small-grid", type=float, nargs="+", default=[0.025, 0.05, 0.1, 0.2])
    parser.add_argument("--quick", action="store_true", help="3 seeds, 15 epochs, 3-point grids")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.grid, args.small_grid = 3, 15, [4.0, 16.0, 64.0], [0.05, 0.1, 0.2]
        args.sgd_grid = [0.1, 0.2, 0.4]
    args.grid, args.sgd_grid, args.small_grid = ([float(v) for v in g] for g in (args.grid, args.sgd_grid,
                                                                               args.small_grid))
    out = Path(args.out or ("results/tmp/large_batch_quick" if args.quick else "results/large_batch"))
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    data = load_split()
    n_train = len(data["train"][1])
    batch = max(SMALL_BATCH, math.ceil(args.batch_fraction * n_train))
    seeds = list(range(args.seeds))
    config = {
        "n_train": n_train, "n_val": len(data["val"][1]), "n_test": len(data["test"][1]), "batch": batch,
        "steps_per_epoch": n_train // batch, "epochs": args.epochs, "seeds": seeds, "grid": args.grid,
        "sgd_grid": args.sgd_grid, "small_grid": args.small_grid, "trust_coefficient": TRUST, "momentum": MOMENTUM,
        "weight_decay": WEIGHT_DECAY, "warmup_epochs": WARMUP_EPOCHS,
    }
    print(f"batch {batch} of {n_train} ({batch / n_train:.0%}), {config['steps_per_epoch']} steps/epoch, "
          f"{args.epochs} epochs, seeds {seeds}", flush=True)

    small = [run("sgd", lr, s, SMALL_BATCH, args.epochs, data) for lr in args.small_grid for s in seeds]
    lr_32 = select(small)
    config["lr_32"] = lr_32
    config["lr_linear_scaling"] = lr_32 * batch / SMALL_BATCH
    print(f"small batch: lr_32 = {lr_32} -> linear scaling lr {config['lr_linear_scaling']:.3g}", flush=True)

    runs: list[dict] = []
    for arm in ARMS:
        grid = {"ls": [config["lr_linear_scaling"]], "sgd": args.sgd_grid, "lars": args.grid}[ARMS[arm][2]]
        for lr in grid:
            for seed in seeds:
                runs.append(run(arm, lr, seed, batch, args.epochs, data))
            accs = [r["test_acc"] for r in runs if r["arm"] == arm and r["lr"] == lr]
            print(f"  {arm:14} lr {lr:<8.4g} test {statistics.fmean(accs):6.2f}", flush=True)

    summary: dict = {}
    small_picked = [r for r in small if r["lr"] == lr_32]
    m, s = mean_std([r["test_acc"] for r in small_picked])
    summary["small_batch"] = {"lr": lr_32, "test_acc": f"{m:.2f} ± {s:.2f}", "test_acc_mean": m}
    spe = config["steps_per_epoch"]
    for arm in ARMS:
        arm_runs = [r for r in runs if r["arm"] == arm]
        lr = select(arm_runs)
        picked = [r for r in arm_runs if r["lr"] == lr]
        acc_m, acc_s = mean_std([r["test_acc"] for r in picked])
        loss_m, loss_s = mean_std([r["test_loss"] for r in picked])
        by_lr = {}
        for grid_lr in sorted({r["lr"] for r in arm_runs}):
            a = [r["test_acc"] for r in arm_runs if r["lr"] == grid_lr]
            by_lr[str(grid_lr)] = "{:.2f} ± {:.2f}".format(*mean_std(a))
        entry = {
            "lr": lr, "warmup_steps": picked[0]["warmup_steps"], "runs": len(picked),
            "test_acc": f"{acc_m:.2f} ± {acc_s:.2f}", "test_acc_mean": acc_m,
            "test_loss": f"{fmt(loss_m)} ± {fmt(loss_s)}",
            "loss_epoch1": statistics.fmean(r["train_loss"][spe - 1] for r in picked),
            "loss_epoch5": statistics.fmean(r["train_loss"][min(len(r["train_loss"]), 5 * spe) - 1] for r in picked),
            "diverged": sum(not math.isfinite(r["test_loss"]) or r["test_acc"] < 20 for r in picked),
            "by_lr": by_lr,
            "cpu_s": sum(r["cpu_s"] for r in arm_runs), "wall_s": sum(r["wall_s"] for r in arm_runs),
        }
        if arm in ("clars", "clars_all"):
            per_epoch = torch.tensor([r["coherence"] for r in picked]).nanmean(0).reshape(-1, spe).mean(1)
            entry["coherence_by_epoch"] = [round(float(c), 4) for c in per_epoch]
        summary[arm] = entry
    config["wall_s"], config["cpu_s"] = time.perf_counter() - wall0, time.process_time() - cpu0
    config["machine"] = {
        "platform": platform.platform(), "processor": cpu_model(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
    }
    small = [{k: v for k, v in r.items() if k not in ("train_loss", "coherence")} for r in small]  # keep it small
    everything = {"config": config, "summary": summary, "small_batch_runs": small, "runs": runs}
    (out / "results.json").write_text(json.dumps(finite_or_none(everything), allow_nan=False))
    print(write_table(out, summary, config))
    plot(out, runs, summary, config)
    print(f"wall {config['wall_s']:.0f} s, CPU {config['cpu_s']:.0f} s; wrote {out}/results.json, table.md, curves.png")


if __name__ == "__main__":
    main()
