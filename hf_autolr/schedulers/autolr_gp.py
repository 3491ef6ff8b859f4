"""``autolr_gp``: adaptive warmup with GP smoothing, back-off, then decay to zero (AutoWU).

Kim, Kim, Kim, Lee, Kim, "Automated Learning Rate Scheduler for Large-batch Training",
AutoML@ICML 2021, arXiv 2107.05855; the algorithm of the authors' code (kakaobrain/autowu):
the LR warms up (``lr_t = min_lr·g^t``, or linearly) until the GP posterior (mean m, covariance
C on a grid ending at k; :mod:`~hf_autolr.schedulers.gp_smoothing`) of the per-step losses gives

    p = max_{i<k} Φ((m_k − m_i) / sqrt(C_ii + C_kk − 2 C_ik)) > confidence

in ``min_votes`` of ``n_draws`` subsets, ``patience`` tests in a row: the smoothed minimum is
behind. The LR backs off to its value there, then decays to zero (``linear``, ``cosine``, ...).
Departures, for fine-tuning and cost: a step cadence, an LR range relative to the configured LR
(a hint), bounded GP cost, a GP on ``log(loss)``, an optional ``rollback`` of the weights.

Example::

    import hf_autolr
    args = TrainingArguments(output_dir="out", lr_scheduler_type="autolr_gp", learning_rate=5e-5)

Design notes: docs/autolr_gp.md in the repository.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from hf_autolr._validation import check_choice, check_number
from hf_autolr.schedulers.base import FeedbackScheduler, Horizon
from hf_autolr.schedulers.gp_smoothing import (
    GPHyperparameters,
    mll_hyperparameters,
    moment_hyperparameters,
    posterior_for_last,
    prob_minimum_behind,
    single_thread,
)
from hf_autolr.schedulers.snapshot import Snapshot, restore_snapshot, take_snapshot

WARMUP, DECAY = "warmup", "decay"
RAMP_COPY_SPACING = 10**0.5  # rollback="ramp": one copy per half decade of the warmup's LR


class AutoLRGP(FeedbackScheduler):
    """Adaptive exponential/linear warmup that stops at the GP-smoothed loss minimum, then decays.

    Example::

        scheduler = AutoLRGP(optimizer, num_training_steps=2000, decay_type="cosine")
        for x, y in loader:
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step(); optimizer.zero_grad()
            scheduler.observe(loss)                 # before step(): the loss of this step
            scheduler.step()
    """

    name = "autolr_gp"
    description = (
        "adaptive warmup whose end is found by Gaussian-process smoothing of the loss, then a back-off "
        "to the LR at the smoothed minimum and a decay (Kim et al., AutoWU, arXiv 2107.05855)."
    )
    needs_loss = True

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        num_training_steps: int,
        *,
        num_warmup_steps: int | None = None,
        min_lr_ratio: float = 0.1,
        max_lr_ratio: float = 10.0,
        warmup_type: str = "exp",
        max_warmup_fraction: float = 0.5,
        decay_type: str = "linear",
        cooldown_fraction: float = 0.2,
        test_interval: int | None = None,
        min_observations: int = 10,
        patience: int = 3,
        n_draws: int = 5,
        min_votes: int = 3,
        confidence: float = 0.95,
        gp_max_points: int = 64,
        gp_grid_size: int = 50,
        gp_lengthscale: float = 0.2,
        gp_fit: str = "moments",
        precheck_bins: int = 32,
        log_loss: bool = True,
        rollback: str = "none",
        rollback_copies: int = 4,
        backoff: float = 1.0,
        seed: int = 0,
        last_epoch: int = -1,
    ) -> None:
        m = self.name
        check_number(m, "num_training_steps", num_training_steps, low=1, integer=True)
        check_number(m, "min_lr_ratio", min_lr_ratio, low=0, low_inclusive=False)
        check_number(m, "max_lr_ratio", max_lr_ratio, low=min_lr_ratio, low_inclusive=False)
        check_choice(m, "warmup_type", warmup_type, ("exp", "linear"))
        check_number(m, "max_warmup_fraction", max_warmup_fraction, low=0, high=1, low_inclusive=False)
        check_choice(m, "decay_type", decay_type, ("linear", "cosine", "constant_cosine"))
        check_number(m, "cooldown_fraction", cooldown_fraction, low=0, high=1)
        if test_interval is not None:
            check_number(m, "test_interval", test_interval, low=1, integer=True)
        check_number(m, "min_observations", min_observations, low=3, integer=True)
        check_number(m, "patience", patience, low=1, integer=True)
        check_number(m, "n_draws", n_draws, low=1, integer=True)
        check_number(m, "min_votes", min_votes, low=1, high=n_draws, integer=True)
        check_number(m, "confidence", confidence, low=0.5, high=1, high_inclusive=False)
        check_number(m, "gp_max_points", gp_max_points, low=min_observations, integer=True)
        check_number(m, "gp_grid_size", gp_grid_size, low=2, integer=True)
        check_number(m, "gp_lengthscale", gp_lengthscale, low=0, low_inclusive=False)
        check_choice(m, "gp_fit", gp_fit, ("moments", "mll"))
        check_choice(m, "log_loss", log_loss, (True, False))
        check_number(m, "precheck_bins", precheck_bins, low=0, integer=True)
        check_choice(m, "rollback", rollback, ("none", "start", "minimum", "ramp"))
        check_number(m, "rollback_copies", rollback_copies, low=1, integer=True)
        check_number(m, "backoff", backoff, low=0, high=1, low_inclusive=False)
        check_number(m, "seed", seed, integer=True)
        if num_warmup_steps:
            check_number(m, "num_warmup_steps", num_warmup_steps, low=1, integer=True)
            warmup_cap = num_warmup_steps
        else:
            warmup_cap = int(max_warmup_fraction * num_training_steps)
        self.total_steps = num_training_steps
        self.warmup_cap = max(1, min(warmup_cap, num_training_steps - 1))
        if self.warmup_cap <= min_observations:
            warnings.warn(f"{m}: a warmup of at most {self.warmup_cap} steps (of {num_training_steps}) is too short for a test "
                          f"(min_observations={min_observations}): the warmup runs to its cap", RuntimeWarning, stacklevel=2)
        self.min_lr_ratio = float(min_lr_ratio)
        self.max_lr_ratio = float(max_lr_ratio)
        self.warmup_type = warmup_type
        self.decay_type = decay_type
        self.cooldown_fraction = float(cooldown_fraction)
        self.test_interval = test_interval or max(1, round(self.warmup_cap / 50))
        self.min_observations = min_observations
        self.patience = patience
        self.n_draws = n_draws
        self.min_votes = min_votes
        self.confidence = float(confidence)
        self.gp_max_points = gp_max_points
        self.gp_grid_size = gp_grid_size
        self.gp_lengthscale = float(gp_lengthscale)
        self.gp_fit = gp_fit
        self.log_loss = log_loss
        self.precheck_bins = precheck_bins
        self.rollback = rollback
        self.rollback_copies = rollback_copies if rollback == "ramp" else 1
        self.backoff = float(backoff)
        self.seed = seed
        self._snapshots: list[tuple[int, float, Snapshot]] = []  # (step, LR factor, copy); in memory only
        self.snapshot_step = -1
        self.rolled_back_to = -1
        self.num_snapshots = 0
        # Decision state: plain values and tensors only.
        self.losses: list[float] = []  # per warmup step; NaN where none was observed
        self.num_finite = 0  # finite entries of ``losses``
        self.phase = WARMUP
        self.votes: list[bool] = []
        self.num_tests = 0
        self.num_gp_fits = 0
        self.last_probability = 0.0
        self.loss_ema = float("nan")
        self.loss_ema_min = float("inf")
        self.loss_noise_var = 0.0  # EMA of ½(Δloss)²: the per-step noise variance
        self.last_loss = float("nan")
        self.smoothed_loss = float("nan")
        self.gp_hyper: list[float] = []  # warm start for gp_fit="mll": [mean, outputscale, noise]
        self.switch_step = -1
        self.switch_factor = float("nan")
        self.switch_reason = ""
        self.minimum_step = -1.0
        self.switch_curve_steps: list[float] = []
        self.switch_curve_loss: list[float] = []
        super().__init__(optimizer, last_epoch)

    # -- the schedule ---------------------------------------------------------------------------
    def warmup_factor(self, step: float) -> float:
        """LR factor of the warmup ramp at (possibly fractional) ``step``."""
        frac = min(max(step / self.warmup_cap, 0.0), 1.0)
        if self.warmup_type == "exp":
            return self.min_lr_ratio * (self.max_lr_ratio / self.min_lr_ratio) ** frac
        return self.min_lr_ratio + (self.max_lr_ratio - self.min_lr_ratio) * frac

    def decay_factor(self, step: int) -> float:
        """LR factor after the switch: from ``switch_factor`` to zero at the last step."""
        start, end = self.switch_step, self.total_steps - 1
        if self.decay_type == "constant_cosine":
            start = max(start, int((1.0 - self.cooldown_fraction) * self.total_steps))
            if step < start:
                return self.switch_factor
        frac = min(max((step - start) / max(end - start, 1), 0.0), 1.0)
        if self.decay_type == "linear":
            return self.switch_factor * (1.0 - frac)
        return self.switch_factor * 0.5 * (1.0 + math.cos(math.pi * frac))

    def multiplier(self) -> float:  # noqa: D102 - see FeedbackScheduler
        step = self.last_epoch
        if self.phase == WARMUP:
            return self.warmup_factor(step)
        return self.decay_factor(step)

    # -- feedback -------------------------------------------------------------------------------
    def update(self, loss: float | None) -> None:  # noqa: D102 - see FeedbackScheduler
        if self.phase != WARMUP:
            if loss is not None:  # the logged EMA keeps tracking the loss after the switch
                self._track_ema(loss)
            return
        step = self.last_epoch
        while len(self.losses) < step:  # steps that were never observed
            self.losses.append(math.nan)
        if loss is not None:
            self.losses.append(loss)
            self.num_finite += 1
            alpha = self._track_ema(loss)
            self.loss_ema_min = min(self.loss_ema_min, self.loss_ema)
            if not math.isnan(self.last_loss):
                half_sq_diff = 0.5 * (loss - self.last_loss) ** 2
                self.loss_noise_var = (1 - alpha) * self.loss_noise_var + alpha * half_sq_diff
            self.last_loss = loss
        next_step = step + 1
        if next_step >= self.warmup_cap:
            self._switch(next_step, self.backoff * self.warmup_factor(next_step), "warmup_cap")
        elif next_step % self.test_interval == 0:
            if self._minimum_is_behind(next_step):
                factor = self.backoff * self.warmup_factor(self.minimum_step)
                self._restore_snapshot(factor)
                self._switch(next_step, factor, "gp_minimum")
            elif self.rollback == "minimum" and loss is not None and self.loss_ema <= self.loss_ema_min:
                self._take_snapshot(next_step)
        if self.phase == WARMUP and self._wants_snapshot(next_step):
            self._take_snapshot(next_step)

    # -- rollback -------------------------------------------------------------------------------
    def _wants_snapshot(self, step: int) -> bool:
        """``start``: once, after the first step; ``ramp``: each time the LR has grown √10-fold."""
        if self.rollback == "start":
            return self.snapshot_step < 0
        if self.rollback == "ramp":
            return not self._snapshots or self.warmup_factor(step) >= RAMP_COPY_SPACING * self._snapshots[-1][1]
        return False

    def _take_snapshot(self, step: int) -> None:
        """Copy the state that the LR factor of ``step`` will train next; keep ``rollback_copies``."""
        self._snapshots = (self._snapshots + [(step, self.warmup_factor(step), take_snapshot(self.optimizer))])[-self.rollback_copies :]
        self.snapshot_step = step
        self.num_snapshots += 1

    def _restore_snapshot(self, factor: float) -> None:
        """Restore the newest copy whose LR factor is at most ``factor`` (else the oldest kept)."""
        if not self._snapshots:
            return
        below = [entry for entry in self._snapshots if entry[1] <= factor * (1 + 1e-9)]
        step, _, snapshot = below[-1] if below else self._snapshots[0]
        restore_snapshot(self.optimizer, *snapshot)
        self.rolled_back_to = step

    def state_dict(self) -> dict[str, object]:  # noqa: D102 - the weight copies stay in memory
        state = super().state_dict()
        state.pop("_snapshots", None)
        return state

    def load_state_dict(self, state_dict: dict[str, object]) -> None:  # noqa: D102
        super().load_state_dict(state_dict)
        self._snapshots = []

    def _switch(self, step: int, factor: float, reason: str) -> None:
        self.phase = DECAY
        self.switch_step = step
        self.switch_factor = float(factor)
        self.switch_reason = reason
        self._snapshots = []  # whatever ended the warmup, the copies are no longer needed

    def _minimum_is_behind(self, num_steps: int) -> bool:
        """One test: vote, keep the last ``patience`` votes, True when all of them are yes."""
        if self.num_finite < self.min_observations:
            return False
        self.num_tests += 1
        vote = False
        if self._ema_has_risen():  # else the minimum cannot be behind us yet: no tensors, no GP
            losses = torch.tensor(self.losses[:num_steps], dtype=torch.float64)
            steps = torch.nonzero(~torch.isnan(losses)).squeeze(1)
            with single_thread():
                vote = self._gp_vote(steps, losses[steps], num_steps)
        self.votes = (self.votes + [bool(vote)])[-self.patience :]
        return len(self.votes) == self.patience and all(self.votes)

    def _ema_alpha(self) -> float:
        return 2.0 / (self.test_interval + 1.0)

    def _track_ema(self, loss: float) -> float:
        """Fold ``loss`` into the loss EMA; returns the EMA's weight."""
        alpha = self._ema_alpha()
        self.loss_ema = loss if math.isnan(self.loss_ema) else (1 - alpha) * self.loss_ema + alpha * loss
        return alpha

    def _ema_has_risen(self) -> bool:
        """Cheap gate: the loss EMA sits more than one EMA-noise σ above its running minimum."""
        alpha = self._ema_alpha()
        ema_sigma = math.sqrt(self.loss_noise_var * alpha / (2.0 - alpha))
        return self.loss_ema - self.loss_ema_min > ema_sigma

    def _gp_vote(self, steps: torch.Tensor, losses: torch.Tensor, num_steps: int) -> bool:
        """GP test on ``n_draws`` subsets; sets ``minimum_step`` (mean over draws) and the curve."""
        logged = self.log_loss and bool((losses > 0).all())
        if logged:
            losses = losses.log()
        scale = float(losses.std()) if steps.numel() > 1 else 0.0
        if not scale > 0:
            return False
        center = float(losses.mean())
        x_all = steps.double() / num_steps
        y_all = (losses - center) / scale
        grid = torch.linspace(float(x_all[0]), float(x_all[-1]), self.gp_grid_size, dtype=torch.float64)
        n = steps.numel()
        if self.precheck_bins and n > self.precheck_bins and not self._precheck(x_all, y_all, grid):
            return False
        if n > self.gp_max_points:  # random subsets, always keeping the newest point
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.num_tests)
            keys = torch.rand(self.n_draws, n - 1, generator=generator, dtype=torch.float64)
            pick = keys.topk(self.gp_max_points - 1, dim=1).indices.sort(dim=1).values
            pick = torch.cat([pick, torch.full((self.n_draws, 1), n - 1)], dim=1)
            x, y = x_all[pick], y_all[pick]
        else:
            x, y = x_all[None], y_all[None]
        draws = x.shape[0]
        hyper = self._hyperparameters(x, y)
        mean, var, cov_last = posterior_for_last(x, y, grid, self.gp_lengthscale, hyper)
        self.num_gp_fits += draws
        probability = prob_minimum_behind(mean, var, cov_last)
        minima = grid[mean.argmin(dim=1)] * num_steps
        curve = mean[-1] * scale + center
        curve = curve.exp() if logged else curve
        self.last_probability = float(probability.mean())
        self.smoothed_loss = float(curve[-1])
        self.minimum_step = float(minima.mean())
        self.switch_curve_steps = (grid * num_steps).tolist()
        self.switch_curve_loss = curve.tolist()
        positive = int((probability > self.confidence).sum())
        return positive >= (self.min_votes if draws > 1 else 1)

    def _precheck(self, x_all: torch.Tensor, y_all: torch.Tensor, grid: torch.Tensor) -> bool:
        """One cheap GP on ``precheck_bins`` bin means (noise σ²/count): is a full vote worth it?

        Uses every observation, so it is at least as sensitive as one subsampled draw; most tests
        end here and cost one small factorisation instead of ``n_draws``.
        """
        n, bins = x_all.numel(), self.precheck_bins
        which = torch.arange(n) * bins // n
        counts = torch.bincount(which, minlength=bins).double()
        xb = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, x_all) / counts
        yb = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, y_all) / counts
        raw = moment_hyperparameters(y_all)
        hyper = GPHyperparameters(mean=raw.mean, outputscale=raw.outputscale, noise=(raw.noise / counts)[None])
        mean, var, cov_last = posterior_for_last(xb[None], yb[None], grid, self.gp_lengthscale, hyper)
        self.num_gp_fits += 1
        probability = float(prob_minimum_behind(mean, var, cov_last))
        self.last_probability = probability
        return probability > self.confidence

    def _hyperparameters(self, x: torch.Tensor, y: torch.Tensor) -> GPHyperparameters:
        """Per-draw hyperparameters (``[D]`` tensors): closed form, or GPyTorch MLL fits."""
        if self.gp_fit == "moments":
            return moment_hyperparameters(y)
        fits = []
        for xi, yi in zip(x, y):  # the slow reference path: one likelihood fit per draw
            init = GPHyperparameters(*self.gp_hyper) if self.gp_hyper else None
            fits.append(mll_hyperparameters(xi, yi, self.gp_lengthscale, init=init))
            self.gp_hyper = [float(fits[-1].mean), float(fits[-1].outputscale), float(fits[-1].noise)]
        return GPHyperparameters(
            *(torch.tensor([float(getattr(h, f)) for h in fits], dtype=torch.float64) for f in ("mean", "outputscale", "noise"))
        )

    # -- reporting ------------------------------------------------------------------------------
    def decisions(self) -> dict[str, object]:  # noqa: D102 - see FeedbackScheduler
        switched = self.switch_step >= 0
        return {
            "switched": switched,
            "switch_step": self.switch_step if switched else None,
            "switch_lr": self.switch_factor * self._hint_lr() if switched else None,
            "switch_lr_factor": self.switch_factor if switched else None,
            "switch_reason": self.switch_reason or None,
            "rolled_back_to_step": self.rolled_back_to if self.rolled_back_to >= 0 else None,
            "snapshots": self.num_snapshots,
            "tests": self.num_tests,
        }

    def quantities(self) -> dict[str, float | None]:
        """Phase (0 warmup, 1 decay), LR factor, the loss EMA (tracking after the switch too), the
        last test's probability, the switch step and LR factor (from the switch on), tests run."""
        return {
            "phase": 0.0 if self.phase == WARMUP else 1.0,
            "lr_factor": float(self.multiplier()),
            "smoothed_loss": self.loss_ema,
            "p_minimum_behind": self.last_probability,
            "switch_step": float(self.switch_step),
            "switch_lr_factor": self.switch_factor,
            "tests": float(self.num_tests),
        }

    def outcome(self) -> str | None:
        """``"test@<step>×<LR factor>"`` or ``"cap@…"`` once the warmup ended, else ``None``."""
        if self.switch_step < 0:
            return None
        return f"{'test' if self.switch_reason == 'gp_minimum' else 'cap'}@{self.switch_step}×{self.switch_factor:.3g}"

    def summary(self) -> str:
        if self.switch_step < 0:
            return f"{self.name}: LR hint {self._hint_lr():g}; still warming up (step {max(0, self.last_epoch)})"
        how = "the test (GP-smoothed loss minimum)" if self.switch_reason == "gp_minimum" else "its cap"
        rollback = f", weights rolled back to step {self.rolled_back_to}" if self.rolled_back_to >= 0 else ""
        return (f"{self.name}: LR hint {self._hint_lr():g}; warmup ended by {how} at step {self.switch_step}, "
                f"LR {self.switch_factor * self._hint_lr():.3g}{rollback}")

    def decision_horizon(self) -> Horizon | None:
        """``patience`` tests, every ``test_interval`` steps from ``min_observations`` on, before the cap."""
        if self.warmup_cap <= self.min_observations:
            return None  # __init__ warned: not even one test fits
        first_test = math.ceil(self.min_observations / self.test_interval) * self.test_interval
        first = first_test + (self.patience - 1) * self.test_interval
        needs = (f"a switch needs patience={self.patience} tests every test_interval={self.test_interval} steps from "
                 f"min_observations={self.min_observations}, the earliest at step {first}, before the warmup cap at "
                 f"step {self.warmup_cap}")
        return Horizon(first, self.warmup_cap - 1, needs, "the warmup runs to its cap")

    def plot_marks(self) -> dict[str, Any]:
        marks: dict[str, Any] = {}
        if self.switch_curve_steps:
            marks["loss_curves"] = [("GP-smoothed loss", self.switch_curve_steps, self.switch_curve_loss)]
        if self.switch_step >= 0:
            marks["events"] = [(self.switch_step, f"switch ({self.switch_reason})")]
        return marks
