"""The one driver of the method protocol, used by every loop: Trainer, Accelerate, plain PyTorch.

Per optimizer step, on every rank:

1. ``add_loss(loss)`` for each micro-batch;
2. ``before_optimizer_step()`` after the last backward: the method's pre-step hook (AdaScale's
   gradient statistics), then, for a method that learns from the loss, the step loss reduced
   across processes (a collective, run on every rank even with no loss: it then sends NaN, which
   the method counts and ignores) and ``observe``;
3. ``optimizer.step()``, then ``step()``: ``scheduler.step()`` unless the optimizer step was
   skipped (fp16 overflow), whose observation the next one replaces.

Pure torch (``torch.distributed`` for the reduction), so a plain loop needs neither transformers
nor accelerate. Example::

    driver = FeedbackDriver(scheduler).attach(model)
    for batch in loader:
        loss = model(**batch).loss
        loss.backward()
        driver.before_optimizer_step(loss)
        optimizer.step(); optimizer.zero_grad()
        driver.step()
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from hf_autolr.schedulers.base import FeedbackScheduler

logger = logging.getLogger(__name__)
_UNFED_AFTER = 2  # optimizer steps without a finite loss before the warning


def mean_over_processes(value: torch.Tensor) -> float:
    """All-reduce mean of a scalar tensor when ``torch.distributed`` runs with >1 process."""
    value = value.detach().double().reshape(1)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        if dist.get_backend() == "nccl" and torch.cuda.is_available():  # nccl reduces CUDA tensors only
            value = value.cuda()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value = value / dist.get_world_size()
    return float(value.item())


class FeedbackDriver:
    """Feeds one :class:`FeedbackScheduler` from a training loop (see the module docstring).

    Args:
        scheduler: the method; anything else (an HF scheduler) makes every call a no-op.
        micro_batch_losses: ``"mean"`` (each ``add_loss`` is a micro-batch's own mean loss) or
            ``"sum"`` (already divided by the accumulation count, as ``Trainer.training_step``
            returns it).
        reduce: scalar tensor -> float mean over processes (default: ``torch.distributed``).
    """

    def __init__(self, scheduler: Any, *, micro_batch_losses: str = "mean",
                 reduce: Callable[[torch.Tensor], float] = mean_over_processes) -> None:
        if micro_batch_losses not in ("mean", "sum"):
            raise ValueError(f"FeedbackDriver: micro_batch_losses={micro_batch_losses!r}; accepted: 'mean', 'sum'")
        self.scheduler = scheduler if isinstance(scheduler, FeedbackScheduler) else None
        self.micro_batch_losses = micro_batch_losses
        self.reduce = reduce
        self.history: dict[str, list[float]] = {"step": [], "lr": [], "loss": []}
        self._losses: list[torch.Tensor] = []
        self._warned = False

    def attach(self, model: torch.nn.Module | None = None, *, grad_scaler: Any = None) -> FeedbackDriver:
        """Let the method hook the model (once, before the first backward); starts a new history."""
        self.history = {"step": [], "lr": [], "loss": []}
        self._losses = []
        if self.scheduler is not None:
            self.scheduler.attach(model, grad_scaler=grad_scaler)
        return self

    def add_loss(self, loss: torch.Tensor | float) -> None:
        """One micro-batch's loss for the current optimizer step."""
        self._losses.append(torch.as_tensor(loss).detach().float().sum().reshape(()))

    def before_optimizer_step(self, loss: torch.Tensor | float | None = None, *, step: int | None = None) -> float | None:
        """After the step's last backward, before ``optimizer.step()``, on every rank (``loss``: one
        more micro-batch, as :meth:`add_loss`). Returns the step loss (NaN if none): reduced over
        processes for a method that learns from it, this rank's otherwise."""
        if self.scheduler is None:
            self._losses = []
            return None
        if loss is not None:
            self.add_loss(loss)
        self.scheduler.before_optimizer_step()
        if self._losses:
            stacked = torch.stack(self._losses)
            local = stacked.mean() if self.micro_batch_losses == "mean" else stacked.sum()
        else:
            local = torch.tensor(float("nan"))
        self._losses = []
        if self.scheduler.needs_loss:
            reduced = self.reduce(local)
            self.scheduler.observe(reduced)
        else:  # the method ignores the loss: no collective for it (the history keeps this rank's)
            reduced = float(local)
        self.history["step"].append(float(len(self.history["step"]) if step is None else step))
        self.history["lr"].append(float(self.scheduler.get_last_lr()[0]))
        self.history["loss"].append(reduced)
        return reduced

    def step(self, *, skipped: bool = False) -> bool:
        """``scheduler.step()`` after ``optimizer.step()``, unless that step was skipped; True if stepped."""
        if self.scheduler is None or skipped:
            return False
        self.scheduler.step()
        return True

    @property
    def finished(self) -> bool:
        """The method's own budget is spent (AdaScale's scale-invariant steps): stop training."""
        return self.scheduler is not None and self.scheduler.finished

    def diagnostics(self) -> dict[str, float]:
        """The method's ``diagnostics()`` (``{}`` for a scheduler that is not ours)."""
        return {} if self.scheduler is None else self.scheduler.diagnostics()

    def check_fed(self, steps_done: int) -> None:
        """Warn once, loudly, if a method that learns from the loss has had no finite loss yet."""
        scheduler = self.scheduler
        if scheduler is None or not scheduler.needs_loss or self._warned or steps_done < _UNFED_AFTER:
            return
        if scheduler.num_observed - scheduler.num_nonfinite == 0:
            self._warned = True
            message = (
                f"hf_autolr: the {scheduler.name!r} scheduler has received no finite training loss after "
                f"{steps_done} steps, so it cannot adapt the learning rate. Does the model return a loss? "
                "With a custom compute_loss, use AutoLRTrainer or call AutoLRCallback.add_loss(loss) yourself."
            )
            logger.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=3)
