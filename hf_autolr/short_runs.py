"""Runs too short for a method to decide anything: when that is, and one warning that says so.

Every method runs for any ``num_training_steps >= 1`` (``max_steps=1`` included), but a feedback
method needs some steps before its first decision:

- ``autolr_gp``: ``patience`` tests, every ``test_interval`` steps from ``min_observations`` on,
  before the warmup cap (else the warmup runs to its cap; the scheduler itself warns when not even
  one test fits);
- ``lrtuner``: one probe round, ``3 × probe_steps`` steps, inside the explore phase (else it is
  the plain explore-then-decay schedule at the configured LR);
- ``autodrop``: ``smoothing_width + 3`` windows of parameter means before its first drop test
  (else the LR stays at the configured one);
- ``adascale``: none; each step's gain is measured from that step's gradients.

:func:`warn_if_too_short` is called on every scheduler that transformers' ``get_scheduler`` (and
so the Trainer) builds for our names. Example::

    scheduler = AutoDrop(optimizer, num_training_steps=50)  # window 8: the first drop test at step 104
    warn_if_too_short(scheduler, 50)                         # RuntimeWarning: ... cannot adapt ... 50 steps
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple


class Horizon(NamedTuple):
    """The first step that can bring a decision, the last step one may come, and what it takes."""

    first_step: int
    last_step: int
    needs: str
    otherwise: str


def _autolr_gp(s: Any) -> Horizon | None:
    if s.warmup_cap <= s.min_observations:
        return None  # AutoLRGP warns itself: not even one test fits
    first_test = math.ceil(s.min_observations / s.test_interval) * s.test_interval
    first = first_test + (s.patience - 1) * s.test_interval
    needs = (f"a switch needs patience={s.patience} tests every test_interval={s.test_interval} steps from "
             f"min_observations={s.min_observations}, the earliest at step {first}, before the warmup cap at step {s.warmup_cap}")
    return Horizon(first, s.warmup_cap - 1, needs, "the warmup runs to its cap")


def _lrtuner(s: Any) -> Horizon | None:
    if s.probe == "off":
        return None  # the explore-then-decay schedule by choice
    first = max(s.warmup_steps, 1) + 3 * s.probe_steps
    needs = (f"a probe round takes 3 x probe_steps={s.probe_steps} steps and must end by the end of "
             f"exploration at step {s.explore_end}")
    return Horizon(first, s.explore_end, needs, "the LR is never tuned (explore at the configured LR, then decay)")


def _autodrop(s: Any) -> Horizon | None:
    if s.rule == "v1":
        first_epoch = 0 if s.warmup_steps == 0 else (s.warmup_steps - 1) // s.steps_per_epoch + 1
        first = (first_epoch + 3 + s.extra_epochs) * s.steps_per_epoch + 1
        needs = f"a v1 drop needs 3 + extra_epochs={s.extra_epochs} epochs of steps_per_epoch={s.steps_per_epoch} steps"
    else:
        first = s.warmup_steps + (s.smoothing_width + 3) * s.window
        needs = (f"the first drop test needs smoothing_width={s.smoothing_width} + 3 windows of "
                 f"window={s.window} steps, i.e. step {first}")
    return Horizon(first, s.total_steps, needs, "the LR stays at the configured one")


_RULES = {"autolr_gp": _autolr_gp, "lrtuner": _lrtuner, "autodrop": _autodrop}


def horizon(scheduler: Any) -> Horizon | None:
    """When ``scheduler`` can first decide, or ``None`` when any run length works (or it warns itself)."""
    rule = _RULES.get(getattr(scheduler, "name", ""))
    return None if rule is None else rule(scheduler)


def too_short_message(scheduler: Any, num_training_steps: int) -> str | None:
    """The warning for a run of ``num_training_steps`` too short for ``scheduler``, else ``None``."""
    limits = horizon(scheduler)
    if limits is None or limits.first_step <= limits.last_step:
        return None
    return (f"hf_autolr: {scheduler.name} cannot adapt the learning rate in a run of {num_training_steps} steps: "
            f"{limits.needs}; {limits.otherwise}. Train longer or lower those options (lr_scheduler_kwargs).")


def warn_if_too_short(scheduler: Any, num_training_steps: int) -> None:
    """One ``RuntimeWarning`` when the run is too short for ``scheduler`` to make any decision."""
    message = too_short_message(scheduler, num_training_steps)
    if message is not None:
        warnings.warn(message, RuntimeWarning, stacklevel=3)
