"""Plain Accelerate / PyTorch loops: step a feedback scheduler once per optimizer step.

Do **not** ``accelerator.prepare()`` an hf_autolr scheduler: ``AcceleratedScheduler`` steps it
``num_processes`` times per optimizer step, so each observation would be applied N times
(``AcceleratedScheduler.step``). Instead::

    feed = AcceleratorFeedback(accelerator, scheduler)
    accelerator.register_for_checkpointing(scheduler)
    for batch in loader:
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            feed(loss)          # every micro-batch; observes + steps on the sync micro-batch

It is the recipe ``if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
scheduler.observe(accelerator.reduce(step_loss, "mean").item()); scheduler.step()``, with the
step loss averaged over the gradient-accumulation micro-batches.
"""

from __future__ import annotations

from typing import Any

import torch

from hf_autolr.schedulers.base import FeedbackScheduler


class AcceleratorFeedback:
    """Collects micro-batch losses; on each sync step reduces them, observes and steps."""

    def __init__(self, accelerator: Any, scheduler: FeedbackScheduler) -> None:
        self.accelerator = accelerator
        self.scheduler = scheduler
        self._losses: list[torch.Tensor] = []

    def __call__(self, loss: torch.Tensor) -> bool:
        """Record ``loss`` (this micro-batch, unscaled mean); returns True if the scheduler stepped."""
        self._losses.append(loss.detach().float().reshape(()))
        if not self.accelerator.sync_gradients:
            return False
        step_loss = torch.stack(self._losses).mean()
        self._losses = []
        # The reduction is a collective: every rank runs it, skipped step or not.
        reduced = self.accelerator.reduce(step_loss, reduction="mean")
        if self.accelerator.optimizer_step_was_skipped:
            return False
        if self.scheduler.needs_loss:
            self.scheduler.observe(reduced)
        self.scheduler.step()
        return True
