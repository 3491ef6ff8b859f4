"""Optimizer names -> (class, default keyword arguments): ``get_optimizer_cls("lamb")``.

CLARS is ours; LAMB, AdamP and LARS come from ``pytorch_optimizer`` (imported lazily, only when
asked for). The defaults leave out ``lr`` and ``weight_decay``, which the caller (e.g. the Trainer's
``learning_rate``/``weight_decay``) supplies. A class with ``needs_per_sample_norms = True`` (CLARS)
must also be given the model: ``optimizer.attach(model)``.
"""

from __future__ import annotations

import importlib
from typing import Any

from hf_autolr._validation import check_choice

# name -> ("module:Class", defaults). LARS/LAMB defaults: You et al. (arXiv 1708.03888, 1904.00962);
# AdamP: Heo et al. (arXiv 2006.08217), the library's defaults.
OPTIMIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "clars": (
        "hf_autolr.optim.clars:CLARS",
        {"momentum": 0.9, "trust_coefficient": 1e-3, "eps": 1e-8},
    ),
    "lars": ("pytorch_optimizer:LARS", {"momentum": 0.9, "trust_coefficient": 1e-3}),
    "lamb": ("pytorch_optimizer:Lamb", {"betas": (0.9, 0.999), "eps": 1e-6, "weight_decouple": True}),
    "adamp": ("pytorch_optimizer:AdamP", {"betas": (0.9, 0.999), "eps": 1e-8, "delta": 0.1, "wd_ratio": 0.1}),
}


def available_optimizers() -> list[str]:
    return list(OPTIMIZERS)


def get_optimizer_cls(name: str) -> tuple[type, dict[str, Any]]:
    """``(optimizer class, default kwargs)`` for ``name`` in ``clars``, ``lars``, ``lamb``, ``adamp``."""
    check_choice("get_optimizer_cls", "name", name, OPTIMIZERS)
    target, defaults = OPTIMIZERS[name]
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:  # pragma: no cover - depends on the environment
        message = f"optimizer {name!r} needs the package {module_name!r}: pip install pytorch-optimizer"
        raise ImportError(message) from error
    return getattr(module, class_name), dict(defaults)
