"""``lr_schedule.png``: the LR and the loss over training, and what the method decided."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def plot_schedule(history: dict[str, list[float]], scheduler: Any, path: str | Path, title: str = "") -> Path:
    """Plot LR (left axis, log) and loss (right axis) per optimizer step, and the method's marks.

    ``history`` has equal-length lists ``step``, ``lr``, ``loss`` (``AutoLRCallback.history``);
    ``scheduler.plot_marks()`` adds events (vertical lines) and loss curves (e.g. ``autolr_gp``'s
    GP-smoothed loss and its switch). Draws on a ``matplotlib.figure.Figure``, so the user's
    pyplot backend is never touched.
    """
    from matplotlib.figure import Figure  # noqa: PLC0415 - plotting is optional at run time

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(8, 4.5))
    ax_lr = fig.subplots()
    steps, lrs = history["step"], history["lr"]
    ax_lr.plot(steps, lrs, color="tab:blue", label="learning rate")
    if lrs and min(lrs) > 0:
        ax_lr.set_yscale("log")
    ax_lr.set_xlabel("optimizer step")
    ax_lr.set_ylabel("learning rate", color="tab:blue")
    ax_loss = ax_lr.twinx()
    losses = [(s, v) for s, v in zip(steps, history["loss"]) if math.isfinite(v)]
    if losses:
        ax_loss.plot(*zip(*losses), color="tab:orange", alpha=0.45, lw=0.8, label="training loss")
    marks = scheduler.plot_marks() if hasattr(scheduler, "plot_marks") else {}
    for label, curve_steps, values in marks.get("loss_curves", []):
        ax_loss.plot(curve_steps, values, color="tab:red", lw=2, label=label)
    for step, label in marks.get("events", []):
        ax_lr.axvline(step, color="gray", ls="--", lw=1)
        ax_lr.annotate(label, (step, ax_lr.get_ylim()[1]), fontsize=8, va="top", ha="right", rotation=90)
    ax_loss.set_ylabel("loss", color="tab:orange")
    handles = ax_lr.get_legend_handles_labels()[0] + ax_loss.get_legend_handles_labels()[0]
    ax_lr.legend(handles=handles, loc="upper right", fontsize=8)
    ax_lr.set_title(title or f"hf_autolr: {getattr(scheduler, 'name', 'schedule')}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
