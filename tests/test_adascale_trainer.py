"""AdaScale through the integrations: ``lr_scheduler_type="adascale"`` in an unmodified Trainer
(one and two processes, resume) and the documented plain Accelerate loop.

Every step's gain is checked against a hand computation from the per-micro-batch gradients that
a second set of tensor hooks records, so "each step uses its own gain" and "the gain uses all S
samples" are asserted, not assumed.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from accelerate import debug_launcher
from transformers import Trainer, TrainerCallback

import hf_autolr  # noqa: F401 - registers lr_scheduler_type="adascale"
from hf_autolr.schedulers.adascale import AdaScale
from tiny import RegressionData, TinyRegressor, training_args

LR = 0.1


class NoisyRegression(RegressionData):
    """``tiny.RegressionData`` with label noise of std 2, so that the gradient noise overtakes the
    gradient (and the gain climbs toward S) within a few epochs."""

    def __init__(self) -> None:
        super().__init__()
        self.y = self.y + 2.0 * torch.randn(len(self.y), generator=torch.Generator().manual_seed(1))


class AdaScaleRecorder(TrainerCallback):
    """Per optimizer step: the applied LR, the scheduler's gain/τ/S, and each micro-batch's local
    gradient (from hooks of its own, as the Trainer's backward left them: divided by the
    accumulation count)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.names = [name for name, _ in model.named_parameters()]
        self._micro: dict[str, list[torch.Tensor]] = {name: [] for name in self.names}
        for name, param in model.named_parameters():
            param.register_hook(lambda grad, name=name: self._micro[name].append(grad.detach().double().flatten()))
        self.lrs: list[float] = []
        self.gains: list[float] = []
        self.scales: list[int] = []
        self.progress: list[float] = []
        self.samples: list[list[list[float]]] = []

    def on_optimizer_step(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        self.lrs.append(optimizer.param_groups[0]["lr"])
        self.gains.append(lr_scheduler.gain)  # what this step used (set before optimizer.step())
        count = len(self._micro[self.names[0]])
        self.samples.append([torch.cat([self._micro[n][i] for n in self.names]).tolist() for i in range(count)])
        for name in self.names:
            self._micro[name].clear()

    def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
        self.progress.append(lr_scheduler.progress)
        self.scales.append(lr_scheduler.scale)


def hand_gains(steps: list[list[list[float]]], accumulation: int, smoothing: float | None = None) -> list[float]:
    """The gain each step should use, from its samples: σ̂², μ̂² per step (hooks saw g_i / c),
    clipped, then averaged with weight max(1/t, 1 − θ) (θ = 1 − S/1000 by default: a plain mean
    for these short runs)."""
    var_avg = sqr_avg = 0.0
    count, gains = 0, []
    for samples in steps:
        g = torch.tensor(samples, dtype=torch.float64) * accumulation
        s = g.shape[0]
        if s < 2:  # a one-sample step: no estimate, gain 1
            gains.append(1.0)
            continue
        mean = g.mean(0)
        var = float(((g - mean) ** 2).sum() / (s - 1))
        sqr = float(mean.square().sum()) - var / s
        count += 1
        theta = 1 - s / 1000 if smoothing is None else smoothing
        w = max(1 / count, 1 - theta)
        var_avg = (1 - w) * var_avg + w * max(var, 1e-6)
        sqr_avg = (1 - w) * sqr_avg + w * max(sqr, 0.0)
        gains.append(min(max((var_avg + sqr_avg) / (var_avg / s + sqr_avg), 1.0), float(s)))
    return gains


def train(output_dir, resume=None, **overrides):
    torch.manual_seed(0)
    model = TinyRegressor()
    recorder = AdaScaleRecorder(model)
    options = dict(lr_scheduler_type="adascale", learning_rate=LR, logging_steps=1, gradient_accumulation_steps=4)
    options.update(overrides)
    trainer = Trainer(
        model=model, args=training_args(output_dir, **options), train_dataset=NoisyRegression(), callbacks=[recorder]
    )
    trainer.train(resume_from_checkpoint=resume)
    return trainer, recorder


def test_trainer_uses_each_steps_own_gain_and_stops_at_the_scale_invariant_budget(tmp_path):
    # 256 samples / batch 16 = 16 micro-batches per epoch, GA 4 → 4 optimizer steps per epoch.
    trainer, rec = train(tmp_path, num_train_epochs=10, save_strategy="steps", save_steps=10_000,
                         lr_scheduler_kwargs={"smoothing": 0.8})
    scheduler = trainer.lr_scheduler
    assert isinstance(scheduler, AdaScale)
    max_steps = trainer.state.max_steps
    assert max_steps == 40 and scheduler.num_training_steps == max_steps  # T_SI = max_steps

    steps = trainer.state.global_step
    assert rec.scales == [4] * steps
    # Each step's LR is LR × the gain of *its own* samples (constant base schedule, no lag).
    expected = hand_gains(rec.samples, accumulation=4, smoothing=0.8)
    assert rec.gains == pytest.approx(expected, rel=1e-6)
    assert rec.lrs == pytest.approx([LR * g for g in expected], rel=1e-6)
    assert all(1.0 <= g <= 4.0 for g in rec.gains) and max(rec.gains) > 1.5  # the gain climbed

    # τ advanced by each step's gain; training stopped at the first step with τ ≥ T_SI, before
    # max_steps (the gain exceeded 1) but after more than T_SI / S steps (it stayed below S).
    assert rec.progress == pytest.approx(torch.tensor(rec.gains, dtype=torch.float64).cumsum(0).tolist())
    assert rec.progress[-1] >= max_steps > rec.progress[-2]
    assert max_steps / 4 < steps < max_steps
    assert scheduler.finished

    logged = [entry for entry in trainer.state.log_history if "adascale/gain" in entry]
    assert len(logged) == steps
    assert all(1.0 <= entry["adascale/gain"] <= 4.0 for entry in logged)
    assert [entry["learning_rate"] for entry in logged] == pytest.approx(rec.lrs)
    # The early stop still writes the final checkpoint, as reaching max_steps would.
    assert (tmp_path / f"checkpoint-{steps}" / "scheduler.pt").exists()


def test_short_last_step_of_an_epoch_has_gain_one(tmp_path):
    # 16 micro-batches per epoch with GA 3: five steps of 3 samples, then one of a single sample.
    trainer, rec = train(tmp_path, num_train_epochs=2, gradient_accumulation_steps=3)
    assert [len(s) for s in rec.samples[:6]] == [3, 3, 3, 3, 3, 1]
    assert rec.gains[5] == 1.0
    assert rec.gains == pytest.approx(hand_gains(rec.samples, accumulation=3), rel=1e-6)
    assert rec.lrs == pytest.approx([LR * g for g in rec.gains], rel=1e-6)


def test_trainer_resume_gives_the_same_lr_sequence(tmp_path):
    full, full_rec = train(tmp_path / "run", max_steps=30, gradient_accumulation_steps=2,
                           save_strategy="steps", save_steps=6)
    steps = full.state.global_step
    assert 6 < steps < 30  # stopped by the scale-invariant budget, after the checkpoint
    path = tmp_path / "run" / "checkpoint-6"
    state = torch.load(path / "scheduler.pt", weights_only=True)
    assert state["last_epoch"] == 6 and "_tracker" not in state
    assert state["progress"] == pytest.approx(full_rec.progress[5])
    resumed, resumed_rec = train(tmp_path / "run", resume=str(path), max_steps=30, gradient_accumulation_steps=2,
                                 save_strategy="steps", save_steps=6)
    assert resumed_rec.lrs == full_rec.lrs[6:]
    assert resumed_rec.progress == full_rec.progress[6:]
    assert resumed.state.global_step == steps


# -- two processes --------------------------------------------------------------------------------


def _train_on_each_rank(out_dir: str) -> None:
    import torch.distributed as dist

    torch.manual_seed(0)
    model = TinyRegressor()
    recorder = AdaScaleRecorder(model)
    args = training_args(
        out_dir, lr_scheduler_type="adascale", learning_rate=LR, max_steps=10, per_device_train_batch_size=8,
        gradient_accumulation_steps=2, ddp_find_unused_parameters=False,
    )
    # Each rank sees different data: only the all-reduce of the statistics makes the gains agree.
    trainer = Trainer(model=model, args=args, train_dataset=NoisyRegression(), callbacks=[recorder])
    trainer.train()
    result = {
        "world_size": dist.get_world_size() if dist.is_initialized() else 1,
        "lrs": recorder.lrs,
        "gains": recorder.gains,
        "scales": recorder.scales,
        "samples": recorder.samples,
        "steps": trainer.state.global_step,
    }
    with open(os.path.join(out_dir, f"rank{trainer.args.process_index}.json"), "w") as f:
        json.dump(result, f)


def test_two_processes_share_one_gain_from_all_four_samples(tmp_path):
    debug_launcher(_train_on_each_rank, args=(str(tmp_path),), num_processes=2)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["steps"] == ranks[1]["steps"] == len(ranks[0]["lrs"]) > 0
    assert ranks[0]["lrs"] == ranks[1]["lrs"]  # identical LR on both ranks at every step
    assert ranks[0]["scales"] == [4] * ranks[0]["steps"]  # 2 processes × 2 micro-batches
    # The gain is that of the 4 local micro-batch gradients (2 per rank), not of one rank's 2.
    combined = [a + b for a, b in zip(ranks[0]["samples"], ranks[1]["samples"], strict=True)]
    expected = hand_gains(combined, accumulation=2)
    assert ranks[0]["gains"] == pytest.approx(expected, rel=1e-6)
    assert ranks[0]["lrs"] == pytest.approx([LR * g for g in expected], rel=1e-6)
    assert hand_gains(ranks[0]["samples"], accumulation=2) != pytest.approx(expected, rel=1e-3)
    assert len({round(g, 6) for g in expected}) > 1


# -- plain Accelerate loop ------------------------------------------------------------------------


def test_accelerate_loop_recipe(tmp_path):
    """The README's raw-loop recipe: the helper attaches, runs the pre-step hook on sync steps, stops on finished."""
    from accelerate import Accelerator

    from hf_autolr.integrations import AcceleratorFeedback

    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=4)
    model = TinyRegressor()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loader = torch.utils.data.DataLoader(NoisyRegression(), batch_size=16, shuffle=True)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    scheduler = hf_autolr.build_scheduler("adascale", optimizer, num_warmup_steps=0, num_training_steps=40)
    accelerator.register_for_checkpointing(scheduler)  # not prepared: see AcceleratorFeedback
    feed = AcceleratorFeedback(accelerator, scheduler, model)
    lrs, gains = [], []
    for _ in range(10):  # at most max_steps / steps per epoch = 10 epochs
        for batch in loader:
            with accelerator.accumulate(model):
                loss = model(**batch)["loss"]
                accelerator.backward(loss)
                feed.before_optimizer_step(loss)  # on the sync micro-batch: this step's own gain
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                    lrs.append(optimizer.param_groups[0]["lr"])
                    gains.append(scheduler.gain)
                optimizer.step()
                feed.step()
                optimizer.zero_grad()
            if feed.finished:
                break
        if feed.finished:
            break
    assert scheduler.finished and scheduler.scale == 4
    assert scheduler.last_epoch == len(lrs) < 40
    assert lrs == pytest.approx([LR * g for g in gains])
    assert scheduler.progress == pytest.approx(sum(gains)) and max(gains) > 1.5
    assert gains[0] > 1.0  # the first step already used its own gain (r₀ = 1 only with the lag)
    with pytest.raises(RuntimeError, match="before_optimizer_step"):  # the one-call form cannot serve AdaScale
        feed(loss)


def test_trainer_with_adamw_uses_the_square_root_rule(tmp_path):
    # Trainer's default optimizer (AdamW, wrapped in AcceleratedOptimizer): rule "auto" → "adam".
    trainer, rec = train(tmp_path, optim="adamw_torch", learning_rate=1e-2, max_steps=8, gradient_accumulation_steps=2)
    assert trainer.lr_scheduler.rule == "adam"
    assert rec.lrs == pytest.approx([1e-2 * g**0.5 for g in rec.gains])
    logged = [entry for entry in trainer.state.log_history if "adascale/gain" in entry]
    assert logged and all(e["adascale/lr_factor"] == pytest.approx(e["adascale/gain"] ** 0.5) for e in logged)


def test_one_sample_per_step_is_refused_with_the_remedy(tmp_path):
    with pytest.raises(RuntimeError, match="gradient_accumulation_steps >= 2 or train on more processes"):
        train(tmp_path, max_steps=4, gradient_accumulation_steps=1)
