"""AdaScale scaling benchmark: does an S=1 recipe keep its accuracy at S = 4, 8, 16?

A reduced form of Table 2 of Johnson et al., "AdaScale SGD", ICML 2020 (arXiv 2007.05105): one
S=1 recipe (base batch b = 16, SGD, a base LR picked at S=1 only, a cosine schedule over T_SI
steps = 5 epochs), then the same recipe at batch S·b with three ways to adapt it:

- ``adascale``: hf_autolr's ``AdaScale`` (rule "sgd", the S=1 cosine as its base schedule); each
  step is S micro-batches of b (gradient accumulation, one process), so the gain is measured from
  S samples; it runs until its scale-invariant progress τ reaches T_SI.
- ``lsw``: the linear-scaling rule with warmup: LR × S, linear warmup over the first 5.5 % of the
  ⌈T_SI/S⌉ steps, the cosine compressed to ⌈T_SI/S⌉ steps (the paper's LSW baseline).
- ``none``: the S=1 LR and cosine compressed to ⌈T_SI/S⌉ steps (same epochs, no scaling).

Task: scikit-learn's digits (1,797 8×8 images, 10 classes; a fixed 75/25 stratified split), an
MLP 64-128-10, cross-entropy. At S=1 the three methods are the same run. Two configurations:
the main one, SGD with momentum 0.9 and base LR 0.1 (the best of 0.02/0.05/0.1/0.2 at S=1,
``--tune-lr``), and an ablation without momentum at the same effective LR (0.1 / (1 − 0.9) = 1.0),
because AdaScale's gain is derived for plain SGD. Reported per (configuration, method, S): final
test accuracy (mean ± std over seeds), test loss, optimizer steps, epochs of data, mean gain.
Single process, one thread, CPU.

    python scripts/bench_adascale.py            # 10 seeds, S = 1, 4, 8, 16, both configurations (~2 min)
    python scripts/bench_adascale.py --quick    # smoke test: 1 seed (~30 s), results/tmp/adascale_quick
    python scripts/bench_adascale.py --tune-lr --seeds 4    # the S=1 LR sweep

Writes ``results/adascale/results.json``, ``table.md`` and ``scaling.png`` (``--out`` to move).
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
from torch import nn

from hf_autolr.schedulers import AdaScale
from hf_autolr.schedulers.base_schedules import cosine

METHODS = ("adascale", "lsw", "none")
LSW_WARMUP = 0.055  # fraction of the ⌈T_SI/S⌉ steps (the paper's LSW)


def load_digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)
    mean, std = x_tr.mean(0), x_tr.std(0) + 1.0  # +1: some pixels are constant
    as_x = lambda a: torch.tensor((a - mean) / std, dtype=torch.float32)  # noqa: E731
    return as_x(x_tr), torch.tensor(y_tr), as_x(x_te), torch.tensor(y_te)


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


class BatchStream:
    """Endless shuffled batches of size b (a new permutation every epoch), seeded."""

    def __init__(self, n: int, batch: int, seed: int) -> None:
        self.n, self.batch = n, batch
        self.generator = torch.Generator().manual_seed(10_000 + seed)
        self.order = torch.randperm(n, generator=self.generator)
        self.position = 0
        self.samples = 0

    def next(self) -> torch.Tensor:
        if self.position + self.batch > self.n:  # drop the short tail, reshuffle
            self.order = torch.randperm(self.n, generator=self.generator)
            self.position = 0
        index = self.order[self.position : self.position + self.batch]
        self.position += self.batch
        self.samples += self.batch
        return index


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        logits = model(x)
        return 100.0 * float((logits.argmax(1) == y).float().mean()), float(nn.functional.cross_entropy(logits, y))


def run(method: str, scale: int, seed: int, data, cfg, lr: float, momentum: float) -> dict:
    x_tr, y_tr, x_te, y_te = data
    model = make_model(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    stream = BatchStream(len(y_tr), cfg.batch, seed)
    t_si = cfg.t_si
    loss_fn = nn.functional.cross_entropy
    gains: list[float] = []
    progress: list[float] = []
    diverged = False
    if method == "adascale" and scale > 1:
        sched = AdaScale(opt, t_si, base="cosine", smoothing=cfg.smoothing).attach(model)
        while not sched.finished:
            for _ in range(scale):
                index = stream.next()
                (loss_fn(model(x_tr[index]), y_tr[index]) / scale).backward()
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
        warmup = math.ceil(LSW_WARMUP * steps) if method == "lsw" and scale > 1 else 0
        factor = scale if method == "lsw" else 1
        for t in range(steps):
            step_lr = lr * factor * cosine(min(t * scale, t_si), 0, t_si)
            if t < warmup:
                step_lr *= (t + 1) / warmup
            for group in opt.param_groups:
                group["lr"] = step_lr
            index = torch.cat([stream.next() for _ in range(scale)])  # = the mean of S micro-batches
            loss = loss_fn(model(x_tr[index]), y_tr[index])
            loss.backward()
            opt.step()
            opt.zero_grad()
            if not math.isfinite(loss.item()):
                diverged = True
                break
    accuracy, test_loss = evaluate(model, x_te, y_te)
    if diverged or not math.isfinite(test_loss):
        diverged = True
    return {
        "method": method,
        "scale": scale,
        "seed": seed,
        "accuracy": accuracy,
        "test_loss": test_loss if math.isfinite(test_loss) else None,
        "steps": steps,
        "epochs": stream.samples / len(y_tr),
        "mean_gain": statistics.fmean(gains) if gains else 1.0,
        "final_progress": progress[-1] if progress else float(steps * scale if scale == 1 else t_si),
        "diverged": diverged,
        "gains": gains,
        "progress": progress,
    }


def summarise(runs: list[dict], scales: list[int], batch: int) -> list[dict]:
    rows = []
    for method in METHODS:
        for scale in scales:
            chosen = [r for r in runs if r["scale"] == scale and (r["method"] == method or scale == 1)]
            acc = [r["accuracy"] for r in chosen]
            rows.append({
                "method": method,
                "scale": scale,
                "batch": scale * batch,
                "accuracy_mean": statistics.fmean(acc),
                "accuracy_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                "test_loss_mean": statistics.fmean(
                    r["test_loss"] if r["test_loss"] is not None else math.inf for r in chosen
                ),
                "steps_mean": statistics.fmean(r["steps"] for r in chosen),
                "epochs_mean": statistics.fmean(r["epochs"] for r in chosen),
                "gain_mean": statistics.fmean(r["mean_gain"] for r in chosen),
                "diverged": sum(r["diverged"] for r in chosen),
                "seeds": len(chosen),
            })
    return rows


def table(rows: list[dict], title: str) -> str:
    s1 = next(r for r in rows if r["scale"] == 1)
    lines = [
        f"{title}; Δ = accuracy − S=1 ({s1['accuracy_mean']:.2f}).",
        "",
        "| S | batch | AdaScale acc (Δ) | loss | steps | epochs | mean gain | LSW acc (Δ) | loss | steps "
        "| no-scaling acc (Δ) | loss | steps |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def acc(r: dict) -> str:
        text = f"{r['accuracy_mean']:.2f} ± {r['accuracy_std']:.2f} ({r['accuracy_mean'] - s1['accuracy_mean']:+.2f})"
        text += f" [{r['diverged']}/{r['seeds']} diverged]" if r["diverged"] else ""
        return f"{text} | {r['test_loss_mean']:.3g}"

    for scale in sorted({r["scale"] for r in rows}):
        cell = {r["method"]: r for r in rows if r["scale"] == scale}
        a, l, n = cell["adascale"], cell["lsw"], cell["none"]
        lines.append(
            f"| {scale} | {a['batch']} | {acc(a)} | {a['steps_mean']:.0f} | {a['epochs_mean']:.1f} | "
            f"{a['gain_mean']:.2f} | {acc(l)} | {l['steps_mean']:.0f} | {acc(n)} | {n['steps_mean']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot(results: list[dict], scales: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results) + 1, figsize=(5 * (len(results) + 1), 4))
    labels = {"adascale": "AdaScale", "lsw": "LSW (LR×S, 5.5% warmup)", "none": "no scaling"}
    for ax, result in zip(axes, results):
        for method in METHODS:
            mine = [r for r in result["summary"] if r["method"] == method]
            ax.errorbar(
                [r["scale"] for r in mine], [r["accuracy_mean"] for r in mine],
                yerr=[r["accuracy_std"] for r in mine], marker="o", capsize=3, label=labels[method],
            )
        s1 = result["summary"][0]["accuracy_mean"]
        low = max(min(r["accuracy_mean"] for r in result["summary"]) - 2, s1 - 12)
        ax.set_ylim(low, s1 + 1.5)
        for r in result["summary"]:  # points below the axis: say where they are
            if r["accuracy_mean"] < low:
                ax.annotate(f"{labels[r['method']].split(' ')[0]} {r['accuracy_mean']:.1f}% ↓", (r["scale"], low),
                            xytext=(0, 4), textcoords="offset points", ha="center", fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(scales, [str(s) for s in scales])
        ax.set_xlabel("scale S (batch = S × base batch)")
        ax.set_ylabel("final test accuracy (%)")
        ax.set_title(f"momentum {result['momentum']}, base LR {result['lr']}")
        ax.legend(loc="lower left")
    right = axes[-1]
    for result, style in zip(results, ("-", "--")):
        for scale in scales[1:]:
            run0 = next(r for r in result["runs"] if r["method"] == "adascale" and r["scale"] == scale)
            right.plot(
                [p / run0["t_si"] for p in run0["progress"]], run0["gains"], style,
                label=f"S={scale}, momentum {result['momentum']}",
            )
    right.set_xlabel("scale-invariant progress τ / T_SI")
    right.set_ylabel("gain r (in [1, S])")
    right.set_ylim(bottom=1.0)
    right.set_title("AdaScale gain over training (first seed)")
    right.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run_config(cfg, data, lr: float, momentum: float) -> dict:
    runs = []
    for seed in range(cfg.seeds):
        for scale in cfg.scales:
            for method in METHODS if scale > 1 else ("none",):
                t0 = time.time()
                result = run(method, scale, seed, data, cfg, lr=lr, momentum=momentum)
                result["t_si"] = cfg.t_si
                result["seconds"] = time.time() - t0
                runs.append(result)
                print(
                    f"momentum {momentum} seed {seed} S={scale:2d} {method:8s} acc {result['accuracy']:6.2f}  "
                    f"steps {result['steps']:5d}  epochs {result['epochs']:6.1f}  "
                    f"mean gain {result['mean_gain']:5.2f}  ({result['seconds']:.1f}s)",
                    flush=True,
                )
    summary = summarise(runs, cfg.scales, cfg.batch)
    title = (
        f"digits MLP 64-128-10, base batch {cfg.batch}, SGD momentum {momentum}, base LR {lr}, cosine over "
        f"T_SI = {cfg.t_si} S=1 steps ({cfg.epochs} epochs), {cfg.seeds} seed(s); test accuracy % "
        "(mean ± std over seeds), test loss (mean cross-entropy), optimizer steps, epochs of data, "
        "AdaScale's mean gain"
    )
    for r in runs:  # keep the file small: gain curves of the first seed only
        if r["seed"] != 0:
            r.pop("gains"), r.pop("progress")
    return {"lr": lr, "momentum": momentum, "title": title, "summary": summary, "runs": runs}


def tune_lr(cfg, data) -> None:
    """The S=1 sweep the base LR was picked from (S=1 only; nothing at S > 1 was looked at)."""
    print(f"S=1 LR sweep, momentum {cfg.momentum}, {cfg.epochs} epochs, {cfg.seeds} seeds")
    for lr in (0.02, 0.05, 0.1, 0.2):
        runs = [run("none", 1, seed, data, cfg, lr=lr, momentum=cfg.momentum) for seed in range(cfg.seeds)]
        acc = statistics.fmean(r["accuracy"] for r in runs)
        loss = statistics.fmean(r["test_loss"] if r["test_loss"] is not None else math.inf for r in runs)
        print(f"  LR {lr:<5} accuracy {acc:.2f}  test loss {loss:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed: a ~1 minute smoke test")
    parser.add_argument("--seeds", type=int, default=None, help="seeds (default 10, quick 1)")
    parser.add_argument("--epochs", type=int, default=5, help="S=1 epochs, T_SI = epochs × ⌊n/b⌋")
    parser.add_argument("--batch", type=int, default=16, help="base batch b")
    parser.add_argument("--lr", type=float, default=0.1, help="base LR, picked at S=1 (see --tune-lr)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    parser.add_argument("--no-ablation", action="store_true",
                        help="skip the second configuration: momentum 0, LR = lr / (1 − momentum)")
    parser.add_argument("--smoothing", type=float, default=None, help="AdaScale θ (default: 1 − S/1000)")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--tune-lr", action="store_true", help="only run the S=1 LR sweep and print it")
    parser.add_argument("--out", type=Path, default=None,
                        help="default results/adascale (--quick: results/tmp/adascale_quick, git-ignored)")
    cfg = parser.parse_args()
    cfg.seeds = cfg.seeds or (1 if cfg.quick else 10)
    cfg.out = cfg.out or Path("results/tmp/adascale_quick" if cfg.quick else "results/adascale")
    if cfg.scales[0] != 1 or len(cfg.scales) < 2:
        parser.error("--scales must start with 1 (the reference) and have a larger scale")
    torch.set_num_threads(1)

    data = load_digits_split()
    cfg.t_si = cfg.epochs * (len(data[1]) // cfg.batch)
    if cfg.tune_lr:
        tune_lr(cfg, data)
        return
    cfg.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    configs = [(cfg.lr, cfg.momentum)]
    if not cfg.no_ablation and cfg.momentum > 0:
        configs.append((round(cfg.lr / (1 - cfg.momentum), 6), 0.0))  # same effective LR, no momentum
    results = [run_config(cfg, data, lr, momentum) for lr, momentum in configs]
    elapsed = time.time() - start
    text = "\n".join(table(r["summary"], r["title"]) for r in results)
    (cfg.out / "table.md").write_text(text)
    plot(results, cfg.scales, cfg.out / "scaling.png")
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()}
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average_at_end": os.getloadavg(),
    }
    payload = {"config": config, "machine": machine, "seconds": elapsed, "results": results}
    (cfg.out / "results.json").write_text(json.dumps(payload, indent=1))
    print(text)
    print(f"{elapsed:.0f}s; wrote {cfg.out}/results.json, table.md, scaling.png")


if __name__ == "__main__":
    main()
