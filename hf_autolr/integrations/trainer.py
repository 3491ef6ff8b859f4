"""Feed the Trainer's per-step loss to our schedulers, and log their diagnostics.

transformers gives callbacks no loss (transformers#12108), so the loss is taken where the
Trainer computes it:

- **Unmodified ``Trainer``** (the default path): ``import hf_autolr`` wraps
  ``Trainer.create_scheduler`` (``registration``); when it builds one of our schedulers it adds an
  :class:`AutoLRCallback` bound to that trainer, which wraps *that instance's* ``training_step``
  (the exact loss the Trainer sums for logging) and ``log`` (to add ``diagnostics()``).
- **``AutoLRTrainerMixin``** / ``AutoLRTrainer``: the same through ordinary method overrides,
  for users who prefer subclassing or already subclass ``training_step``/``compute_loss``.
- **``AutoLRCallback()``** passed in ``callbacks=[...]`` with no trainer at hand falls back to a
  forward hook on the model that keeps ``output.loss`` in training mode.

The loss of one optimizer step is the mean over gradient-accumulation micro-batches (the sum of
``training_step``'s returns, which the Trainer already divides by the accumulation count) and
the mean over processes. It is reduced in ``on_pre_optimizer_step`` on every rank, before
``optimizer.step()`` and ``lr_scheduler.step()``, so every rank takes the same decision.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from hf_autolr.integrations.driver import FeedbackDriver
from hf_autolr.integrations.model_card import wrap_create_model_card
from hf_autolr.schedulers.base import FeedbackScheduler

_WRAPPED = "_hf_autolr_wrapped"


class AutoLRCallback(TrainerCallback):
    """Sends each optimizer step's loss to an hf_autolr scheduler, and warns when none arrives.

    Bound to a trainer (``AutoLRCallback(trainer)`` or :meth:`set_trainer`), it reads the loss
    from ``training_step``; without one it uses a forward hook on the model (``output.loss``).
    """

    def __init__(self, trainer: Trainer | None = None) -> None:
        self.trainer: Trainer | None = None
        self.driver = FeedbackDriver(None, micro_batch_losses="sum")
        self._accumulation_steps = 1
        self._hook = None
        if trainer is not None:
            self.set_trainer(trainer)

    @property
    def history(self) -> dict[str, list[float]]:
        """Per optimizer step: ``step``, ``lr`` and the reduced ``loss`` (for the plot and the card)."""
        return self.driver.history

    # -- wiring ---------------------------------------------------------------------------------
    def set_trainer(self, trainer: Trainer) -> None:
        """Read losses from ``trainer.training_step`` and add diagnostics to ``trainer.log``."""
        self.trainer = trainer
        wrap_create_model_card(trainer)  # the card (and push_to_hub) records the schedule
        if isinstance(trainer, AutoLRTrainerMixin) or getattr(trainer, _WRAPPED, False):
            return
        training_step, log = trainer.training_step, trainer.log

        @functools.wraps(training_step)
        def training_step_with_feed(*args: Any, **kwargs: Any) -> torch.Tensor:
            loss = training_step(*args, **kwargs)
            self.add_loss(loss)
            return loss

        @functools.wraps(log)
        def log_with_diagnostics(logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
            return log(add_diagnostics(trainer.lr_scheduler, logs), *args, **kwargs)

        trainer.training_step = training_step_with_feed
        trainer.log = log_with_diagnostics
        setattr(trainer, _WRAPPED, True)

    def add_loss(self, loss: torch.Tensor) -> None:
        """Add one micro-batch's loss (as returned by ``training_step``) to the current step."""
        self.driver.add_loss(loss)

    def _forward_hook(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if module.training and torch.is_tensor(loss):
            self.add_loss(loss / (self._accumulation_steps or 1))

    # -- events: each is one call of the driver ---------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, lr_scheduler=None, **kwargs):  # noqa: D102
        self._accumulation_steps = args.gradient_accumulation_steps
        if self.trainer is None and self._hook is None and model is not None:
            self._hook = model.register_forward_hook(self._forward_hook)
        scaler = getattr(getattr(self.trainer, "accelerator", None), "scaler", None)
        trained = getattr(self.trainer, "model_wrapped", None) or model  # the DDP wrapper when there is one
        self.driver = FeedbackDriver(lr_scheduler, micro_batch_losses="sum").attach(trained, grad_scaler=scaler)

    def on_pre_optimizer_step(self, args, state, control, lr_scheduler=None, **kwargs):  # noqa: D102
        if isinstance(lr_scheduler, FeedbackScheduler) and self.driver.scheduler is not lr_scheduler:
            self.driver.scheduler = lr_scheduler  # a scheduler the callback learns of only now
        self.driver.before_optimizer_step(step=state.global_step if state is not None else None)

    def on_step_end(self, args, state, control, **kwargs):  # noqa: D102
        if self.driver.finished and not control.should_training_stop:
            control.should_training_stop = True  # e.g. AdaScale's scale-invariant budget is spent
            # What DefaultFlowCallback does at max_steps: a final checkpoint and evaluation.
            if args.save_strategy == "steps":
                control.should_save = True
            if args.eval_strategy == "steps" and args.eval_delay <= state.global_step:
                control.should_evaluate = True
        self.driver.check_fed(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):  # noqa: D102
        if self._hook is not None:
            self._hook.remove()
            self._hook = None


def _feedback_scheduler(scheduler: Any) -> FeedbackScheduler | None:
    return scheduler if isinstance(scheduler, FeedbackScheduler) else None


def add_diagnostics(scheduler: Any, logs: dict[str, float]) -> dict[str, float]:
    """``logs`` plus the scheduler's diagnostics, for training logs (those with a ``loss``)."""
    scheduler = _feedback_scheduler(scheduler)
    if scheduler is None or "loss" not in logs:
        return logs
    return {**logs, **scheduler.diagnostics()}


def attach_autolr_callback(trainer: Trainer) -> AutoLRCallback:
    """Ensure ``trainer`` has exactly one bound :class:`AutoLRCallback`; return it."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, AutoLRCallback):
            if callback.trainer is None:
                callback.set_trainer(trainer)
            return callback
    callback = AutoLRCallback(trainer)
    trainer.add_callback(callback)
    return callback


class AutoLRTrainerMixin:
    """Trainer mixin: exact per-step loss from ``training_step`` and diagnostics in the logs.

    ``class MyTrainer(AutoLRTrainerMixin, Trainer)``; works with a custom ``compute_loss``. The
    callback itself is attached by the (patched) ``Trainer.create_scheduler``, as for any Trainer.
    """

    def training_step(self, *args: Any, **kwargs: Any) -> torch.Tensor:  # noqa: D102
        loss = super().training_step(*args, **kwargs)  # type: ignore[misc]
        for callback in self.callback_handler.callbacks:  # type: ignore[attr-defined]
            if isinstance(callback, AutoLRCallback):
                callback.add_loss(loss)
        return loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:  # noqa: D102
        super().log(add_diagnostics(self.lr_scheduler, logs), *args, **kwargs)  # type: ignore[misc]


class AutoLRTrainer(AutoLRTrainerMixin, Trainer):
    """``transformers.Trainer`` with hf_autolr's loss feed and logging built in."""
