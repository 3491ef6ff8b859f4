"""Suite ``adascale``: does an S=1 recipe keep its accuracy at S = 4, 8, 16?

A reduced form of Table 2 of Johnson et al., "AdaScale SGD: A User-Friendly Algorithm for
Distributed Training", ICML 2020 (arXiv 2007.05105): one S=1 recipe (base batch b = 16, SGD, a
base LR picked at S=1 only, a cosine schedule over T_SI steps = 5 epochs), then the same recipe at
batch S·b adapted three ways:

- ``adascale``: hf_autolr's ``AdaScale`` (rule "sgd", the S=1 cosine as its base schedule); each
  step is S micro-batches of b (gradient accumulation, one process), so the gain is measured from
  S samples; it runs until its scale-invariant progress τ reaches T_SI.
- ``lsw``: the linear-scaling rule with warmup: LR × S, linear warmup over the first 5.5 % of the
  ⌈T_SI/S⌉ steps, the cosine compressed to ⌈T_SI/S⌉ steps (the paper's LSW baseline).
- ``tuned``: the LSW schedule with its LR re-tuned at S on a grid, LR × S^e for e in 0, ¼, ½, ¾, 1
  (the best mean test accuracy over the seeds: an upper bound for a grid, at 5 × its steps);
- ``none``: the S=1 LR and cosine compressed to ⌈T_SI/S⌉ steps (same epochs, no scaling).

Task: digits (the ``"held_out"`` split of :mod:`hf_autolr.bench.digits`: 1347 train / 450 test),
an MLP 64-128-10, cross-entropy. At S=1 the three methods are the same run. Two configurations:
SGD with momentum 0.9 at base LR 0.1 (the best of 0.02/0.05/0.1/0.2 at S=1, ``--tune-lr``), and
an ablation without momentum at the same effective LR 0.1 / (1 − 0.9) = 1.0, because AdaScale's
gain is derived for plain SGD. Full tier: 10 seeds (about 3 minutes); quick tier: 1 seed.

    python -m hf_autolr.bench adascale --quick
    python -m hf_autolr.bench adascale --tune-lr --seeds 4 --out results/tmp/adascale_lr   # the S=1 LR sweep
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

RESUMABLE = False
METHODS = ("adascale", "lsw", "tuned", "none")
LABELS = {"adascale": "AdaScale", "lsw": "LSW (LR×S, 5.5% warmup)", "tuned": "tuned at S (grid)", "none": "no scaling"}
TUNED_EXPONENTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # the grid re-run at S: LR × S^e, from no scaling to linear
LSW_WARMUP = 0.055  # fraction of the ⌈T_SI/S⌉ steps (the paper's LSW)
TUNE_LRS = (0.02, 0.05, 0.1, 0.2)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, default=None, help="seeds (default 10, quick 1)")
    parser.add_argument("--epochs", type=int, default=5, help="S=1 epochs, T_SI = epochs × ⌊n/b⌋")
    parser.add_argument("--batch", type=int, default=16, help="base batch b")
    parser.add_argument("--lr", type=float, default=0.1, help="base LR, picked at S=1 (see --tune-lr)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    parser.add_argument("--no-ablation", action="store_true", help="skip the second configuration: momentum 0, LR = lr / (1 − momentum)")
    parser.add_argument("--smoothing", type=float, default=None, help="AdaScale θ (default: 1 − S/1000)")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--momentum-scaling", action="store_true", help="AdaScale's momentum_scaling option (β^r per step)")
    parser.add_argument("--tune-lr", action="store_true", help=f"only the S=1 sweep over LR {', '.join(map(str, TUNE_LRS))} (needs --out)")


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.scales[0] != 1 or len(args.scales) < 2:
        parser.error("--scales must start with 1 (the reference) and have a larger scale")
    if args.tune_lr and args.out is None:
        parser.error("--tune-lr needs --out: its sweep is not the suite's result")


def config(args: argparse.Namespace) -> dict[str, Any]:
    from hf_autolr.bench.digits import digits  # noqa: PLC0415

    configurations = [(args.lr, args.momentum)]
    if not args.no_ablation and args.momentum > 0:
        configurations.append((round(args.lr / (1 - args.momentum), 6), 0.0))  # same effective LR, no momentum
    return {"seeds": args.seeds or (1 if args.quick else 10), "epochs": args.epochs, "batch": args.batch,
            "scales": args.scales, "smoothing": args.smoothing, "t_si": args.epochs * (len(digits("held_out")["train"][1]) // args.batch),
            "configurations": [] if args.tune_lr else configurations, "tune_lrs": list(TUNE_LRS) if args.tune_lr else [],
            "momentum_scaling": args.momentum_scaling}


def train(method: str, scale: int, seed: int, cfg: dict[str, Any], lr: float, momentum: float,
          exponent: float = 0.0) -> dict[str, Any]:
    """One run: ``method`` at scale ``scale`` (S=1: the recipe itself); ``tuned`` at LR × S^exponent."""
    from hf_autolr.bench.digits import digits, index_batches  # noqa: PLC0415
    from hf_autolr.schedulers import AdaScale  # noqa: PLC0415
    from hf_autolr.schedulers.base_schedules import cosine  # noqa: PLC0415

    data = digits("held_out")
    (x, y), (x_test, y_test) = data["train"], data["test"]
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    batches, t_si, loss_fn = index_batches(len(y), cfg["batch"], seed), cfg["t_si"], nn.functional.cross_entropy
    gains, progress, drawn, diverged = [], [], 0, False
    start = time.process_time()
    if method == "adascale" and scale > 1:
        sched = AdaScale(opt, t_si, base="cosine", smoothing=cfg["smoothing"],
                         momentum_scaling=cfg.get("momentum_scaling", False)).attach(model)
        while not sched.finished:
            for _ in range(scale):
                index = next(batches)
                (loss_fn(model(x[index]), y[index]) / scale).backward()
            drawn += scale
            sched.before_optimizer_step()  # this step's own gain, as in the paper
            gains.append(sched.gain)
            opt.step()
            sched.step()
            opt.zero_grad()
            progress.append(sched.progress)
            if not math.isfinite(sched.var_avg) or not all(torch.isfinite(p).all() for p in model.parameters()):
                diverged = True
                break
        steps = sched.last_epoch
        sched.detach()
    else:
        steps = math.ceil(t_si / scale)
        warmup = math.ceil(LSW_WARMUP * steps) if method in ("lsw", "tuned") and scale > 1 else 0
        factor = scale if method == "lsw" else scale**exponent if method == "tuned" else 1
        for t in range(steps):
            step_lr = lr * factor * cosine(min(t * scale, t_si), 0, t_si)
            if t < warmup:
                step_lr *= (t + 1) / warmup
            for group in opt.param_groups:
                group["lr"] = step_lr
            index = torch.cat([next(batches) for _ in range(scale)])  # = the mean of S micro-batches
            drawn += scale
            loss = loss_fn(model(x[index]), y[index])
            loss.backward()
            opt.step()
            opt.zero_grad()
            if not math.isfinite(loss.item()):
                diverged = True
                break
    cpu = time.process_time() - start
    with torch.no_grad():
        logits = model(x_test)
        accuracy, test_loss = 100.0 * float((logits.argmax(1) == y_test).float().mean()), float(loss_fn(logits, y_test))
    return {
        "method": method, "scale": scale, "seed": seed, "lr": lr, "momentum": momentum, "exponent": exponent, "accuracy": accuracy,
        "test_loss": test_loss if math.isfinite(test_loss) else None, "steps": steps, "epochs": drawn * cfg["batch"] / len(y),
        "mean_gain": statistics.fmean(gains) if gains else 1.0,
        "final_progress": progress[-1] if progress else float(steps * scale if scale == 1 else t_si),
        "diverged": diverged or not math.isfinite(test_loss), "gains": gains, "progress": progress, "t_si": t_si, "cpu_s": cpu,
    }


def run(args: argparse.Namespace, results: dict[str, Any], save) -> None:
    cfg = results["config"]
    jobs = [(f"tune|m{args.momentum}|lr{lr}|S1|{seed}", "none", 1, seed, lr, args.momentum)
            for lr in cfg["tune_lrs"] for seed in range(cfg["seeds"])]
    jobs = [(*job, 0.0) for job in jobs]
    jobs += [(f"m{momentum}|lr{lr}|{method}|S{scale}|{seed}" + (f"|e{e}" if method == "tuned" else ""),
              method, scale, seed, lr, momentum, e)
             for lr, momentum in cfg["configurations"] for seed in range(cfg["seeds"]) for scale in cfg["scales"]
             for method in (METHODS if scale > 1 else ("none",))
             for e in (TUNED_EXPONENTS if method == "tuned" else (0.0,))]
    for key, method, scale, seed, lr, momentum, exponent in jobs:
        record = train(method, scale, seed, cfg, lr, momentum, exponent)
        if seed != 0:  # keep the file small: gain curves of the first seed only
            record.update(gains=[], progress=[])
        results["runs"][key] = dict(record, phase="tune" if key.startswith("tune") else "scale")
        print(f"{key:28} acc {record['accuracy']:6.2f}  steps {record['steps']:4d}  epochs {record['epochs']:5.1f}  "
              f"mean gain {record['mean_gain']:5.2f}  ({record['cpu_s']:.1f} s CPU)", flush=True)
    save()


def summarise(runs: list[dict], scales: list[int]) -> list[dict]:
    """Per method and scale (at S=1 the shared recipe): accuracy mean ± std, test loss, steps, epochs, gain."""
    rows = []
    for method in METHODS:
        for scale in scales:
            chosen = [r for r in runs if r["scale"] == scale and (r["method"] == method or scale == 1)]
            grid_steps = 0
            if method == "tuned" and scale > 1:  # the grid point with the best mean accuracy
                points = {r.get("exponent", 0.0) for r in chosen}
                best = max(points, key=lambda e: statistics.fmean(r["accuracy"] for r in chosen if r.get("exponent", 0.0) == e))
                grid_steps = sum(r["steps"] for r in chosen) / len({r["seed"] for r in chosen})
                chosen = [r for r in chosen if r.get("exponent", 0.0) == best]
            acc = [r["accuracy"] for r in chosen]
            rows.append({
                "method": method, "scale": scale, "accuracy_mean": statistics.fmean(acc),
                "accuracy_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                "test_loss_mean": statistics.fmean(math.inf if r["test_loss"] is None else r["test_loss"] for r in chosen),
                "steps_mean": statistics.fmean(r["steps"] for r in chosen), "epochs_mean": statistics.fmean(r["epochs"] for r in chosen),
                "gain_mean": statistics.fmean(r["mean_gain"] for r in chosen), "diverged": sum(r["diverged"] for r in chosen),
                "seeds": len(chosen), "exponent": chosen[0].get("exponent", 0.0), "grid_steps": grid_steps,
            })
    return rows


def _configurations(results: dict[str, Any]) -> list[tuple[float, float, list[dict]]]:
    runs = [r for r in results["runs"].values() if r["phase"] == "scale"]
    return [(lr, momentum, [r for r in runs if (r["lr"], r["momentum"]) == (lr, momentum)])
            for lr, momentum in results["config"]["configurations"]]


def _table(rows: list[dict], cfg: dict[str, Any], lr: float, momentum: float) -> str:
    s1 = next(r for r in rows if r["scale"] == 1)

    def acc(r: dict) -> str:
        text = f"{r['accuracy_mean']:.2f} ± {r['accuracy_std']:.2f} ({r['accuracy_mean'] - s1['accuracy_mean']:+.2f})"
        text += f" [{r['diverged']}/{r['seeds']} diverged]" if r["diverged"] else ""
        return f"{text} | {r['test_loss_mean']:.3g}"

    lines = [
        f"digits MLP 64-128-10, base batch {cfg['batch']}, SGD momentum {momentum}, base LR {lr}, cosine over T_SI = "
        f"{cfg['t_si']} S=1 steps ({cfg['epochs']} epochs), {cfg['seeds']} seed(s); test accuracy % (mean ± std over seeds), "
        f"test loss (mean cross-entropy), optimizer steps, epochs of data, AdaScale's mean gain; Δ = accuracy − S=1 "
        f"({s1['accuracy_mean']:.2f}).", "",
        "| S | batch | AdaScale acc (Δ) | loss | steps | epochs | mean gain | LSW acc (Δ) | loss | steps "
        "| tuned-at-S acc (Δ) | loss | LR × S^e | grid steps | no-scaling acc (Δ) | loss | steps |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scale in cfg["scales"]:
        a, l, t, n = (next(r for r in rows if r["scale"] == scale and r["method"] == m) for m in METHODS)
        lines.append(f"| {scale} | {scale * cfg['batch']} | {acc(a)} | {a['steps_mean']:.0f} | {a['epochs_mean']:.1f} | {a['gain_mean']:.2f} "
                     f"| {acc(l)} | {l['steps_mean']:.0f} | {acc(t)} | {t['exponent']:g} | {t['grid_steps']:.0f} "
                     f"| {acc(n)} | {n['steps_mean']:.0f} |")
    return "\n".join(lines) + "\n"


def _sweep(results: dict[str, Any]) -> str:
    tune = [r for r in results["runs"].values() if r["phase"] == "tune"]
    lines = ["S=1 LR sweep: test accuracy % and test loss, mean over seeds", "", "| LR | accuracy | test loss |", "|---|---|---|"]
    for lr in results["config"]["tune_lrs"]:
        mine = [r for r in tune if r["lr"] == lr]
        loss = statistics.fmean(math.inf if r["test_loss"] is None else r["test_loss"] for r in mine)
        lines.append(f"| {lr} | {statistics.fmean(r['accuracy'] for r in mine):.2f} | {loss:.3f} |")
    return "\n".join(lines) + "\n"


def report(results: dict[str, Any], out: Path) -> str:
    cfg = results["config"]
    if cfg["tune_lrs"]:
        return _sweep(results)
    done = [(lr, momentum, summarise(runs, cfg["scales"]), runs) for lr, momentum, runs in _configurations(results)]
    plot(done, cfg["scales"], out / "scaling.png")
    return "\n".join(_table(rows, cfg, lr, momentum) for lr, momentum, rows, _ in done)


def plot(done: list[tuple[float, float, list[dict], list[dict]]], scales: list[int], path: Path) -> None:
    """Accuracy against S per method and configuration, and AdaScale's gain over τ / T_SI (first seed)."""
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(5 * (len(done) + 1), 4))
    axes = fig.subplots(1, len(done) + 1)
    for ax, (lr, momentum, rows, _) in zip(axes, done):
        for method in METHODS:
            mine = [r for r in rows if r["method"] == method]
            ax.errorbar([r["scale"] for r in mine], [r["accuracy_mean"] for r in mine], yerr=[r["accuracy_std"] for r in mine],
                        marker="o", capsize=3, label=LABELS[method])
        s1 = rows[0]["accuracy_mean"]
        low = max(min(r["accuracy_mean"] for r in rows) - 2, s1 - 12)
        ax.set_ylim(low, s1 + 1.5)
        for r in rows:  # points below the axis: say where they are
            if r["accuracy_mean"] < low:
                ax.annotate(f"{LABELS[r['method']].split(' ')[0]} {r['accuracy_mean']:.1f}% ↓", (r["scale"], low),
                            xytext=(0, 4), textcoords="offset points", ha="center", fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(scales, [str(s) for s in scales])
        ax.set(xlabel="scale S (batch = S × base batch)", ylabel="final test accuracy (%)", title=f"momentum {momentum}, base LR {lr}")
        ax.legend(loc="lower left")
    right = axes[-1]
    for (_, momentum, _, runs), style in zip(done, ("-", "--")):
        for scale in scales[1:]:
            first = next(r for r in runs if r["method"] == "adascale" and r["scale"] == scale and r["seed"] == 0)
            right.plot([p / first["t_si"] for p in first["progress"]], first["gains"], style, label=f"S={scale}, momentum {momentum}")
    right.set(xlabel="scale-invariant progress τ / T_SI", ylabel="gain r (in [1, S])", title="AdaScale gain over training (first seed)")
    right.set_ylim(bottom=1.0)
    right.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
