"""``lr_schedule.png``: the LR and the loss over training, and what the method decided."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def plot_schedule(history: dict[str, list[float]], scheduler: Any, path: str | Path, title: str = "") -> Path:
    """Plot LR (left axis, log) and loss (right axis) per optimizer step; mark the decisions.

    ``history`` has equal-length lists ``step``, ``lr``, ``loss`` (``AutoLRCallback.history``).
    For ``autolr_gp`` the GP-smoothed curve of the last test and the switch are drawn too.
    """
    import matplotlib  # noqa: PLC0415 - plotting is optional at run time

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax_lr = plt.subplots(figsize=(8, 4.5))
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
    curve_steps = getattr(scheduler, "switch_curve_steps", None)
    if curve_steps:
        ax_loss.plot(curve_steps, scheduler.switch_curve_loss, color="tab:red", lw=2, label="GP-smoothed loss")
    switch = getattr(scheduler, "switch_step", -1)
    if switch is not None and switch >= 0:
        ax_lr.axvline(switch, color="gray", ls="--", lw=1)
        reason = getattr(scheduler, "switch_reason", "")
        ax_lr.annotate(f"switch ({reason})", (switch, ax_lr.get_ylim()[1]), fontsize=8, va="top", ha="right", rotation=90)
    ax_loss.set_ylabel("loss", color="tab:orange")
    handles = ax_lr.get_legend_handles_labels()[0] + ax_loss.get_legend_handles_labels()[0]
    ax_lr.legend(handles=handles, loc="upper right", fontsize=8)
    ax_lr.set_title(title or f"hf_autolr: {getattr(scheduler, 'name', 'schedule')}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
