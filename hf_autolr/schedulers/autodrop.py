"""``autodrop``: drop the LR when the angular velocity of the parameters saturates (AutoDrop).

Wang, Teng, Choromanska, "AutoDrop: Training Deep Learning Models with Automatic Learning Rate
Drop", UAI 2024, PMLR 244:3603-3629 (``rule="uai2024"``, the default); first version: Teng,
Wang, Choromanska, arXiv 2111.15317 (``rule="v1"``). Algorithm 1: every ``window`` steps, with
y_i the mean of the parameters over the window (angular velocity, Definition 3.3),

    ω_i = ∠(y_i − y_{i−1}, y_{i−1} − y_{i−2});  C_i = Gaussian mean of the last smoothing_width ω
    |C_i − C_prev| < threshold  ⇒  factor ← max(min_lr_ratio, drop_factor · factor)

Four ambiguities of the printed algorithm are settled by stated choices; ``v1`` is reconstructed
from the authors' code. It reads a seeded subset of the parameters' coordinates, never the loss.

Example::

    import hf_autolr
    args = TrainingArguments(output_dir="out", optim="sgd", lr_scheduler_type="autodrop")

Design notes: docs/autodrop.md in the repository.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from hf_autolr._validation import check_choice, check_number, check_steps
from hf_autolr.schedulers.base import FeedbackScheduler, Horizon
from hf_autolr.schedulers.param_subset import (
    BUFFER_DTYPE,
    StridedGather,
    SubsetPlan,
    gather,
    global_sums,
    local_tensor,
    looks_sharded,
    optimizer_params,
    plan_subset,
    world_size,
)

UAI, V1 = "uai2024", "v1"
_RULE_DEFAULTS = {UAI: {"drop_factor": 0.95, "threshold": 0.1}, V1: {"drop_factor": 0.2, "threshold": 0.01}}
_V1_DEFAULTS = {"extra_epochs": 20, "auto_threshold": True, "max_threshold": 1.0}
_BUFFERS = {UAI: ("window_sum", "prev_mean", "prev_disp"), V1: ("prev_point", "prev_disp")}


def angle_degrees(dot: float, norm_sq_a: float, norm_sq_b: float) -> float | None:
    """``∠(a, b)`` in degrees from ``a·b``, ``|a|²``, ``|b|²``; None if a vector is zero."""
    if not (norm_sq_a > 0 and norm_sq_b > 0) or not math.isfinite(dot):
        return None
    cosine = dot / math.sqrt(norm_sq_a * norm_sq_b)
    return math.degrees(math.acos(min(1.0, max(-1.0, cosine))))


def gaussian_smooth(values: list[float], width: int) -> float:
    """Gaussian-weighted mean of the last ``width`` values, centred on the newest (choice (b) of
    docs/autodrop.md).

    σ = min(std(values), width/2) in index units; σ = 0 gives the newest value.
    """
    window = values[-width:]
    mean = sum(window) / len(window)
    sigma = min(math.sqrt(sum((v - mean) ** 2 for v in window) / len(window)), width / 2)
    if sigma < 1e-12:
        return window[-1]
    newest = len(window) - 1
    weights = [math.exp(-((newest - j) ** 2) / (2 * sigma**2)) for j in range(len(window))]
    return sum(w * v for w, v in zip(weights, window)) / sum(weights)


class AutoDrop(FeedbackScheduler):
    """Step-wise LR drops when the smoothed angular velocity of the parameters stops changing.

    Example::

        scheduler = AutoDrop(optimizer, num_training_steps=10_000, window=32)
        for x, y in loader:
            loss_fn(model(x), y).backward()
            optimizer.step(); optimizer.zero_grad()
            scheduler.step()                        # no observe(): it reads the parameters
    """

    name = "autodrop"
    description = (
        "the LR is dropped when the angle between successive parameter displacements says progress "
        "has stalled (AutoDrop, UAI 2024)."
    )
    needs_loss = False

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        num_training_steps: int,
        *,
        num_warmup_steps: int | None = None,
        rule: str = UAI,
        drop_factor: float | None = None,
        window: int | None = None,
        smoothing_width: int = 10,
        threshold: float | None = None,
        min_lr_ratio: float = 1e-3,
        signed_test: bool = False,
        keep_reference_on_drop: bool = False,
        steps_per_epoch: int | None = None,
        extra_epochs: int | None = None,
        auto_threshold: bool | None = None,
        max_threshold: float | None = None,
        track_fraction: float | None = None,
        max_tracked: int | None = None,
        track_seed: int = 0,
        sharded: bool | str = "auto",
        last_epoch: int = -1,
    ) -> None:
        m = self.name
        check_steps(m, num_training_steps, num_warmup_steps)
        check_choice(m, "rule", rule, (UAI, V1))
        if drop_factor is not None:
            check_number(m, "drop_factor", drop_factor, low=0, high=1, low_inclusive=False, high_inclusive=False)
        if window is not None:
            check_number(m, "window", window, low=1, integer=True)
        check_number(m, "smoothing_width", smoothing_width, low=2, integer=True)
        if threshold is not None:
            check_number(m, "threshold", threshold, low=0, low_inclusive=False)
        check_number(m, "min_lr_ratio", min_lr_ratio, low=0, high=1)
        check_choice(m, "signed_test", signed_test, (True, False))
        check_choice(m, "keep_reference_on_drop", keep_reference_on_drop, (True, False))
        if track_fraction is not None:
            check_number(m, "track_fraction", track_fraction, low=0, high=1, low_inclusive=False)
        if max_tracked is not None:
            check_number(m, "max_tracked", max_tracked, low=1, integer=True)
        check_number(m, "track_seed", track_seed, integer=True)
        check_choice(m, "sharded", sharded, ("auto", True, False))
        v1_options = {
            "extra_epochs": extra_epochs,
            "auto_threshold": auto_threshold,
            "max_threshold": max_threshold,
        }
        if rule == V1:
            if steps_per_epoch is None:
                raise ValueError(f"{m}: rule 'v1' measures once per epoch; option 'steps_per_epoch' is required")
            check_number(m, "steps_per_epoch", steps_per_epoch, low=1, integer=True)
            v1_options = {k: _V1_DEFAULTS[k] if v is None else v for k, v in v1_options.items()}
            check_number(m, "extra_epochs", v1_options["extra_epochs"], low=0, integer=True)
            check_choice(m, "auto_threshold", v1_options["auto_threshold"], (True, False))
            check_number(m, "max_threshold", v1_options["max_threshold"], low=0, low_inclusive=False)
        else:
            misplaced = [k for k, v in {"steps_per_epoch": steps_per_epoch, **v1_options}.items() if v is not None]
            if misplaced:
                raise ValueError(f"{m}: option(s) {', '.join(map(repr, misplaced))} apply only to rule 'v1'")

        params = optimizer_params(optimizer)
        self.rule = rule
        self.total_steps = num_training_steps
        self.warmup_steps = num_warmup_steps or 0
        self.drop_factor = float(_RULE_DEFAULTS[rule]["drop_factor"] if drop_factor is None else drop_factor)
        self.window = window or max(8, round(num_training_steps / 1000))
        self.smoothing_width = smoothing_width
        self.threshold = float(_RULE_DEFAULTS[rule]["threshold"] if threshold is None else threshold)
        self.min_lr_ratio = float(min_lr_ratio)
        self.signed_test = signed_test
        self.keep_reference_on_drop = keep_reference_on_drop
        self.steps_per_epoch = steps_per_epoch
        self.extra_epochs = v1_options["extra_epochs"]
        self.auto_threshold = v1_options["auto_threshold"]
        self.max_threshold = v1_options["max_threshold"]
        self.sharded = looks_sharded(params) if sharded == "auto" else sharded
        plan = plan_subset(params, len(_BUFFERS[rule]), track_fraction, max_tracked, track_seed)
        self.track_stride = plan.stride
        self.track_offsets = list(plan.offsets)
        self.track_counts = list(plan.counts)
        self.tracked_fraction = plan.size / max(1, sum(local_tensor(p).numel() for p in params))
        self.saved_world_size = world_size()
        self._reader = StridedGather(plan, self.sharded)  # cached views; not part of the state
        # Decision state: plain values and fp32 buffers over the tracked coordinates.
        device = params[0].device
        for buffer in _BUFFERS[rule]:
            setattr(self, buffer, torch.zeros(plan.size, dtype=BUFFER_DTYPE, device=device))
        self.num_points = 0  # window means (uai2024) or epoch snapshots (v1) taken since a reset
        self.steps_in_window = 0
        self.prev_disp_sq = 0.0
        self.lr_factor = 1.0
        self.drops = 0
        self.drop_steps: list[int] = []
        self.omega = float("nan")
        self.omega_smoothed = float("nan")
        self.omega_buffer: list[float] = []  # B (uai2024)
        self.smoothed_prev: float | None = None  # C_prev (uai2024)
        self.prev_omega: float | None = None  # v1
        self.armed_epoch: int | None = None  # v1
        self.current_threshold = self.threshold  # v1 (auto_threshold raises it after each drop)
        super().__init__(optimizer, last_epoch)

    # -- the schedule ---------------------------------------------------------------------------
    def multiplier(self) -> float:  # noqa: D102 - see FeedbackScheduler
        step = self.last_epoch
        if step < self.warmup_steps:
            return step / self.warmup_steps
        return self.lr_factor

    # -- feedback (the parameters, not the loss) ------------------------------------------------
    def update(self, loss: float | None) -> None:  # noqa: D102 - see FeedbackScheduler
        steps_taken = self.last_epoch + 1
        if steps_taken <= self.warmup_steps:
            return
        if self.rule == UAI:
            self._accumulate_window()
        elif (steps_taken - 1) % self.steps_per_epoch == 0:  # after the first step of an epoch
            self._epoch_snapshot(epoch=(steps_taken - 1) // self.steps_per_epoch)

    def _plan(self) -> SubsetPlan:
        return SubsetPlan(self.track_stride, tuple(self.track_offsets), tuple(self.track_counts))

    def _angle_with_prev(self, disp: torch.Tensor) -> float | None:
        """ω between ``disp`` and the stored ``prev_disp`` (global over shards); updates |s|²."""
        dot, norm_sq = global_sums(
            [float(torch.dot(disp, self.prev_disp)), float(torch.dot(disp, disp))], disp.device, self.sharded
        )
        omega = angle_degrees(dot, norm_sq, self.prev_disp_sq)
        self.prev_disp_sq = norm_sq
        return omega

    def _accumulate_window(self) -> None:
        self._reader(optimizer_params(self.optimizer), self.window_sum, accumulate=True)
        self.steps_in_window += 1
        if self.steps_in_window < self.window:
            return
        mean = self.window_sum.div_(self.steps_in_window)  # y_i, in place
        self.steps_in_window = 0
        self.num_points += 1
        if self.num_points == 1:
            self.prev_mean.copy_(mean)
        else:
            disp = mean.sub_(self.prev_mean)  # s_i = y_i - y_{i-1}, in place
            self.prev_mean.add_(disp)  # y_i, without a temporary
            if self.num_points == 2:
                norm_sq = global_sums([float(torch.dot(disp, disp))], disp.device, self.sharded)[0]
                self.prev_disp_sq = norm_sq
                omega = None
            else:
                omega = self._angle_with_prev(disp)
            self.prev_disp.copy_(disp)
            if omega is not None:
                self._uai_decision(omega)
        self.window_sum.zero_()

    def _uai_decision(self, omega: float) -> None:
        self.omega = omega
        self.omega_buffer.append(omega)
        if len(self.omega_buffer) < self.smoothing_width:
            return
        smoothed = gaussian_smooth(self.omega_buffer, self.smoothing_width)
        self.omega_smoothed = smoothed
        self.omega_buffer.pop(0)
        if self.smoothed_prev is not None:
            change = smoothed - self.smoothed_prev
            if (change if self.signed_test else abs(change)) < self.threshold:
                self._drop()
                self.omega_buffer = []
                self.smoothed_prev = smoothed if self.keep_reference_on_drop else None
                return
        self.smoothed_prev = smoothed

    def _epoch_snapshot(self, epoch: int) -> None:
        params = optimizer_params(self.optimizer)
        self.num_points += 1
        if self.num_points == 1:
            gather(params, self._plan(), self.prev_point, accumulate=False)
            return
        # s_e = x_e - x_{e-1}, computed in prev_point; then prev_point <- x_e = x_{e-1} + s_e.
        disp = self.prev_point.neg_()
        gather(params, self._plan(), disp, accumulate=True)
        if self.num_points == 2:
            self.prev_disp_sq = global_sums([float(torch.dot(disp, disp))], disp.device, self.sharded)[0]
            omega = None
        else:
            omega = self._angle_with_prev(disp)
        self.prev_disp.copy_(disp)
        gather(params, self._plan(), self.prev_point, accumulate=False)
        if omega is None:
            return
        self.omega = omega
        if self.armed_epoch is None and self.prev_omega is not None:
            if abs(omega - self.prev_omega) < self.current_threshold:
                self.armed_epoch = epoch
        self.prev_omega = omega
        if self.armed_epoch is not None and epoch - self.armed_epoch >= self.extra_epochs:
            self._drop()
            if self.auto_threshold:
                self.current_threshold = min(self.max_threshold, self.current_threshold / self.drop_factor)
            self.armed_epoch = None

    def _drop(self) -> None:
        self.lr_factor = max(self.min_lr_ratio, self.lr_factor * self.drop_factor)
        self.drops += 1
        self.drop_steps.append(self.last_epoch + 1)

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The decision state (plain values and the fp32 buffers), without the cached views."""
        reader = self.__dict__.pop("_reader")
        try:
            return super().state_dict()
        finally:
            self._reader = reader

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state; buffers are copied in place (they stay on the parameters' device)."""
        state = dict(state_dict)
        state.pop("_reader", None)
        saved_buffers = {name: state.pop(name) for name in {*_BUFFERS[UAI], *_BUFFERS[V1]} if name in state}
        buffers = {name: saved_buffers[name] for name in _BUFFERS[self.rule] if name in saved_buffers}
        same_layout = (
            state.get("rule") == self.rule
            and state.get("track_stride") == self.track_stride
            and state.get("track_offsets") == self.track_offsets
            and state.get("track_counts") == self.track_counts
        )
        if not same_layout:  # the subset describes this model's parameters: keep ours
            for key in ("rule", "track_stride", "track_offsets", "track_counts", "tracked_fraction"):
                state.pop(key, None)
        super().load_state_dict(state)
        self._reader = StridedGather(self._plan(), self.sharded)
        sharded_elsewhere = self.sharded and (world_size() > 1 or self.saved_world_size > 1)
        if same_layout and not sharded_elsewhere and len(buffers) == len(_BUFFERS[self.rule]):
            for name, value in buffers.items():
                getattr(self, name).copy_(value)
        else:
            if not sharded_elsewhere:
                warnings.warn(
                    f"{self.name}: the saved angle statistics do not match this model's parameters; "
                    "they restart (the next angle comes a few windows later)",
                    stacklevel=2,
                )
            self._restart_statistics()
        self.saved_world_size = world_size()

    def _restart_statistics(self) -> None:
        for name in _BUFFERS[self.rule]:
            getattr(self, name).zero_()
        self.num_points = 0
        self.steps_in_window = 0
        self.prev_disp_sq = 0.0
        self.prev_omega = None

    # -- reporting ------------------------------------------------------------------------------
    def decisions(self) -> dict[str, object]:  # noqa: D102 - see FeedbackScheduler
        return {"drops": self.drops, "drop_steps": list(self.drop_steps), "final_lr_factor": self.lr_factor}

    def quantities(self) -> dict[str, float | None]:
        """Latest ω and smoothed ω (degrees; NaN until measured), drops, LR factor, tracked fraction."""
        return {
            "drops": float(self.drops),
            "lr_factor": float(self.multiplier()),
            "tracked_fraction": float(self.tracked_fraction),
            "omega": self.omega,
            "omega_smoothed": self.omega_smoothed,
        }

    def decision_horizon(self) -> Horizon | None:
        """``smoothing_width + 3`` windows of parameter means (v1: 3 + ``extra_epochs`` epochs)."""
        if self.rule == "v1":
            first_epoch = 0 if self.warmup_steps == 0 else (self.warmup_steps - 1) // self.steps_per_epoch + 1
            first = (first_epoch + 3 + self.extra_epochs) * self.steps_per_epoch + 1
            needs = f"a v1 drop needs 3 + extra_epochs={self.extra_epochs} epochs of steps_per_epoch={self.steps_per_epoch} steps"
        else:
            first = self.warmup_steps + (self.smoothing_width + 3) * self.window
            needs = (f"the first drop test needs smoothing_width={self.smoothing_width} + 3 windows of "
                     f"window={self.window} steps, i.e. step {first}")
        return Horizon(first, self.total_steps, needs, "the LR stays at the configured one")

    def summary(self) -> str:
        steps = ", ".join(map(str, self.drop_steps)) or "none"
        return f"{self.name}: {self.drops} LR drop(s) (steps: {steps}), final LR factor {self.lr_factor:.3g}"

    def outcome(self) -> str | None:
        return f"{self.drops} drop{'s' if self.drops != 1 else ''}"
