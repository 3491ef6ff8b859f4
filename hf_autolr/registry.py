"""Method names → scheduler classes, and the one factory every integration calls.

Pure torch: nothing here imports transformers. ``build_scheduler`` is what
``transformers.get_scheduler`` reaches for our names (``integrations/transformers_names.py``).
"""

from __future__ import annotations

import importlib
import inspect
import sys
import warnings
from typing import Any

import torch

from hf_autolr._validation import value_name
from hf_autolr.schedulers.base import FeedbackScheduler, too_short_message

# name -> "module:Class" (imported lazily so ``import hf_autolr`` stays cheap) or the class itself.
METHODS: dict[str, str | type[FeedbackScheduler]] = {
    "autolr_gp": "hf_autolr.schedulers.autolr_gp:AutoLRGP",
    "adascale": "hf_autolr.schedulers.adascale:AdaScale",
    "autodrop": "hf_autolr.schedulers.autodrop:AutoDrop",
    "lrtuner": "hf_autolr.schedulers.lrtuner:LRTuner",
}

# Arguments the factory fills itself; never user options.
_RESERVED = {"self", "optimizer", "num_training_steps", "num_warmup_steps", "last_epoch"}


def register_method(name: str, cls: type[FeedbackScheduler] | str) -> None:
    """Add method ``name`` (a :class:`FeedbackScheduler` subclass, or ``"module:Class"``).

    Cards, plots, scripts and the benchmark pick it up from the class; if transformers is already
    imported, the name becomes an ``lr_scheduler_type`` at once (else when it is imported).

    Example::

        register_method("my_method", MyScheduler)   # MyScheduler: a FeedbackScheduler subclass
        args = TrainingArguments(output_dir="out", lr_scheduler_type="my_method")
    """
    if not isinstance(cls, str) and not (isinstance(cls, type) and issubclass(cls, FeedbackScheduler)):
        raise ValueError(f"register_method: {name!r} must be a FeedbackScheduler subclass, got {cls!r}")
    METHODS[name] = cls
    if sys.modules.get("transformers") is not None:
        from hf_autolr.integrations.transformers_names import register_with_transformers  # noqa: PLC0415

        register_with_transformers([name])


def available_methods() -> list[str]:
    """The registered method names, in registration order."""
    return list(METHODS)


def method_class(name: str) -> type[FeedbackScheduler]:
    """The scheduler class registered as ``name``; ``ValueError`` listing the names otherwise."""
    name = value_name(name)  # accept a transformers SchedulerType member
    if name not in METHODS:
        raise ValueError(f"unknown hf_autolr method {name!r}; accepted values: {', '.join(METHODS)}")
    target = METHODS[name]
    if not isinstance(target, str):
        return target
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def method_options(name: str) -> dict[str, Any]:
    """The options of method ``name`` (its keyword-only arguments) with their defaults."""
    params = inspect.signature(method_class(name).__init__).parameters
    return {
        key: p.default
        for key, p in params.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and key not in _RESERVED
    }


def _current_names(cls: type[FeedbackScheduler], options: dict[str, Any]) -> dict[str, Any]:
    """Options under their current names; an old name still works, with a ``FutureWarning``."""
    out = {}
    for key, value in options.items():
        new = cls.renamed_options.get(key)
        if new is not None:
            warnings.warn(f"{cls.name}: option {key!r} is now called {new!r}", FutureWarning, stacklevel=4)
            key = new
        out[key] = value
    return out


def build_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    num_warmup_steps: int | None = None,
    num_training_steps: int | None = None,
    **options: Any,
) -> FeedbackScheduler:
    """Create method ``name`` for ``optimizer``; unknown options raise a ``ValueError`` naming them.

    Has the signature of a ``transformers.optimization.TYPE_TO_SCHEDULER_FUNCTION`` entry (with
    the name bound), so ``get_scheduler(name, opt, num_warmup_steps=…, num_training_steps=…,
    scheduler_specific_kwargs=options)`` lands here.

    Example::

        scheduler = build_scheduler("autolr_gp", optimizer, num_warmup_steps=0,
                                    num_training_steps=1000, patience=2)
    """
    cls = method_class(name)
    accepted = method_options(name)
    options = _current_names(cls, options)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"{cls.name}: unknown option(s) {', '.join(map(repr, unknown))} in lr_scheduler_kwargs; "
            f"accepted options: {', '.join(sorted(accepted))}"
        )
    params = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, Any] = dict(options)
    if "num_training_steps" in params:
        if num_training_steps is None or int(num_training_steps) <= 0:
            raise ValueError(f"{cls.name}: needs num_training_steps > 0, got {num_training_steps!r}")
        kwargs["num_training_steps"] = int(num_training_steps)
    if "num_warmup_steps" in params:
        kwargs["num_warmup_steps"] = None if num_warmup_steps is None else int(num_warmup_steps)
    scheduler = cls(optimizer, **kwargs)
    message = too_short_message(scheduler, num_training_steps)
    if message is not None:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return scheduler
