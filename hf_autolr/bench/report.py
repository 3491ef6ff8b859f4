"""The quality suite's report: its ``results.json`` as tables (markdown) and plots (PNG).

Definitions (README "Benchmark"):
- **tuned**: of the two grid baselines (warmup+cosine, warmup+linear), each at the grid LR with the
  lowest mean final validation loss over the tuning seeds, the one with the higher mean metric
  over the evaluation seeds. **ratio** = a method's mean metric / tuned's mean metric (same seeds).
- **target** = the median over evaluation seeds of tuned's final validation loss;
  **time-to-target** = the first evaluation at or below it (steps, and CPU seconds of training),
  median over seeds; ``∞`` when a run never gets there within its T steps.
- **compute to target**: for tuned, the CPU seconds of its whole grid (every LR, every tuning seed)
  plus its own time-to-target; for the others, their time-to-target.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from hf_autolr.bench.methods import BASELINES, METHODS

INF = math.inf


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _ratio(value: float, reference: float) -> float:
    return value / reference if reference else math.nan


def _time_to_target(run: dict, target: float) -> tuple[float, float]:
    for step, loss, cpu in run["evals"]:
        if loss is not None and loss <= target:
            return float(step), float(cpu)
    return INF, INF


def select_grid(runs: list[dict], workload: str, baseline: str) -> float | None:
    """The grid LR with the lowest mean final validation loss over the tuning seeds (diverged = ∞)."""
    by_lr: dict[float, list[float]] = defaultdict(list)
    for r in runs:
        if r["phase"] == "grid" and r["workload"] == workload and r["method"] == baseline:
            by_lr[r["lr"]].append(INF if r["val_loss"] is None else r["val_loss"])
    if not by_lr:
        return None
    return min(by_lr, key=lambda lr: (statistics.fmean(by_lr[lr]), lr))


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Per workload: the tuned reference, the target, and a row per method."""
    runs = list(results["runs"].values())
    workloads = list(dict.fromkeys(r["workload"] for r in runs))
    out: dict[str, Any] = {}
    for w in workloads:
        evals = defaultdict(list)
        for r in runs:
            if r["workload"] == w and r["phase"] == "eval":
                evals[r["method"]].append(r)
        present = [b for b in BASELINES if evals.get(b)]
        if not present:
            continue
        tuned = max(present, key=lambda b: _mean_std([r["metric"] for r in evals[b]])[0])
        target = _median([INF if r["val_loss"] is None else r["val_loss"] for r in evals[tuned]])
        tuned_metric = _mean_std([r["metric"] for r in evals[tuned]])[0]
        grid_cpu = sum(r["train_cpu_s"] for r in runs if r["workload"] == w and r["phase"] == "grid" and r["method"] == tuned)
        rows = {}
        for m, group in evals.items():
            metric, metric_std = _mean_std([r["metric"] for r in group])
            loss = _mean_std([INF if r["val_loss"] is None else r["val_loss"] for r in group])[0]
            reach = [_time_to_target(r, target) for r in group]
            ttt_steps, ttt_cpu = _median([s for s, _ in reach]), _median([c for _, c in reach])
            compute = ttt_cpu + (grid_cpu if m in BASELINES else 0.0)
            rows[m] = {
                "metric": metric, "metric_std": metric_std, "val_loss": loss, "ratio": _ratio(metric, tuned_metric),
                "ttt_steps": ttt_steps, "ttt_cpu_s": ttt_cpu, "compute_to_target_s": compute,
                "seeds": len(group), "diverged": sum(r["diverged"] for r in group), "lr": group[0]["lr"],
                "ms_per_step": statistics.fmean(r["ms_per_step"] for r in group), "steps": statistics.fmean(r["steps"] for r in group),
                "decided": _outcomes(group),
            }
        hints = defaultdict(dict)
        for r in runs:
            if r["workload"] == w and r["phase"] == "hint":
                hints[r["method"]][r["multiplier"]] = _ratio(r["metric"], tuned_metric)
        for m in rows.keys() & hints.keys():  # × 1: the eval run on the hint runs' seed (the first)
            hints[m][1.0] = _ratio(min(evals[m], key=lambda r: r["seed"])["metric"], tuned_metric)
        floor = [r["metric"] for r in runs if r["workload"] == w and r["phase"] == "untrained"]
        out[w] = {"tuned": tuned, "tuned_metric": tuned_metric, "target_val_loss": target, "grid_cpu_s": grid_cpu,
                  "untrained_metric": floor[0] if floor else None,
                  "grid_lr": {b: select_grid(runs, w, b) for b in present}, "rows": rows, "hint_ratios": dict(hints)}
    return out


def _outcomes(group: list[dict]) -> str | None:
    """Each run's ``outcome()`` (what the method decided, e.g. ``test@40×3.2``), or None if no run has one."""
    outcomes = [r.get("outcome") for r in group]
    return ", ".join(o or "–" for o in outcomes) if any(outcomes) else None


def _fmt(value: float, spec: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value == INF:
        return "∞"
    return format(value, spec)


def markdown(summary: dict[str, Any], results: dict[str, Any]) -> str:
    workloads = list(summary)
    methods = [m for m in METHODS if any(m in summary[w]["rows"] for w in workloads)]
    head = "| method | " + " | ".join(workloads) + " |\n|---|" + "---|" * len(workloads) + "\n"
    lines = ["## Ratio to tuned (mean metric over evaluation seeds; accuracy % for digits, F1 for QA)\n", head]
    for m in methods:
        cells = []
        for w in workloads:
            row = summary[w]["rows"].get(m)
            cells.append("–" if row is None else f"{_fmt(row['ratio'])} ({_fmt(row['metric'], '.1f')}±{_fmt(row['metric_std'], '.1f')})"
                         + (f" ✗{row['diverged']}" if row["diverged"] else ""))
        lines.append(f"| {m} | " + " | ".join(cells) + " |\n")
    lines.append("\ntuned = " + ", ".join(
        f"{w}: {summary[w]['tuned']} at LR {summary[w]['grid_lr'][summary[w]['tuned']]:.0e}" for w in workloads) + "\n")
    lines.append("\nuntrained model (the floor) = " + ", ".join(
        f"{w}: {_fmt(summary[w].get('untrained_metric'), '.1f')}" for w in workloads) + "\n")

    for title, key, spec in (
        ("Final validation loss (mean over evaluation seeds)", "val_loss", ".3f"),
        ("Time to target (median steps to tuned's median final validation loss; ∞ = not within T)", "ttt_steps", ".0f"),
        ("Compute to reach tuned's loss (CPU s; tuned includes its whole LR grid)", "compute_to_target_s", ".1f"),
    ):
        lines += [f"\n## {title}\n", head]
        for m in methods:
            cells = (_fmt(summary[w]["rows"][m][key], spec) if m in summary[w]["rows"] else "–" for w in workloads)
            lines.append(f"| {m} | " + " | ".join(cells) + " |\n")

    deciding = [m for m in methods if any(summary[w]["rows"].get(m, {}).get("decided") for w in workloads)]
    if deciding:
        lines += ["\n## What each method decided, per evaluation seed (its `outcome()`; autolr_gp: warmup ended by "
                  "test or cap @ step × LR factor)\n", head]
        for m in deciding:
            cells = (summary[w]["rows"].get(m, {}).get("decided") or "–" for w in workloads)
            lines.append(f"| {m} | " + " | ".join(cells) + " |\n")

    by = {(o["workload"], o["method"]): o for o in results["runs"].values() if o["phase"] == "overhead"}
    if by:
        lines += ["\n## Per-step overhead and extra state vs AdamW at a constant LR (paired in one process)\n", head]
        for m in methods:
            cells = []
            for w in workloads:
                o = by.get((w, m))
                cells.append("–" if o is None else f"{100 * o['overhead']:+.1f}% / {o['extra_state_bytes'] / 1024:+.0f} KiB")
            lines.append(f"| {m} | " + " | ".join(cells) + " |\n")

    if any(summary[w]["hint_ratios"] for w in workloads):
        lines += ["\n## Sensitivity to the LR hint (ratio to tuned, seed = first evaluation seed; each hint multiplier run, ascending: × 0.01 / 0.1 / 1 / 10 / 100 where run)\n", head]
        for m in methods:
            if not any(m in summary[w]["hint_ratios"] for w in workloads):
                continue
            cells = []
            for w in workloads:
                ratios = summary[w]["hint_ratios"].get(m, {})
                cells.append(" / ".join(_fmt(ratios.get(k), ".2f") for k in sorted(ratios)) or "–")
            lines.append(f"| {m} | " + " | ".join(cells) + " |\n")
    return "".join(lines)


def plots(summary: dict[str, Any], results: dict[str, Any], out: Path) -> list[Path]:
    from matplotlib.figure import Figure  # noqa: PLC0415 - no pyplot: the user's backend stays as it is

    workloads = list(summary)
    methods = [m for m in METHODS if any(m in summary[w]["rows"] for w in workloads)]
    colors = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    styles = {m: ("-" if METHODS[m].kind == "ours" else "--" if METHODS[m].kind == "peer" else ":") for m in methods}
    paths = []

    fig = Figure(figsize=(max(8, 1.6 * len(workloads) * len(methods) / 6), 4.5))
    ax = fig.subplots()
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        xs = [k + (i - len(methods) / 2) * width for k in range(len(workloads))]
        ys = [summary[w]["rows"].get(m, {}).get("ratio", math.nan) for w in workloads]
        ax.bar(xs, [0 if math.isnan(y) else y for y in ys], width, label=m, color=colors[m],
               hatch="" if METHODS[m].kind == "ours" else "//" if METHODS[m].kind == "peer" else "..")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(0.98, color="k", lw=0.8, ls=":")
    ax.set_xticks(range(len(workloads)), workloads)
    ax.set_ylabel("metric / tuned")
    ax.set_ylim(0, 1.1)
    ax.legend(fontsize=7, ncol=4, loc="lower left")
    ax.set_title("Ratio to the tuned baseline (1.0 = tuned; dotted line 0.98)")
    fig.tight_layout()
    paths.append(out / "ratio_to_tuned.png")
    fig.savefig(paths[-1], dpi=110)

    runs = [r for r in results["runs"].values() if r["phase"] == "eval"]
    fig = Figure(figsize=(4 * len(workloads), 7))
    axes = fig.subplots(2, len(workloads), squeeze=False)
    for k, w in enumerate(workloads):
        first = {}
        for r in sorted(runs, key=lambda r: r["seed"]):
            if r["workload"] == w:
                first.setdefault(r["method"], r)
        for m in methods:
            r = first.get(m)
            if r is None:
                continue
            steps, lrs = zip(*r["lr_trace"]) if r["lr_trace"] else ((), ())
            axes[0][k].plot(steps, lrs, styles[m], color=colors[m], label=m, lw=1.2)
            pts = [(s, v) for s, v, _ in r["evals"] if v is not None]
            if pts:
                axes[1][k].plot(*zip(*pts), styles[m], color=colors[m], lw=1.2)
        axes[0][k].set_yscale("log")
        axes[0][k].set_title(w)
        axes[1][k].axhline(summary[w]["target_val_loss"], color="k", lw=0.6, ls=":")
        axes[1][k].set_yscale("log")
        axes[1][k].set_xlabel("step")
    axes[0][0].set_ylabel("effective LR")
    axes[1][0].set_ylabel("validation loss (dotted: target)")
    axes[0][0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    paths.append(out / "curves.png")
    fig.savefig(paths[-1], dpi=100)
    return paths
