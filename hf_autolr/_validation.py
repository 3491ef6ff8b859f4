"""Option checks shared by every method: one clear ``ValueError`` that names the option."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def check_choice(method: str, option: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise naming ``option`` and the choices."""
    choices = tuple(choices)
    if value not in choices:
        accepted = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{method}: option {option!r} got {value!r}; accepted values: {accepted}")
    return value


def check_number(
    method: str,
    option: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    integer: bool = False,
) -> float | int:
    """Return ``value`` as a number inside the given bounds, else raise naming ``option``."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ValueError(f"{method}: option {option!r} must be {kind}, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{method}: option {option!r} must be finite, got {value!r}")
    lo_ok = low is None or (value >= low if low_inclusive else value > low)
    hi_ok = high is None or (value <= high if high_inclusive else value < high)
    if not (lo_ok and hi_ok):
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"{method}: option {option!r} must be {kind} in {interval}, got {value!r}")
    return value


def check_steps(method: str, num_training_steps: Any, num_warmup_steps: Any = None) -> None:
    """``num_training_steps`` an integer ≥ 1 and ``num_warmup_steps`` (when given) an integer ≥ 0."""
    check_number(method, "num_training_steps", num_training_steps, low=1, integer=True)
    if num_warmup_steps is not None:
        check_number(method, "num_warmup_steps", num_warmup_steps, low=0, integer=True)


def value_name(value: Any) -> str:
    """The string of an enum member (transformers' ``SchedulerType``, ``OptimizerNames``) or of a name."""
    return str(getattr(value, "value", value))
