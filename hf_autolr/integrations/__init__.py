"""The only place that knows transformers' Trainer and Accelerate.

One driver (:class:`FeedbackDriver`, pure torch) owns the method protocol; the Trainer callback
(:class:`AutoLRCallback`), the Accelerate helper (:class:`AcceleratorFeedback`) and a plain loop
all call it.

Names are imported on first use (PEP 562), so ``import hf_autolr.integrations.registration``
does not import transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AcceleratorFeedback": "accelerate",
    "AutoLRCallback": "trainer",
    "AutoLRTrainer": "trainer",
    "AutoLRTrainerMixin": "trainer",
    "ClarsCallback": "clars_trainer",
    "FeedbackDriver": "driver",
    "RegistrationError": "registration",
    "add_diagnostics": "trainer",
    "attach_autolr_callback": "trainer",
    "optimizer_cls_and_kwargs": "optimizer_names",
    "patch_trainer": "registration",
    "register": "registration",
    "register_optimizer_names": "optimizer_names",
    "register_with_transformers": "transformers_names",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
