"""CLARS inside an unmodified ``Trainer``: per-sample-norm hooks, gradient scale, diagnostics.

CLARS (``hf_autolr.optim.CLARS``) needs the model's per-sample gradient norms at every step.
``import hf_autolr`` wraps ``Trainer.create_optimizer`` (``registration``): when the optimizer it returns (built from
``optim="clars"``, ``optimizer_cls_and_kwargs=(CLARS, ...)`` or passed in ``optimizers=``) needs
them, it calls ``optimizer.attach(model)`` on the model being trained, unless already attached, and
adds one :class:`ClarsCallback`.

**What a sample is.** One example of the global batch of an optimizer step: every micro-batch of
the gradient-accumulation window on every process. The Trainer divides each micro-batch's mean loss
by the accumulation count and DDP averages over processes, so the hooks sum the contribution norms
of all of them (``PerSampleGradNorms``). With a token-normalised loss (``num_items_in_batch``) the
mean over samples becomes a token-count-weighted mean.

**Scale.** ``.grad`` changes between the backward and ``optimizer.step()``: the fp16 loss scale is
removed and ``max_grad_norm`` (1.0 by default) clips. In one process CLARS measures the change per
tensor itself. Under DDP it cannot (its hooks see local gradients), so the callback computes the
factor from what the Trainer did, ``clip / loss_scale``: the clip coefficient of the
``accelerator.clip_grad_norm_`` call(s) of the step (recorded by wrapping that method on the
trainer's accelerator) over the ``GradScaler`` scale, and passes it to ``set_grad_scale()``.

**Refused** (``ValueError`` when the optimizer is created): FSDP, DeepSpeed and ``torch_compile``,
which the hooks do not support.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from hf_autolr.optim.per_sample_norms import world_size

_MARK = "_hf_autolr_per_sample"


def per_sample_optimizer(optimizer: Any) -> Any | None:
    """The optimizer that needs per-sample norms inside ``optimizer`` (an ``AcceleratedOptimizer``
    or another wrapper with ``.optimizer``), or ``None``."""
    for _ in range(8):
        if optimizer is None or getattr(type(optimizer), "needs_per_sample_norms", False):
            return optimizer
        optimizer = getattr(optimizer, "optimizer", None)
    return None


def _refuse_unsupported(trainer: Trainer, optimizer: Any) -> None:
    name = type(optimizer).__name__
    reasons = []
    if getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_fsdp_xla_enabled", False):
        reasons.append("FSDP")
    if getattr(trainer, "is_deepspeed_enabled", False):
        reasons.append("DeepSpeed")
    if getattr(trainer.args, "torch_compile", False):
        reasons.append("torch_compile=True")
    if reasons:
        raise ValueError(
            f"{name} needs per-sample gradient norms from hooks on the model, which do not support "
            f"{' / '.join(reasons)}; train with DDP or one process, or choose optim='lars'"
        )


class ClarsCallback(TrainerCallback):
    """Passes the Trainer's gradient rescaling to CLARS and adds ``optimizer.diagnostics()`` to the logs.

    Args:
        trainer: the trainer whose accelerator and ``log`` are wrapped.
        explicit_grad_scale: ``None`` (default): give CLARS the computed ``clip / loss_scale`` factor
            only with more than one process; ``True``: always (replaces CLARS's own per-tensor
            measurement, which gives the same factor in one process); ``False``: never.
    """

    def __init__(self, trainer: Trainer, explicit_grad_scale: bool | None = None) -> None:
        self.trainer = trainer
        self.explicit_grad_scale = explicit_grad_scale
        self.last_grad_scale: float | None = None  # the factor given at the last step, if any
        self._clips: list[tuple[float, Any]] = []  # (max_norm, total_norm) of this step's clip calls
        self._wrap_log()

    # -- wiring ---------------------------------------------------------------------------------
    def _wrap_log(self) -> None:
        trainer = self.trainer
        if getattr(trainer.log, _MARK, False):
            return
        log = trainer.log

        @functools.wraps(log)
        def log_with_optimizer_diagnostics(logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
            optimizer = per_sample_optimizer(trainer.optimizer)
            if "loss" in logs and optimizer is not None and hasattr(optimizer, "diagnostics"):
                logs = {**logs, **optimizer.diagnostics()}
            return log(logs, *args, **kwargs)

        setattr(log_with_optimizer_diagnostics, _MARK, True)
        trainer.log = log_with_optimizer_diagnostics

    def _wrap_clip(self) -> None:
        accelerator = getattr(self.trainer, "accelerator", None)
        if accelerator is None or getattr(accelerator.clip_grad_norm_, _MARK, False):
            return
        clip = accelerator.clip_grad_norm_

        @functools.wraps(clip)
        def clip_grad_norm_recorded(parameters: Any, max_norm: float, *args: Any, **kwargs: Any) -> Any:
            total = clip(parameters, max_norm, *args, **kwargs)
            self.record_clip(max_norm, total)
            return total

        setattr(clip_grad_norm_recorded, _MARK, True)
        accelerator.clip_grad_norm_ = clip_grad_norm_recorded

    def record_clip(self, max_norm: float, total_norm: Any) -> None:
        """One ``clip_grad_norm_(max_norm)`` call of this step that found ``total_norm`` (read only
        when the factor is needed: no host sync otherwise)."""
        if total_norm is not None and not math.isinf(max_norm):
            self._clips.append((float(max_norm), total_norm))

    def grad_scale(self) -> float:
        """``clip / loss_scale`` for the coming step: the product of the clip coefficients
        ``min(1, max_norm / (total_norm + 1e-6))`` (as in ``torch.nn.utils.clip_grad_norm_``) over
        the ``GradScaler`` scale. NaN after an fp16 overflow (the step will be skipped)."""
        clip = 1.0
        for max_norm, total_norm in self._clips:
            total = float(total_norm)
            clip *= min(1.0, max_norm / (total + 1e-6)) if math.isfinite(total) else math.nan
        scaler = getattr(getattr(self.trainer, "accelerator", None), "scaler", None)
        loss_scale = 1.0
        if scaler is not None and scaler.is_enabled():
            loss_scale = float(scaler.get_scale())
        return clip / loss_scale

    # -- events ---------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):  # noqa: D102
        self._clips.clear()
        self._wrap_clip()  # here: the accelerator may be rebuilt between __init__ and train()

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):  # noqa: D102
        explicit = world_size() > 1 if self.explicit_grad_scale is None else self.explicit_grad_scale
        if explicit:
            factor = self.grad_scale()
            target = per_sample_optimizer(optimizer if optimizer is not None else self.trainer.optimizer)
            if target is not None and math.isfinite(factor) and factor > 0:
                target.set_grad_scale(factor)
                self.last_grad_scale = factor
        self._clips.clear()


def attach_clars_callback(trainer: Trainer, **options: Any) -> ClarsCallback:
    """Ensure ``trainer`` has exactly one :class:`ClarsCallback`; return it."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, ClarsCallback):
            return callback
    callback = ClarsCallback(trainer, **options)
    trainer.add_callback(callback)
    return callback


def prepare_per_sample_optimizer(trainer: Trainer, optimizer: Any, model: torch.nn.Module) -> None:
    """Attach ``optimizer``'s per-sample-norm hooks to ``model`` (once) and add the callback."""
    _refuse_unsupported(trainer, optimizer)
    if optimizer.tracker is None:
        optimizer.attach(model)
    attach_clars_callback(trainer)
