"""``adascale``: scale the LR by the measured gain of a large batch, and stretch the schedule.

Johnson, Agrawal, Gu, Guestrin, "AdaScale SGD: A User-Friendly Algorithm for Distributed
Training", ICML 2020, arXiv 2007.05105 (Algorithm 1 of the ICLR-2020 submission text). A step
of S gradient samples (processes × micro-batches; S = 1 is refused) is worth
r = (σ² + μ²)/(σ²/S + μ²) ∈ [1, S] S=1 steps, σ² and μ² being the smoothed gradient variance and
squared norm (:mod:`~hf_autolr.schedulers.gradient_noise`); τ += r until τ ≥ ``num_training_steps``:

    lr = configured lr × base(⌊τ⌋) × r      (rule "sgd", the paper)
    lr = configured lr × base(⌊τ⌋) × √r     (rule "adam": AdaptDL's AdamScale, read, not copied)

Example::

    import hf_autolr
    args = TrainingArguments(output_dir="out", lr_scheduler_type="adascale", max_steps=T_SI,
                             gradient_accumulation_steps=4)         # S = 4 × processes

Design notes: docs/adascale.md in the repository.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import torch

from hf_autolr._validation import check_choice, check_number, check_steps
from hf_autolr.schedulers.base import FeedbackScheduler, _check_plain
from hf_autolr.schedulers.base_schedules import BASE_SCHEDULES
from hf_autolr.schedulers.gradient_noise import (
    VAR_FLOOR,
    AdamPreconditioner,
    GradientSampleTracker,
    averaging_weight,
    default_smoothing,
    gain_ratio,
    noise_estimates,
    unwrap_optimizer,
)

logger = logging.getLogger(__name__)

RULES = ("auto", "sgd", "adam")

_ADAPTIVE_CLASSES = tuple(
    getattr(torch.optim, name)
    for name in ("Adam", "AdamW", "NAdam", "RAdam", "Adamax", "SparseAdam", "RMSprop", "Adagrad", "Adadelta")
    if hasattr(torch.optim, name)
)
_ADAPTIVE_NAMES = ("adam", "rmsprop", "adagrad", "adadelta", "adafactor", "lamb", "lion", "adan", "prodigy")

ONE_SAMPLE_ERROR = (
    "AdaScale needs at least 2 gradient samples per optimizer step to estimate the gradient "
    "variance, and this step had 1 (one process, one micro-batch). Use "
    "gradient_accumulation_steps >= 2 or train on more processes (S = processes x micro-batches)."
)


def optimizer_family(optimizer: torch.optim.Optimizer) -> str | None:
    """``"sgd"``, ``"adam"`` (any adaptive, per-coordinate preconditioned optimizer) or ``None``.

    Looks through wrappers with an ``.optimizer`` attribute (accelerate's ``AcceleratedOptimizer``).
    """
    inner = unwrap_optimizer(optimizer)
    name = type(inner).__name__.lower()
    if isinstance(inner, torch.optim.SGD):
        return "sgd"
    if isinstance(inner, _ADAPTIVE_CLASSES) or "betas" in inner.defaults:
        return "adam"
    if any(key in name for key in _ADAPTIVE_NAMES):
        return "adam"
    if "sgd" in name:
        return "sgd"
    return None


def resolve_rule(optimizer: torch.optim.Optimizer, rule: str) -> str:
    """``rule`` itself, or for ``"auto"`` the family of ``optimizer`` (``ValueError`` if unknown)."""
    if rule != "auto":
        return rule
    family = optimizer_family(optimizer)
    if family is None:
        name = type(unwrap_optimizer(optimizer)).__name__
        raise ValueError(
            f"adascale: option 'rule'='auto' cannot tell whether {name} is SGD-like or adaptive; "
            "set rule='sgd' (LR x gain) or rule='adam' (LR x sqrt(gain))"
        )
    return family


def refuse_sharded(params: list[torch.Tensor]) -> None:
    """``ValueError`` for FSDP / ZeRO-sharded parameters: the gain needs each process's whole local
    gradient per sample, which sharded engines never materialise on the parameter."""
    sharded = any(type(p).__name__ == "DTensor" or hasattr(p, "_is_flat_param") or hasattr(p, "ds_id") for p in params)
    if sharded:
        raise ValueError(
            "adascale: the parameters are sharded (FSDP / DeepSpeed ZeRO), and AdaScale's gain needs each "
            "process's whole local gradient; train with DDP (accelerate launch without an FSDP/DeepSpeed "
            "config, or torchrun with DistributedDataParallel), or use autolr_gp, lrtuner or autodrop, which work sharded"
        )


class AdaScale(FeedbackScheduler):
    """AdaScale gain and scale-invariant progress on top of a pure-torch base schedule.

    Args:
        optimizer: the optimizer (or a wrapper with ``.optimizer``).
        num_training_steps: T_SI, the length of the base schedule in S=1 steps.
        num_warmup_steps: linear warmup of the base schedule, in S=1 steps (``None`` = 0).
        base: ``"constant"``, ``"constant_with_warmup"``, ``"linear"``, ``"cosine"``,
            ``"cosine_with_min_lr"`` (see :mod:`~hf_autolr.schedulers.base_schedules`).
        rule: ``"auto"``, ``"sgd"`` (LR × r) or ``"adam"`` (LR × √r on preconditioned statistics).
        smoothing: θ in [0, 1); ``None`` = max(1 − S/1000, 0).
        loss_scaling: ``"mean"`` (micro-batch losses divided by their count) or ``"sum"``.
        min_lr_ratio: floor of ``cosine_with_min_lr``, as a fraction of the LR.
        momentum_scaling: with heavy-ball momentum β (SGD rule), take β^r as the momentum of a
            step worth r S=1 steps and r·(1 − β^r)/(1 − β) as its LR factor instead of r: the same
            momentum decay per sample and the same steady-state step per sample as the S=1
            recipe. Not in the paper (default off); closes its momentum-0.9 deficit in our
            digits runs (docs/adascale.md).

    Example::

        sched = AdaScale(optimizer, num_training_steps=1000, base="cosine").attach(model)
        for micro_batches in loader:                # each step: ≥ 2 micro-batches (or processes)
            for x, y in micro_batches:
                (loss_fn(model(x), y) / len(micro_batches)).backward()
            sched.before_optimizer_step()           # this step's own gain
            optimizer.step(); sched.step(); optimizer.zero_grad()
            if sched.finished:                      # τ reached num_training_steps
                break
    """

    name = "adascale"
    description = (
        "the LR of a small-batch (S=1) recipe scaled by the measured gain at batch scale S "
        "(Johnson et al., AdaScale SGD, ICML 2020, arXiv 2007.05105)."
    )
    needs_loss = False
    needs_gradient_samples = True
    renamed_options = {"min_lr_rate": "min_lr_ratio"}

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        num_training_steps: int,
        *,
        num_warmup_steps: int | None = None,
        base: str = "constant",
        rule: str = "auto",
        smoothing: float | None = None,
        loss_scaling: str = "mean",
        min_lr_ratio: float = 0.0,
        momentum_scaling: bool = False,
        last_epoch: int = -1,
    ) -> None:
        m = self.name
        check_steps(m, num_training_steps, num_warmup_steps)
        check_choice(m, "base", base, tuple(BASE_SCHEDULES))
        check_choice(m, "rule", rule, RULES)
        if smoothing is not None:
            check_number(m, "smoothing", smoothing, low=0, high=1, high_inclusive=False)
        check_choice(m, "loss_scaling", loss_scaling, ("mean", "sum"))
        check_number(m, "min_lr_ratio", min_lr_ratio, low=0, high=1)
        if momentum_scaling and (resolved := resolve_rule(optimizer, rule)) != "sgd":
            raise ValueError(f"{m}: option 'momentum_scaling'=True applies to the SGD rule (heavy-ball momentum); "
                             f"this optimizer uses rule {resolved!r}")

        self.num_training_steps = int(num_training_steps)
        self.num_warmup_steps = int(num_warmup_steps or 0)
        self.base = base
        self.rule = resolve_rule(optimizer, rule)
        self.smoothing = None if smoothing is None else float(smoothing)
        self.loss_scaling = loss_scaling
        self.min_lr_ratio = float(min_lr_ratio)
        self.momentum_scaling = bool(momentum_scaling)
        self.base_momenta = [float(g.get("momentum", 0.0)) for g in unwrap_optimizer(optimizer).param_groups]

        self.progress = 0.0  # τ, in S=1 steps
        self.gain = 1.0  # r applied to the current LR (r₀ = 1)
        self.scale = 0  # S of the latest observation
        self.var_avg = 0.0  # smoothed, clipped σ²
        self.sqr_avg = 0.0  # smoothed, clipped μ²
        self.var_step = 0.0  # latest unclipped estimates (0 before the first)
        self.sqr_step = 0.0
        self.num_averaged = 0  # observations in the current average
        self.num_skipped = 0  # steps with non-finite gradients
        self.preconditioned = False  # whether the current average is on preconditioned gradients
        self._seen_samples = False  # a step with >= 2 samples was seen (S = 1 is refused before)
        self._recorded = False  # record_gradients() already consumed this step's samples
        self._tracker: GradientSampleTracker | None = None
        super().__init__(optimizer, last_epoch)

    # -- hooks ----------------------------------------------------------------------------------
    def attach(
        self, model: torch.nn.Module | Iterable[torch.Tensor] | None = None, *, grad_scaler: Any = None
    ) -> AdaScale:
        """Install the gradient hooks on ``model``'s parameters (a module, an iterable of parameters,
        or by default the optimizer's).

        Call once before the first backward; calling again with the same parameters only updates
        ``grad_scaler``. Attach to the module that is trained: given the DDP-wrapped one (without a
        comm hook of its own), the statistics' all-reduce is launched from DDP's comm hook with
        its last gradient bucket rather than as a second collective. The integrations call it
        with the model and the GradScaler.
        """
        if model is None:
            params = [p for group in unwrap_optimizer(self.optimizer).param_groups for p in group["params"]]
        elif isinstance(model, torch.nn.Module):
            params = list(model.parameters())
        else:
            params = list(model)
        refuse_sharded(params)
        if self._tracker is not None and self._tracker.same_params(params):
            self._tracker.grad_scaler = grad_scaler
            return self
        self.detach()
        preconditioner = AdamPreconditioner(self.optimizer) if self.rule == "adam" else None
        self._tracker = GradientSampleTracker(params, grad_scaler=grad_scaler, preconditioner=preconditioner,
                                              loss_scaling=self.loss_scaling)
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            self._tracker.reduce_with(model)  # the statistics ride on DDP's last gradient bucket
        return self

    def detach(self) -> None:
        """Remove the gradient hooks (no-op if none)."""
        if self._tracker is not None:
            self._tracker.remove()
            self._tracker = None

    # -- the method -----------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """Whether the scale-invariant progress τ reached ``num_training_steps`` (T_SI)."""
        return self.progress >= self.num_training_steps

    def lr_factor(self, gain: float | None = None) -> float:
        """The factor the gain contributes to the LR: r (SGD rule), √r (Adam rule), or with
        ``momentum_scaling`` r·(1 − β^r)/(1 − β)."""
        gain = self.gain if gain is None else gain
        if self.rule == "adam":
            return math.sqrt(gain)
        beta = self._scaled_beta()
        if beta > 0:  # momentum β^r per step: the same decay per sample; LR keeps η/(1−β) × r
            return gain * (1 - beta**gain) / (1 - beta)
        return gain

    def base_factor(self) -> float:
        """The S=1 base schedule at ⌊τ⌋."""
        schedule = BASE_SCHEDULES[self.base]
        step = math.floor(self.progress)
        return schedule(step, self.num_warmup_steps, self.num_training_steps, self.min_lr_ratio)

    def _scaled_beta(self) -> float:
        """β of the first param group when ``momentum_scaling`` is on, else 0."""
        return self.base_momenta[0] if self.momentum_scaling and self.base_momenta else 0.0

    def _scaled_momentum(self) -> float | None:
        """β^r of the first param group with ``momentum_scaling``, else ``None``."""
        beta = self._scaled_beta()
        return beta**self.gain if beta > 0 else None

    def multiplier(self) -> float:  # noqa: D102 - see FeedbackScheduler
        if self.momentum_scaling:  # the momentum goes with the LR it is set beside
            for group, beta in zip(unwrap_optimizer(self.optimizer).param_groups, self.base_momenta):
                if beta > 0:
                    group["momentum"] = beta**self.gain
        return self.base_factor() * self.lr_factor()

    def estimated_gain(self, scale: int | None = None) -> float:
        """r from the smoothed estimates for a step of ``scale`` samples (default: the latest S);
        1 before the first observation."""
        if self.num_averaged == 0:
            return 1.0
        return gain_ratio(self.var_avg, self.sqr_avg, self.scale if scale is None else scale)

    def record_gradients(self) -> None:
        """Use this step's gradients for this step's LR (optional: without it, a step's gain
        applies from the next step).

        Call between the last backward and ``optimizer.step()``; a collective under
        torch.distributed (every rank calls it, or none). The gain is that of this step's own
        sample count (1 for a one-sample step, e.g. the short last step of an epoch). A second
        call in the same step changes nothing. If the optimizer step is then skipped (fp16
        overflow: ``step()`` is not called), τ does not advance and the next call measures the
        next step afresh.
        """
        num_samples = self._observe()
        self._recorded = True
        if num_samples == 0:
            return
        self.gain = self.estimated_gain(num_samples)
        values = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def before_optimizer_step(self) -> None:
        """The integrations' hook (after the last backward, before ``optimizer.step()``):
        :meth:`record_gradients`, so that each step uses its own gain, as in the paper."""
        self.record_gradients()

    def update(self, loss: float | None) -> None:  # noqa: D102 - see FeedbackScheduler
        # Samples the hooks collected since record_gradients() (or without it) belong to this step.
        if not self._recorded or (self._tracker is not None and self._tracker.has_samples()):
            self._observe()
        self._recorded = False
        was_finished = self.finished
        self.progress += self.gain  # the step just taken counted r S=1 steps
        self.gain = self.estimated_gain()
        if self.finished and not was_finished:
            logger.info(
                "adascale: scale-invariant budget of %d S=1 steps reached after %d optimizer steps "
                "(S=%d); training should stop here (the hf_autolr integrations stop it)",
                self.num_training_steps, self.last_epoch + 1, self.scale,
            )

    def _observe(self) -> int:
        """Fold this step's samples into the averages; returns how many samples the step had."""
        if self._tracker is None:
            raise RuntimeError(
                "adascale: no gradient hooks; call scheduler.attach(model) before the first backward "
                "(the hf_autolr integrations do this)"
            )
        sample = self._tracker.collect(self.loss_scaling)
        n = sample.num_samples
        if n == 0:
            if not self._seen_samples:
                raise RuntimeError(
                    "adascale: no backward pass reached the hooks this step; attach() the parameters "
                    "being trained before the first backward"
                )
            return 0
        if n == 1:
            if not self._seen_samples:
                raise RuntimeError(ONE_SAMPLE_ERROR)
            return 1  # a short step (last of an epoch) after normal ones: no estimate, gain 1
        self._seen_samples = True
        if not sample.finite:
            self.num_skipped += 1
            return n
        var, sqr = noise_estimates(sample.sample_sq_sum, sample.mean_sq, n)
        self.var_step, self.sqr_step = var, sqr
        var, sqr = max(var, VAR_FLOOR), max(sqr, 0.0)
        if sample.preconditioned != self.preconditioned:
            self.num_averaged = 0  # preconditioning started: σ², μ² change units, restart
            self.preconditioned = sample.preconditioned
        theta = self.smoothing if self.smoothing is not None else default_smoothing(n)
        self.num_averaged += 1
        weight = averaging_weight(self.num_averaged, theta)
        self.var_avg = (1.0 - weight) * self.var_avg + weight * var
        self.sqr_avg = (1.0 - weight) * self.sqr_avg + weight * sqr
        self.scale = n

    # -- reporting and state --------------------------------------------------------------------
    def decisions(self) -> dict[str, object]:  # noqa: D102 - see FeedbackScheduler
        return {
            "gain": self.gain,
            "progress": self.progress,
            "scale": self.scale,
            "scale_invariant_steps": self.num_training_steps,
            "optimizer_steps": max(0, self.last_epoch),
            "finished": bool(self.finished),
        }

    def quantities(self) -> dict[str, float | None]:  # noqa: D102 - see FeedbackScheduler
        return {
            "gain": float(self.gain),
            "progress": float(self.progress),
            "scale": float(self.scale),
            "var": float(self.var_avg),
            "sqr": float(self.sqr_avg),
            "var_step": float(self.var_step),
            "sqr_step": float(self.sqr_step),
            "lr_factor": float(self.lr_factor()),
            "skipped": float(self.num_skipped),
            "momentum": self._scaled_momentum(),
        }

    def summary(self) -> str:
        return (f"{self.name}: gain {self.gain:.3g} at scale S={self.scale}, progress {self.progress:.0f} of "
                f"{self.num_training_steps} S=1 steps in {max(0, self.last_epoch)} optimizer steps")

    def outcome(self) -> str | None:
        return f"gain {self.gain:.3g}" if self.scale else None

    def state_dict(self) -> dict[str, Any]:
        """Plain values only: the hooks (``_tracker``) are runtime and are not saved."""
        state = {key: value for key, value in self.__dict__.items() if key not in ("optimizer", "_tracker")}
        _check_plain(state, "state")
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the progress, gain and averages; attached hooks stay as they are."""
        state = {key: value for key, value in state_dict.items() if key != "_tracker"}
        if "min_lr_rate" in state:  # checkpoints written before the option was renamed
            state["min_lr_ratio"] = state.pop("min_lr_rate")
        super().load_state_dict(state)
