"""Plain Accelerate loops: the :class:`~hf_autolr.integrations.driver.FeedbackDriver` on sync steps.

Do **not** ``accelerator.prepare()`` an hf_autolr scheduler: ``AcceleratedScheduler`` steps it
``num_processes`` times per optimizer step (``AcceleratedScheduler.step``). Instead::

    feed = AcceleratorFeedback(accelerator, scheduler, model)
    accelerator.register_for_checkpointing(scheduler)
    for batch in loader:
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            feed.before_optimizer_step(loss)   # every micro-batch; acts on the sync one
            optimizer.step()
            feed.step()                         # scheduler.step() on a sync step not skipped
            optimizer.zero_grad()

The step loss is the mean of its micro-batch losses, reduced with ``accelerator.reduce``.
"""

from __future__ import annotations

from typing import Any

import torch

from hf_autolr.integrations.driver import FeedbackDriver


class AcceleratorFeedback:
    """The driver, gated by ``accelerator.sync_gradients`` and ``optimizer_step_was_skipped``."""

    def __init__(self, accelerator: Any, scheduler: Any, model: torch.nn.Module | None = None) -> None:
        self.accelerator = accelerator
        self.scheduler = scheduler
        reduce = lambda value: float(accelerator.reduce(value.to(accelerator.device), reduction="mean"))  # noqa: E731
        self.driver = FeedbackDriver(scheduler, reduce=reduce)
        self.driver.attach(model, grad_scaler=getattr(accelerator, "scaler", None))

    def before_optimizer_step(self, loss: torch.Tensor) -> None:
        """Record this micro-batch's loss; on the sync micro-batch, run the method's pre-step hook,
        reduce the step loss (every rank) and observe it."""
        self.driver.add_loss(loss)
        if self.accelerator.sync_gradients:
            self.driver.before_optimizer_step()

    def step(self) -> bool:
        """After ``optimizer.step()``: step the scheduler on a sync step that was not skipped."""
        if not self.accelerator.sync_gradients:
            return False
        return self.driver.step(skipped=self.accelerator.optimizer_step_was_skipped)

    @property
    def finished(self) -> bool:
        """The method's budget is spent (AdaScale): stop training."""
        return self.driver.finished

    def __call__(self, loss: torch.Tensor) -> bool:
        """One call after ``optimizer.step()`` (the earlier recipe): both halves at once. Not for
        methods with pre-step statistics (AdaScale), which need :meth:`before_optimizer_step` first."""
        if getattr(self.scheduler, "needs_gradient_samples", False):
            raise RuntimeError(
                f"{self.scheduler.name} reads the gradients before optimizer.step(): call "
                "feed.before_optimizer_step(loss) before optimizer.step() and feed.step() after it"
            )
        self.before_optimizer_step(loss)
        return self.step()
