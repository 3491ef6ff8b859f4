"""``lrtuner``: tune the LR during training by trial, explore at the tuned LR, then decay.

Iyer, Thejas, Kwatra, Ramjee, Sivathanu, "LRTuner: A Learning Rate Tuner for Deep Neural
Networks", AutoML@ICML 2021, arXiv 2105.14526. **A reconstruction, not the paper's algorithm**:
only the abstract could be read and there is no public code; this module implements a stand-in
designed for this package, labelled as such, on the same authors' explore-exploit ("Knee")
schedule, arXiv 2003.03977:

    warmup   linear from 0 over num_warmup_steps
    explore  every tune_every steps, train probe_steps at each of f·a, f/a, f (a = probe_factor)
             from one snapshot; the lowest mean loss wins if `significance` standard errors
             below f's; until `patience` periods stall, or explore_fraction·T
    exploit  linear decay from f to final_lr_ratio·f at num_training_steps

Example::

    import hf_autolr
    args = TrainingArguments(output_dir="out", lr_scheduler_type="lrtuner", learning_rate=5e-5)

Design notes: docs/lrtuner.md in the repository.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from hf_autolr._validation import check_choice, check_number, check_steps
from hf_autolr.schedulers.base import FeedbackScheduler, Horizon
from hf_autolr.schedulers.snapshot import restore_snapshot, take_snapshot

WARMUP, EXPLORE, EXPLOIT = "warmup", "explore", "exploit"
_PHASE_CODE = {WARMUP: 0.0, EXPLORE: 1.0, EXPLOIT: 2.0}


class LRTuner(FeedbackScheduler):
    """Trial-and-restore LR tuning during an explore phase, then linear decay (reconstruction).

    Example::

        scheduler = LRTuner(optimizer, num_training_steps=5000, num_warmup_steps=100)
        for x, y in loader:
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step(); optimizer.zero_grad()
            scheduler.observe(loss)                 # the loss of the step just taken
            scheduler.step()                        # may restore the weights (a probe round)
    """

    name = "lrtuner"
    description = "the LR factor is tuned online by short probing rounds of neighbouring factors (LRTuner)."
    needs_loss = True

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        num_training_steps: int,
        *,
        num_warmup_steps: int | None = None,
        probe: str = "restore",
        probe_factor: float = 2.0,
        probe_steps: int | None = None,
        tune_every: int | None = None,
        significance: float = 2.0,
        explore_fraction: float = 0.5,
        patience: int = 5,
        min_lr_ratio: float = 0.01,
        max_lr_ratio: float = 100.0,
        final_lr_ratio: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        m = self.name
        check_steps(m, num_training_steps, num_warmup_steps)
        check_choice(m, "probe", probe, ("restore", "off"))
        check_number(m, "probe_factor", probe_factor, low=1, low_inclusive=False)
        if probe_steps is not None:
            check_number(m, "probe_steps", probe_steps, low=4, integer=True)
        probe_steps = probe_steps or min(50, max(8, num_training_steps // 100))
        if tune_every is not None:
            check_number(m, "tune_every", tune_every, low=3 * probe_steps + 1, integer=True)
        check_number(m, "significance", significance, low=0)
        check_number(m, "explore_fraction", explore_fraction, low=0, high=1)
        check_number(m, "patience", patience, low=1, integer=True)
        check_number(m, "min_lr_ratio", min_lr_ratio, low=0, high=1, low_inclusive=False)
        check_number(m, "max_lr_ratio", max_lr_ratio, low=1)
        check_number(m, "final_lr_ratio", final_lr_ratio, low=0, high=1)
        self.total_steps = num_training_steps
        self.warmup_steps = num_warmup_steps or 0
        self.probe = probe
        self.probe_factor = float(probe_factor)
        self.probe_steps = probe_steps
        self.tune_every = tune_every or 10 * probe_steps
        self.significance = float(significance)
        self.explore_end = max(self.warmup_steps, round(explore_fraction * num_training_steps))
        self.patience = patience
        self.min_lr_ratio = float(min_lr_ratio)
        self.max_lr_ratio = float(max_lr_ratio)
        self.final_lr_ratio = float(final_lr_ratio)
        # Decision state: plain values, plus the snapshot tensors while a round runs.
        self.phase = WARMUP if self.warmup_steps > 0 else EXPLORE
        self.lr_factor = 1.0
        self.next_round = max(self.warmup_steps, 1)  # a snapshot needs a step() before the round
        self.candidates: list[float] = []  # this round's factors; the current one last
        self.candidate_index = -1  # -1: no round running
        self.candidate_start = 0
        self.candidate_losses: list[list[float]] = []
        self.snapshot_params: list[torch.Tensor] | None = None
        self.snapshot_state: list[dict[str, Any]] | None = None
        self.snapshot_groups: list[dict[str, Any]] | None = None
        self.period_losses: list[float] = []
        self.best_period_loss = math.inf
        self.stale_periods = 0
        self.exploit_start = -1
        self.exploit_factor = 1.0
        self.loss_ema = math.nan
        self.rounds = 0
        self.raises = 0
        self.lowers = 0
        self.probe_step_count = 0
        self.discarded_steps = 0
        self.last_scores: list[float] = []
        super().__init__(optimizer, last_epoch)

    # -- the schedule ---------------------------------------------------------------------------
    def multiplier(self) -> float:  # noqa: D102 - see FeedbackScheduler
        step = self.last_epoch
        if self.phase == WARMUP:
            return step / self.warmup_steps
        if self.phase == EXPLOIT:
            frac = min(1.0, (step - self.exploit_start) / max(1, self.total_steps - self.exploit_start))
            return self.exploit_factor * (1.0 - (1.0 - self.final_lr_ratio) * frac)
        if self.candidate_index >= 0:
            return self.candidates[self.candidate_index]
        return self.lr_factor

    # -- feedback -------------------------------------------------------------------------------
    def update(self, loss: float | None) -> None:  # noqa: D102 - see FeedbackScheduler
        step = self.last_epoch  # the step just taken
        next_step = step + 1
        if self.candidate_index >= 0:
            self._record_probe(step, loss)
        elif loss is not None:
            alpha = 2.0 / (self.tune_every + 1.0)
            self.loss_ema = loss if math.isnan(self.loss_ema) else (1 - alpha) * self.loss_ema + alpha * loss
            if self.phase == EXPLORE:
                self.period_losses.append(loss)
        if self.phase == WARMUP and next_step >= self.warmup_steps:
            self.phase = EXPLORE
        if self.phase != EXPLORE or self.candidate_index >= 0:
            return
        if next_step >= self.explore_end:
            self._start_exploit(next_step)
        elif next_step >= self.next_round:
            if self._period_stalled():
                self._start_exploit(next_step)
            elif self.probe == "restore" and next_step + 3 * self.probe_steps <= self.explore_end:
                self._start_round(next_step)
            else:
                self.next_round = next_step + self.tune_every

    def _period_stalled(self) -> bool:
        """Close the period: True after ``patience`` periods without a lower mean loss."""
        if self.probe == "off" or not self.period_losses:
            return False
        period_loss = sum(self.period_losses) / len(self.period_losses)
        self.period_losses = []
        if period_loss < self.best_period_loss:
            self.best_period_loss, self.stale_periods = period_loss, 0
        else:
            self.stale_periods += 1
        return self.stale_periods >= self.patience

    def _start_exploit(self, step: int) -> None:
        self.phase = EXPLOIT
        self.exploit_start = step
        self.exploit_factor = self.lr_factor

    # -- probe rounds ---------------------------------------------------------------------------
    def _start_round(self, step: int) -> None:
        f, a = self.lr_factor, self.probe_factor
        others = [min(self.max_lr_ratio, f * a), max(self.min_lr_ratio, f / a)]
        self.next_round = step + self.tune_every
        others = [c for i, c in enumerate(others) if c != f and c not in others[:i]]
        if not others:  # both neighbours clipped to f by the LR bounds: nothing to try
            return
        self.candidates = others + [f]
        self.candidate_losses = [[] for _ in self.candidates]
        self.candidate_index = 0
        self.candidate_start = step
        self._take_snapshot()

    def _record_probe(self, step: int, loss: float | None) -> None:
        offset = step - self.candidate_start
        self.probe_step_count += 1
        if loss is not None and offset >= self.probe_steps // 2:
            self.candidate_losses[self.candidate_index].append(loss)
        if offset < self.probe_steps - 1:
            return
        if self.candidate_index < len(self.candidates) - 1:
            self._restore_snapshot()
            self.discarded_steps += self.probe_steps
            self.candidate_index += 1
            self.candidate_start = step + 1
            return
        winner = self._choose()
        current = self.candidates[-1]
        if winner != current:
            self._restore_snapshot()
            self.discarded_steps += self.probe_steps
            if winner > current:
                self.raises += 1
            else:
                self.lowers += 1
        self.lr_factor = winner
        self.rounds += 1
        self.candidate_index = -1
        self.snapshot_params = self.snapshot_state = self.snapshot_groups = None

    def _choose(self) -> float:
        """The winning factor: lowest mean scored loss, if significantly below the current one."""
        means = [sum(v) / len(v) if v else math.inf for v in self.candidate_losses]
        self.last_scores = [m if math.isfinite(m) else float("nan") for m in means]
        best = min(range(len(means)), key=lambda i: means[i])
        current = len(self.candidates) - 1
        if not math.isfinite(means[best]) or best == current:
            return self.candidates[current]
        if not math.isfinite(means[current]):
            return self.candidates[best]
        sigma = self._noise_level()
        if sigma is None:  # too few finite losses to tell noise from signal
            return self.candidates[best] if self.significance == 0 else self.candidates[current]
        n_best, n_cur = len(self.candidate_losses[best]), len(self.candidate_losses[current])
        stderr = sigma * math.sqrt(1.0 / n_best + 1.0 / n_cur)
        if means[current] - means[best] > self.significance * stderr:
            return self.candidates[best]
        return self.candidates[current]

    def _noise_level(self) -> float | None:
        """Per-step loss noise: scatter of first differences around each candidate's trend.

        Falls back to the scatter around each candidate's mean (trend included, so larger: more
        conservative) when the differences leave fewer than 3 degrees of freedom.
        """
        squares, dof = 0.0, 0
        for values in self.candidate_losses:
            diffs = [b - a for a, b in zip(values, values[1:])]
            if len(diffs) > 1:
                trend = sum(diffs) / len(diffs)
                squares += sum((d - trend) ** 2 for d in diffs) / 2  # Var(diff) = 2σ²
                dof += len(diffs) - 1
        if dof >= 3:
            return math.sqrt(squares / dof)
        squares, dof = 0.0, 0
        for values in self.candidate_losses:
            if values:
                mean = sum(values) / len(values)
                squares += sum((v - mean) ** 2 for v in values)
                dof += len(values) - 1
        return math.sqrt(squares / dof) if dof else None

    def _take_snapshot(self) -> None:
        self.snapshot_params, self.snapshot_state, self.snapshot_groups = take_snapshot(self.optimizer)

    def _restore_snapshot(self) -> None:
        restore_snapshot(self.optimizer, self.snapshot_params, self.snapshot_state, self.snapshot_groups)

    # -- reporting ------------------------------------------------------------------------------
    def decisions(self) -> dict[str, object]:  # noqa: D102 - see FeedbackScheduler
        return {
            "rounds": self.rounds,
            "raises": self.raises,
            "lowers": self.lowers,
            "tuned_factor": self.lr_factor,
            "tuned_lr": self.lr_factor * self._hint_lr(),
        }

    def quantities(self) -> dict[str, float | None]:
        """LR factor, phase (0 warmup, 1 explore, 2 exploit), probing, decisions."""
        return {
            "lr_factor": float(self.multiplier()),
            "tuned_factor": float(self.lr_factor),
            "phase": _PHASE_CODE[self.phase],
            "probing": 1.0 if self.candidate_index >= 0 else 0.0,
            "smoothed_loss": float(self.loss_ema),
            "rounds": float(self.rounds),
            "raises": float(self.raises),
            "lowers": float(self.lowers),
            "probe_steps": float(self.probe_step_count),
            "discarded_steps": float(self.discarded_steps),
        }

    def decision_horizon(self) -> Horizon | None:
        """One probe round, ``3 × probe_steps`` steps, inside the explore phase."""
        if self.probe == "off":
            return None  # the explore-then-decay schedule by choice
        first = max(self.warmup_steps, 1) + 3 * self.probe_steps
        needs = (f"a probe round takes 3 x probe_steps={self.probe_steps} steps and must end by the end of "
                 f"exploration at step {self.explore_end}")
        return Horizon(first, self.explore_end, needs, "the LR is never tuned (explore at the configured LR, then decay)")

    def summary(self) -> str:
        return (f"{self.name}: LR hint {self._hint_lr():g}; {self.rounds} probing round(s) ({self.raises} up, "
                f"{self.lowers} down), tuned LR {self.lr_factor * self._hint_lr():.3g}")

    def outcome(self) -> str | None:
        return f"×{self.lr_factor:.3g} in {self.rounds} rounds" if self.rounds else None
