"""Register our names with transformers, and hook an unmodified ``Trainer``, when transformers loads.

``import hf_autolr`` calls :func:`register_on_import`: if transformers is already imported it
registers now, otherwise a one-shot import hook (:mod:`hf_autolr._after_import`) registers the
names right after ``transformers`` is imported and wraps ``Trainer`` right after
``transformers.trainer`` is. So importing the
algorithms (``hf_autolr.schedulers``, ``hf_autolr.optim``, the registry) neither imports nor
patches transformers, and a process without transformers works. If transformers' internals have
moved, it warns once with the route that works without registration (:data:`FALLBACK`).

What gets registered: the method names as ``lr_scheduler_type`` values
(``transformers_names``), the optimizer names as ``optim`` values (``optimizer_names``), and
three ``Trainer`` wrappers, each idempotent and each a no-op for everything that is not ours:

- ``create_scheduler``: when it returns one of our schedulers, add a bound ``AutoLRCallback``;
- ``create_optimizer``: when the optimizer needs per-sample norms (CLARS), attach its hooks;
- ``get_optimizer_cls_and_kwargs``: our ``optim`` names give our classes.

Example::

    >>> import hf_autolr                       # registers when transformers is imported
    >>> from transformers import TrainingArguments
    >>> TrainingArguments("out", lr_scheduler_type="autolr_gp").lr_scheduler_type.value
    'autolr_gp'
"""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import Any

from hf_autolr._after_import import after_import

_MARK = "_hf_autolr_wrapped"
FALLBACK = (
    "build the scheduler yourself and pass it with the callback: "
    "Trainer(..., optimizers=(optimizer, hf_autolr.build_scheduler('autolr_gp', optimizer, "
    "num_training_steps=N)), callbacks=[hf_autolr.integrations.AutoLRCallback()])"
)


class RegistrationError(RuntimeError):
    """transformers' internals differ from what the registration expects."""


# -- the Trainer wrappers ---------------------------------------------------------------------------
def _wrap(cls: type, attribute: str, make: Any) -> None:
    """Replace ``cls.attribute`` by ``make(original)`` once (marked, so a second call is a no-op)."""
    current = inspect.getattr_static(cls, attribute, None)
    if current is None:
        raise RegistrationError(f"Trainer has no {attribute}")
    is_static = isinstance(current, staticmethod)
    original = current.__func__ if is_static else current
    if getattr(original, _MARK, False):
        return
    wrapped = functools.wraps(original)(make(original))
    setattr(wrapped, _MARK, True)
    setattr(cls, attribute, staticmethod(wrapped) if is_static else wrapped)


def _create_scheduler(original: Any) -> Any:
    def create_scheduler(self, num_training_steps, optimizer=None):
        from hf_autolr.integrations.trainer import attach_autolr_callback  # noqa: PLC0415
        from hf_autolr.schedulers.base import FeedbackScheduler  # noqa: PLC0415

        scheduler = original(self, num_training_steps, optimizer)
        if isinstance(scheduler, FeedbackScheduler):
            attach_autolr_callback(self)
        return scheduler

    return create_scheduler


def _create_optimizer(original: Any) -> Any:
    def create_optimizer(self, model=None):
        from hf_autolr.integrations.clars_trainer import per_sample_optimizer, prepare_per_sample_optimizer  # noqa: PLC0415

        optimizer = original(self, model)
        target = per_sample_optimizer(optimizer)
        if target is not None:
            prepare_per_sample_optimizer(self, target, self.model if model is None else model)
        return optimizer

    return create_optimizer


def _get_optimizer_cls_and_kwargs(original: Any) -> Any:
    def get_optimizer_cls_and_kwargs(args, model=None):
        from hf_autolr.integrations.optimizer_names import is_hf_autolr_optimizer, optimizer_cls_and_kwargs  # noqa: PLC0415

        if is_hf_autolr_optimizer(args.optim):
            return optimizer_cls_and_kwargs(args)
        return original(args, model)

    return get_optimizer_cls_and_kwargs


def patch_trainer(trainer_cls: type) -> None:
    """Wrap ``trainer_cls``'s ``create_scheduler``, ``create_optimizer`` and
    ``get_optimizer_cls_and_kwargs`` (a staticmethod) so an unmodified Trainer uses our methods."""
    if not isinstance(inspect.getattr_static(trainer_cls, "get_optimizer_cls_and_kwargs", None), staticmethod):
        raise RegistrationError("Trainer.get_optimizer_cls_and_kwargs is not a staticmethod")
    _wrap(trainer_cls, "create_scheduler", _create_scheduler)
    _wrap(trainer_cls, "create_optimizer", _create_optimizer)
    _wrap(trainer_cls, "get_optimizer_cls_and_kwargs", _get_optimizer_cls_and_kwargs)


# -- registration -----------------------------------------------------------------------------------
def register_names() -> list[str]:
    """Add our scheduler and optimizer names to transformers' enums; returns the method names."""
    from hf_autolr.integrations.optimizer_names import register_optimizer_names  # noqa: PLC0415
    from hf_autolr.integrations.transformers_names import register_with_transformers  # noqa: PLC0415

    names = register_with_transformers()
    register_optimizer_names()
    return names


def register() -> list[str]:
    """Register everything now (imports transformers); ``RegistrationError`` if its internals moved.

    Idempotent. ``import hf_autolr`` does this for you, lazily, with a warning instead of an error.
    """
    try:
        from transformers import Trainer  # noqa: PLC0415
    except ImportError as error:
        raise RegistrationError(f"transformers is not importable ({error})") from error
    names = register_names()
    patch_trainer(Trainer)
    return names


_warned = False


def _or_warn(action: Any, *args: Any) -> None:
    global _warned
    try:
        action(*args)
    except (RegistrationError, AttributeError, ImportError, KeyError, TypeError) as error:
        if not _warned:
            _warned = True
            warnings.warn(
                f"hf_autolr could not register with this transformers version ({error}); {FALLBACK}",
                RuntimeWarning,
                stacklevel=2,
            )


_hooked = False


def register_on_import() -> None:
    """Register when transformers is (or once it gets) imported; warn once if that fails."""
    global _hooked
    if _hooked:
        return
    _hooked = True
    after_import("transformers", lambda module: _or_warn(register_names))
    after_import("transformers.trainer", lambda module: _or_warn(patch_trainer, module.Trainer))
