"""The one protocol every hf_autolr method speaks.

A method is a :class:`torch.optim.lr_scheduler.LRScheduler` whose learning rate for each param
group is ``base_lr * multiplier``: the ratios between groups are kept, and the configured LR of
the optimizer is the method's hint. On top of ``step()`` it has

- ``observe(loss)``: the training loss of the optimizer step just taken, already reduced across
  processes (mean). Call it *before* ``step()``; a step whose ``step()`` is never called (a
  skipped fp16 step) leaves its observation pending, and the next ``observe`` replaces it.
- ``diagnostics() -> dict[str, float]``: what gets logged, ``"<name>/<quantity>"`` keys, finite
  values only (a subclass returns its quantities from :meth:`quantities`).

Everything the card, the plot, the scripts and the benchmark show about a method comes from the
method: ``name``, ``description``, :meth:`decisions`, :meth:`summary`, :meth:`outcome` and
:meth:`plot_marks`.

``state_dict()`` holds only plain Python values and tensors, so ``scheduler.pt`` loads with
``torch.load(..., weights_only=True)``; a resumed run continues with the same LR sequence.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import torch
from torch.optim.lr_scheduler import LRScheduler

_STARVED_AFTER = 4  # warn when this many steps passed without any observe()
_PLAIN = (type(None), bool, int, float, str, torch.Tensor)


def _check_plain(value: Any, path: str) -> None:
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"scheduler state key {path}[{key!r}] is not a str or int")
            _check_plain(item, f"{path}[{key!r}]")
        return
    raise TypeError(
        f"scheduler state {path} is a {type(value).__name__}; only plain Python values and tensors "
        "load with torch.load(weights_only=True)"
    )


class Horizon(NamedTuple):
    """When a method can first decide: the first step a decision can come, the last step one may
    come, what it takes, and what happens in a run too short for it."""

    first_step: int
    last_step: int
    needs: str
    otherwise: str


def too_short_message(scheduler: FeedbackScheduler, num_training_steps: int | None) -> str | None:
    """The warning for a run of ``num_training_steps`` too short for ``scheduler`` to decide
    anything (see :meth:`FeedbackScheduler.decision_horizon`), else ``None``."""
    limits = scheduler.decision_horizon()
    if limits is None or limits.first_step <= limits.last_step:
        return None
    return (f"hf_autolr: {scheduler.name} cannot adapt the learning rate in a run of {num_training_steps} steps: "
            f"{limits.needs}; {limits.otherwise}. Train longer or lower those options (lr_scheduler_kwargs).")


class FeedbackScheduler(LRScheduler):
    """Base class: an LR multiplier driven by feedback from training.

    Subclasses implement :meth:`multiplier` (the factor for step ``self.last_epoch``) and, if they
    learn from the loss, :meth:`update` (called once per ``step()`` with the loss of the step just
    taken, or ``None`` when none was observed or it was NaN/inf). ``needs_loss`` says whether the
    integrations must feed ``observe``; they warn once if a run never does.

    Example::

        class HalveOnRise(FeedbackScheduler):
            name = "halve_on_rise"

            def __init__(self, optimizer, last_epoch=-1):
                self.factor, self.best = 1.0, float("inf")
                super().__init__(optimizer, last_epoch)

            def update(self, loss):                 # the loss of the step just taken, or None
                if loss is not None:
                    self.factor *= 0.5 if loss > self.best else 1.0
                    self.best = min(self.best, loss)

            def multiplier(self):
                return self.factor

        scheduler = HalveOnRise(optimizer)
        loss.backward(); optimizer.step(); optimizer.zero_grad()
        scheduler.observe(loss)                     # before step(), which calls update()
        scheduler.step()
    """

    name: str = "feedback"
    description: str = ""  # one sentence for model cards: what the method does, and its paper
    needs_loss: bool = True
    needs_gradient_samples: bool = False  # ≥ 2 gradient samples per step (micro-batches × processes)
    renamed_options: dict[str, str] = {}  # old option name -> current one (accepted with a warning)

    def __init__(self, optimizer: torch.optim.Optimizer, last_epoch: int = -1) -> None:
        self._pending_loss: float | None = None
        self.num_observed = 0
        self.num_nonfinite = 0
        super().__init__(optimizer, last_epoch)

    # -- feedback -------------------------------------------------------------------------------
    def observe(self, loss: float | torch.Tensor) -> None:
        """Record the (already process-reduced) training loss of the current optimizer step."""
        value = float(loss.detach().float().mean()) if isinstance(loss, torch.Tensor) else float(loss)
        self.num_observed += 1
        if math.isfinite(value):
            self._pending_loss = value
        else:
            self.num_nonfinite += 1
            self._pending_loss = None

    def update(self, loss: float | None) -> None:
        """Learn from the step just taken (index ``self.last_epoch``). Default: nothing."""

    def multiplier(self) -> float:
        """LR factor (relative to each group's configured LR) for step ``self.last_epoch``."""
        raise NotImplementedError

    def quantities(self) -> dict[str, float | None]:
        """The method's scalars, unprefixed; ``None`` or NaN where not defined yet. Default: none."""
        return {}

    def diagnostics(self) -> dict[str, float]:
        """``"<name>/<quantity>"`` for every finite :meth:`quantities` value, and, for a method that
        learns from the loss, ``"<name>/nonfinite_losses"``."""
        values = dict(self.quantities())
        if self.needs_loss:
            values["nonfinite_losses"] = self.num_nonfinite
        return {f"{self.name}/{key}": float(v) for key, v in values.items() if v is not None and math.isfinite(v)}

    def decisions(self) -> dict[str, Any]:
        """What the method decided so far, in plain values (recorded in model cards)."""
        return {}

    def summary(self) -> str:
        """One line on what the method decided, for logs and the card. Default: its name."""
        return self.name

    def outcome(self) -> str | None:
        """The decision in a few characters, for tables (e.g. ``"test@40×3.2"``); ``None``: nothing to show."""
        return None

    def decision_horizon(self) -> Horizon | None:
        """When the method can first decide; ``None`` when any run length works (or it warns itself).
        ``build_scheduler`` warns once when a run ends before that."""
        return None

    def plot_marks(self) -> dict[str, Any]:
        """What ``lr_schedule.png`` draws besides LR and loss: ``{"events": [(step, label)],
        "loss_curves": [(label, steps, values)]}``, either list may be missing."""
        return {}

    def _hint_lr(self) -> float:
        """The first param group's configured LR: the scale of the LR factors."""
        return float(self.base_lrs[0]) if self.base_lrs else float("nan")

    # -- hooks the integrations call; no-ops unless a method needs them -------------------------
    def attach(self, model: torch.nn.Module | None = None, *, grad_scaler: Any = None) -> FeedbackScheduler:
        """Called once the model is known (before the first backward), e.g. to add gradient hooks."""
        return self

    def before_optimizer_step(self) -> None:
        """Called on every rank after a step's last backward, before ``optimizer.step()``."""

    @property
    def finished(self) -> bool:
        """True when the method's own budget is spent and training should stop (AdaScale)."""
        return False

    # -- LRScheduler ----------------------------------------------------------------------------
    def step(self, epoch: int | None = None) -> None:  # noqa: D102 - see LRScheduler.step
        if epoch is not None:
            raise ValueError(f"{self.name}: step(epoch) is not supported; call step() once per optimizer step")
        if not self._is_initial:
            loss, self._pending_loss = self._pending_loss, None
            self.update(loss)
            self._warn_if_starved()
        super().step()

    def _warn_if_starved(self) -> None:
        if self.needs_loss and self.num_observed == 0 and self.last_epoch == _STARVED_AFTER:
            warnings.warn(
                f"hf_autolr: the {self.name!r} scheduler has taken {_STARVED_AFTER + 1} steps without "
                "receiving a single loss. It learns from the training loss: call "
                "scheduler.observe(loss) before every scheduler.step() (the Trainer integration does "
                "this for you after `import hf_autolr`). Without losses it cannot adapt the LR.",
                RuntimeWarning,
                stacklevel=3,
            )

    def get_lr(self) -> list[float]:  # noqa: D102 - see LRScheduler.get_lr
        factor = float(self.multiplier())
        return [float(base) * factor for base in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state: plain values and tensors only (``weights_only=True`` safe)."""
        state = {key: value for key, value in self.__dict__.items() if key != "optimizer"}
        _check_plain(state, "state")
        return state
