"""The ``large_batch`` suite's report: per arm the LR picked on validation, its test accuracy and
loss (mean ± std over seeds), the training loss after 1 and 5 epochs, accuracy by grid LR,
CLARS's coherence by epoch (``table.md``), and ``curves.png``.

    summary = summarise(results)
    print(table(results, summary))
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import torch

from hf_autolr.bench.large_batch import ARMS, GRID_ARMS, LABELS, MOMENTUM, SMALL_BATCH, WARMUP_EPOCHS, WEIGHT_DECAY, select, small_batch_lr

COLORS = {arm: f"C{i}" for i, arm in enumerate(ARMS)}


def _value(value: float | None) -> float:
    return math.inf if value is None else value


def mean_std(values: list[float | None]) -> tuple[float, float]:
    if not all(v is not None and math.isfinite(v) for v in values):
        return math.inf, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fmt(value: float) -> str:
    if not math.isfinite(value):
        return "inf"
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.2e}"


def _coherence(runs: list[dict]) -> torch.Tensor:
    """Per step, the mean over ``runs`` of CLARS's mean coherence (NaN where not defined)."""
    return torch.tensor([[math.nan if c is None else c for c in r["coherence"]] for r in runs]).nanmean(0)


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    runs = [r for r in results["runs"].values() if r["phase"] == "large"]
    spe = results["config"]["steps_per_epoch"]
    lr_32 = small_batch_lr(results)
    small = [r for r in results["runs"].values() if r["phase"] == "small" and r["lr"] == lr_32]
    m, s = mean_std([r["test_acc"] for r in small])
    summary: dict[str, Any] = {"small_batch": {"lr": lr_32, "test_acc": f"{m:.2f} ± {s:.2f}", "test_acc_mean": m}}
    for arm in ARMS:
        arm_runs = [r for r in runs if r["arm"] == arm]
        lr = select(arm_runs)
        picked = [r for r in arm_runs if r["lr"] == lr]
        acc_m, acc_s = mean_std([r["test_acc"] for r in picked])
        loss_m, loss_s = mean_std([r["test_loss"] for r in picked])
        by_lr = {str(grid_lr): "{:.2f} ± {:.2f}".format(*mean_std([r["test_acc"] for r in arm_runs if r["lr"] == grid_lr]))
                 for grid_lr in sorted({r["lr"] for r in arm_runs})}
        entry = {
            "lr": lr, "warmup_steps": picked[0]["warmup_steps"], "runs": len(picked), "test_acc": f"{acc_m:.2f} ± {acc_s:.2f}",
            "test_acc_mean": acc_m, "test_loss": f"{fmt(loss_m)} ± {fmt(loss_s)}",
            "loss_epoch1": statistics.fmean(_value(r["train_loss"][spe - 1]) for r in picked),
            "loss_epoch5": statistics.fmean(_value(r["train_loss"][min(len(r["train_loss"]), 5 * spe) - 1]) for r in picked),
            "diverged": sum(r["test_loss"] is None or r["test_acc"] < 20 for r in picked), "by_lr": by_lr,
            "cpu_s": sum(r["cpu_s"] for r in arm_runs),
        }
        if arm in ("clars", "clars_all"):
            entry["coherence_by_epoch"] = [round(float(c), 4) for c in _coherence(picked).reshape(-1, spe).mean(1)]
        summary[arm] = entry
    return summary


def table(results: dict[str, Any], summary: dict[str, Any]) -> str:
    config = results["config"]
    spe, lr_32 = config["steps_per_epoch"], summary["small_batch"]["lr"]
    lines = [
        f"digits MLP 64-128-128-128-10, train {config['n_train']} / val {config['n_val']} / test {config['n_test']}; "
        f"batch {config['batch']} ({config['batch'] / config['n_train']:.0%} of the training set, {spe} steps per epoch), "
        f"{config['epochs']} epochs = {config['epochs'] * spe} steps, momentum {MOMENTUM}, weight decay {WEIGHT_DECAY} "
        f"(weights only), cosine to 0; {len(config['seeds'])} seeds. Small-batch reference: SGD at batch "
        f"{SMALL_BATCH}, LR {lr_32} (best on validation), test {summary['small_batch']['test_acc']}. "
        "Test accuracy % and loss: mean ± std over seeds at the LR picked on validation accuracy; "
        f"train loss: mean over seeds after 1 and {WARMUP_EPOCHS} epochs (last step of the epoch).",
        "",
        "| arm | LR | warmup | test acc | test loss | train loss @1 ep | train loss @5 ep | diverged runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm in ARMS:
        s = summary[arm]
        lines.append(f"| {LABELS[arm]} | {fmt(s['lr'])} | {s['warmup_steps']} steps | {s['test_acc']} | {s['test_loss']} | "
                     f"{fmt(s['loss_epoch1'])} | {fmt(s['loss_epoch5'])} | {s['diverged']}/{s['runs']} |")
    for title, grid, arms in (("LARS / CLARS", config["grid"], GRID_ARMS), ("SGD", config["sgd_grid"], ["sgd"])):
        lines += ["", f"LR sensitivity ({title}), test accuracy % (mean ± std over seeds) per grid LR:", ""]
        lines += ["| arm | " + " | ".join(fmt(lr) for lr in grid) + " |", "|---|" + "---|" * len(grid)]
        for arm in arms:
            lines.append(f"| {LABELS[arm]} | " + " | ".join(summary[arm]["by_lr"].get(str(float(lr)), "") for lr in grid) + " |")
    for arm in ("clars", "clars_all"):
        lines += ["", f"{LABELS[arm]}: coherence ||grad_l|| / mean_i ||grad_l f_i|| (mean over tensors and seeds, at the picked LR) "
                  "by epoch: " + ", ".join(f"{c:.3f}" for c in summary[arm]["coherence_by_epoch"])]
    wall = sum(i["wall_s"] or 0.0 for i in results["invocations"])
    cpu = sum(r["cpu_s"] for r in results["runs"].values())
    lines += ["", f"Time: wall {wall:.0f} s for the suite, CPU {cpu:.0f} s in the training runs (one thread); CPU s per arm, "
              "all its runs: " + ", ".join(f"{arm} {summary[arm]['cpu_s']:.0f}" for arm in ARMS)]
    return "\n".join(lines) + "\n"


def plot(out: Path, results: dict[str, Any], summary: dict[str, Any]) -> None:
    """Training loss of the first 10 epochs, test accuracy against LR, CLARS's coherence per step."""
    from matplotlib.figure import Figure  # noqa: PLC0415

    config = results["config"]
    runs = [r for r in results["runs"].values() if r["phase"] == "large"]
    spe = config["steps_per_epoch"]
    first = min(10, config["epochs"]) * spe
    fig = Figure(figsize=(16, 4.5))
    axes = fig.subplots(1, 3)
    for arm in ARMS:
        picked = [r for r in runs if r["arm"] == arm and r["lr"] == summary[arm]["lr"]]
        curves = torch.tensor([[min(_value(v), 1e3) for v in r["train_loss"][:first]] for r in picked])
        mean, std = curves.mean(0), curves.std(0) if len(picked) > 1 else torch.zeros(first)
        steps = torch.arange(1, first + 1)
        axes[0].plot(steps, mean, color=COLORS[arm], label=f"{LABELS[arm]} (lr {fmt(summary[arm]['lr'])})")
        axes[0].fill_between(steps, (mean - std).clamp_min(1e-3), mean + std, color=COLORS[arm], alpha=0.15)
    axes[0].set(xlabel=f"step ({spe} per epoch)", ylabel="training loss (batch)", yscale="log",
                title=f"first {first // spe} epochs, batch {config['batch']}")
    axes[0].legend(fontsize=8)
    for arm in GRID_ARMS:
        accs = [[r["test_acc"] for r in runs if r["arm"] == arm and r["lr"] == lr] for lr in config["grid"]]
        axes[1].errorbar(config["grid"], [statistics.fmean(a) for a in accs], yerr=[mean_std(a)[1] for a in accs],
                         marker="o", capsize=3, color=COLORS[arm], label=LABELS[arm])
    for arm in ("sgd_ls_warmup", "sgd"):
        axes[1].axhline(summary[arm]["test_acc_mean"], linestyle="--", color=COLORS[arm], label=f"{LABELS[arm]} (lr {fmt(summary[arm]['lr'])})")
    axes[1].set(xscale="log", xlabel="LR (LARS / CLARS, trust coefficient 1e-3)", ylabel="test accuracy %",
                ylim=(max(0, min(summary[x]["test_acc_mean"] for x in ARMS) - 5), 100), title="final test accuracy vs LR")
    axes[1].legend(fontsize=8)
    for arm in ("clars", "clars_all"):
        coherence = _coherence([r for r in runs if r["arm"] == arm and r["lr"] == summary[arm]["lr"]])
        axes[2].plot(torch.arange(1, len(coherence) + 1), coherence, color=COLORS[arm], label=f"{LABELS[arm]} (lr {fmt(summary[arm]['lr'])})")
    axes[2].legend(fontsize=8)
    axes[2].set(xlabel="step", ylabel="mean ||grad_l|| / mean_i ||grad_l f_i||", title="CLARS coherence: its step / the LARS step")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
