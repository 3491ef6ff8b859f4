"""Pure-torch copies of the usual LR shapes, as factors of an integer step.

Used by methods that evaluate a schedule at a step of their own (AdaScale evaluates it at its
scale-invariant progress ``floor(τ)``). Each function returns the factor applied to the configured
LR at ``step`` for a run of ``num_training_steps`` steps whose first ``num_warmup_steps`` warm up
linearly from 0 (``step / num_warmup_steps``), the same numbers as ``transformers``'
``get_*_schedule_with_warmup`` at integer steps, except that

- every shape applies the warmup (``constant`` is therefore ``constant_with_warmup``; with
  ``num_warmup_steps=0`` there is none), and
- past ``num_training_steps`` the decaying shapes stay at their final value (the cosine does not
  come back up).
"""

from __future__ import annotations

import math
from collections.abc import Callable


def _warmup(step: int, num_warmup_steps: int) -> float | None:
    """The warmup factor while ``step < num_warmup_steps``, else ``None``."""
    if step < num_warmup_steps:
        return step / max(1, num_warmup_steps)
    return None


def _decay_progress(step: int, num_warmup_steps: int, num_training_steps: int) -> float:
    """Fraction of the decay phase done at ``step``, clamped to [0, 1]."""
    progress = (step - num_warmup_steps) / max(1, num_training_steps - num_warmup_steps)
    return min(max(progress, 0.0), 1.0)


def constant(step: int, num_warmup_steps: int, num_training_steps: int, min_lr_rate: float = 0.0) -> float:
    """1 after the warmup."""
    warm = _warmup(step, num_warmup_steps)
    return 1.0 if warm is None else warm


def linear(step: int, num_warmup_steps: int, num_training_steps: int, min_lr_rate: float = 0.0) -> float:
    """Linear decay from 1 to 0 at ``num_training_steps``."""
    warm = _warmup(step, num_warmup_steps)
    return 1.0 - _decay_progress(step, num_warmup_steps, num_training_steps) if warm is None else warm


def cosine(step: int, num_warmup_steps: int, num_training_steps: int, min_lr_rate: float = 0.0) -> float:
    """Half a cosine from 1 to 0 at ``num_training_steps``."""
    warm = _warmup(step, num_warmup_steps)
    if warm is not None:
        return warm
    return 0.5 * (1.0 + math.cos(math.pi * _decay_progress(step, num_warmup_steps, num_training_steps)))


def cosine_with_min_lr(
    step: int, num_warmup_steps: int, num_training_steps: int, min_lr_rate: float = 0.0
) -> float:
    """Half a cosine from 1 to ``min_lr_rate``."""
    warm = _warmup(step, num_warmup_steps)
    if warm is not None:
        return warm
    return min_lr_rate + (1.0 - min_lr_rate) * cosine(step, num_warmup_steps, num_training_steps)


BASE_SCHEDULES: dict[str, Callable[[int, int, int, float], float]] = {
    "constant": constant,
    "constant_with_warmup": constant,
    "linear": linear,
    "cosine": cosine,
    "cosine_with_min_lr": cosine_with_min_lr,
}
