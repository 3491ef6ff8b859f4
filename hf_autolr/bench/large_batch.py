"""Suite ``large_batch``: SGD (linear scaling, with and without warmup) vs LARS vs CLARS-like at a large batch.

The claim under test is the CLARS paper's (Huo, Gu, Huang, "Large Batch Training Does Not Need
Warmup", arXiv 2002.01576 / AAAI 2021): at a large batch, layer-wise rates with the mean
per-sample gradient norm in the denominator need no warmup. ``hf_autolr.optim.CLARS`` is a
reconstruction (the paper's update rule could not be read, see its docstring).

Task: digits (the ``"tuning"`` split of :mod:`hf_autolr.bench.digits`: 1100 train / 247
validation / 450 test), an MLP 64-128-128-128-10 (ReLU), cross-entropy. The large batch is a
quarter of the training set (275: 4 steps per epoch, ``--batch-fraction``); every arm uses
momentum 0.9, weight decay 5e-4 on the weight matrices only, and a cosine decay to 0 (after the
warmup, if any). Arms (:data:`ARMS`): SGD at the linear-scaling LR ``lr_32 × B / 32`` (Goyal et
al., arXiv 1706.02677; ``lr_32`` the best validation LR of SGD at batch 32) with and without a
5-epoch warmup; SGD at its best grid LR; ``pytorch_optimizer.LARS`` (trust coefficient 1e-3) with
and without warmup; CLARS at its defaults (1-D tensors plain SGD, as in LARS); CLARS with every
tensor adapted, and its ablation with the LARS denominator ``||grad_l||``. Every grid LR runs
with every seed; an arm's LR is the one with the best mean validation accuracy. CLARS's coherence
(``||grad_l|| / mean_i ||grad_l f_i||``) is recorded at every step.

Full tier: 5 seeds, 30 epochs, 7-point grid (about 5 minutes); quick tier: 3 seeds, 15 epochs,
3-point grids.

    python -m hf_autolr.bench large_batch --quick
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hf_autolr.bench.schema import finite
from hf_autolr.optim import CLARS

RESUMABLE = False
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
QUICK = {"seeds": 3, "epochs": 15, "grid": [4.0, 16.0, 64.0], "small_grid": [0.05, 0.1, 0.2], "sgd_grid": [0.1, 0.2, 0.4]}


class LarsAllTensors(CLARS):
    """The ablation of ``clars_all``: CLARS's code with the LARS denominator ``||grad_l||`` (given as
    the "per-sample" norm) on every tensor, so only the denominator differs between the two."""

    def step(self, closure=None):  # noqa: D102
        grads = {p: p.grad.norm() for g in self.param_groups for p in g["params"] if p.grad is not None}
        self.set_per_sample_norms(grads)
        return super().step(closure)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-fraction", type=float, default=0.25)
    parser.add_argument("--grid", type=float, nargs="+", default=[2, 4, 8, 16, 32, 64, 128], help="LARS / CLARS LRs")
    parser.add_argument("--sgd-grid", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.4, 0.8])
    parser.add_argument("--small-grid", type=float, nargs="+", default=[0.025, 0.05, 0.1, 0.2], help="SGD at batch 32")


def config(args: argparse.Namespace) -> dict[str, Any]:
    from hf_autolr.bench.digits import digits  # noqa: PLC0415

    chosen = {k: getattr(args, k) for k in ("seeds", "epochs", "grid", "sgd_grid", "small_grid")}
    chosen = {k: [float(v) for v in value] if isinstance(value, list) else value for k, value in {**chosen, **(QUICK if args.quick else {})}.items()}
    parts = digits("tuning")
    n_train = len(parts["train"][1])
    batch = max(SMALL_BATCH, math.ceil(args.batch_fraction * n_train))
    return {**chosen, "seeds": list(range(chosen["seeds"])), "n_train": n_train, "n_val": len(parts["val"][1]),
            "n_test": len(parts["test"][1]), "batch": batch, "steps_per_epoch": n_train // batch, "trust_coefficient": TRUST,
            "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY, "warmup_epochs": WARMUP_EPOCHS}


def make_optimizer(kind: str, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    groups = [
        {"params": [p for p in model.parameters() if p.ndim > 1], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in model.parameters() if p.ndim <= 1], "weight_decay": 0.0},
    ]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=MOMENTUM)
    if kind == "lars":
        from pytorch_optimizer import LARS  # noqa: PLC0415

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
    return float((logits.argmax(1) == y).float().mean()) * 100, loss if math.isfinite(loss) else math.inf


def _short(value: float) -> float | None:
    """5 significant digits (curves: keeps results.json small), None when not finite."""
    return float(f"{value:.5g}") if math.isfinite(value) else None


def train(arm: str, lr: float, seed: int, batch: int, epochs: int) -> dict[str, Any]:
    """One run of ``arm`` (``"small"``: SGD at batch 32) at ``lr``; the training loss and CLARS's coherence per step."""
    from hf_autolr.bench.digits import digits, index_batches  # noqa: PLC0415

    data = digits("tuning")
    x, y = data["train"]
    kind, warm, _ = ARMS.get(arm, ("sgd", False, ""))
    steps_per_epoch = len(y) // batch  # the short tail of each epoch is dropped
    total = epochs * steps_per_epoch
    warmup = WARMUP_EPOCHS * steps_per_epoch if warm else 0
    torch.manual_seed(seed)
    widths = (64, 128, 128, 128)
    model = nn.Sequential(*(m for a, b in zip(widths, widths[1:]) for m in (nn.Linear(a, b), nn.ReLU())), nn.Linear(widths[-1], 10))
    optimizer = make_optimizer(kind, model, lr)
    losses, coherence = [], []
    wall, cpu = time.perf_counter(), time.process_time()
    for step, index in zip(range(total), index_batches(len(y), batch, seed)):
        for group in optimizer.param_groups:
            group["lr"] = lr * lr_factor(step, total, warmup)
        loss = F.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(_short(loss.item()))
        if type(optimizer) is CLARS:
            coherence.append(_short(optimizer.diagnostics().get("clars/coherence_mean", math.nan)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if type(optimizer) is CLARS:
        optimizer.detach()
    (val_acc, val_loss), (test_acc, test_loss) = evaluate(model, *data["val"]), evaluate(model, *data["test"])
    return {"arm": arm, "lr": lr, "seed": seed, "batch": batch, "steps": total, "warmup_steps": warmup, "val_acc": val_acc,
            "val_loss": finite(val_loss), "test_acc": test_acc, "test_loss": finite(test_loss), "train_loss": losses, "coherence": coherence,
            "wall_s": wall, "cpu_s": cpu}


def select(runs: list[dict]) -> float:
    """The LR with the best mean validation accuracy (ties: lower mean validation loss)."""
    by_lr: dict[float, list[dict]] = {}
    for r in runs:
        by_lr.setdefault(r["lr"], []).append(r)
    return max(by_lr, key=lambda lr: (statistics.fmean(r["val_acc"] for r in by_lr[lr]),
                                      -statistics.fmean(min(_finite(r["val_loss"]), 1e30) for r in by_lr[lr])))


def _finite(value: float | None) -> float:
    return math.inf if value is None else value


def _store(results: dict[str, Any], phase: str, record: dict[str, Any], save) -> None:
    results["runs"][f"{phase}|{record['arm']}|{record['lr']:.6g}|{record['seed']}"] = dict(record, phase=phase)
    save()


def run(args: argparse.Namespace, results: dict[str, Any], save) -> None:
    cfg = results["config"]
    print(f"batch {cfg['batch']} of {cfg['n_train']}, {cfg['steps_per_epoch']} steps/epoch, {cfg['epochs']} epochs, "
          f"seeds {cfg['seeds']}", flush=True)
    for lr in cfg["small_grid"]:
        for seed in cfg["seeds"]:
            record = train("small", lr, seed, SMALL_BATCH, cfg["epochs"])
            _store(results, "small", dict(record, train_loss=[], coherence=[]), save)  # keep the file small
    lr_32 = small_batch_lr(results)
    lr_ls = lr_32 * cfg["batch"] / SMALL_BATCH  # the linear-scaling rule
    print(f"small batch: lr_32 = {lr_32} -> linear scaling lr {lr_ls:.3g}", flush=True)
    for arm in ARMS:
        for lr in {"ls": [lr_ls], "sgd": cfg["sgd_grid"], "lars": cfg["grid"]}[ARMS[arm][2]]:
            for seed in cfg["seeds"]:
                _store(results, "large", train(arm, lr, seed, cfg["batch"], cfg["epochs"]), save)
            accs = [r["test_acc"] for r in results["runs"].values() if r["arm"] == arm and r["lr"] == lr]
            print(f"  {arm:14} lr {lr:<8.4g} test {statistics.fmean(accs):6.2f}", flush=True)


def small_batch_lr(results: dict[str, Any]) -> float:
    """``lr_32``: SGD's best validation LR at batch 32."""
    return select([r for r in results["runs"].values() if r["phase"] == "small"])


def report(results: dict[str, Any], out: Path) -> str:
    from hf_autolr.bench.large_batch_report import plot, summarise, table  # noqa: PLC0415

    summary = summarise(results)
    plot(out, results, summary)
    return table(results, summary)
