"""autolr_gp inside an unmodified transformers Trainer, the mixin, and the callback fallback."""

from __future__ import annotations

import pytest
import torch
from transformers import Trainer, TrainerCallback

import hf_autolr
from hf_autolr.integrations import AutoLRCallback, AutoLRTrainer
from tiny import LRRecorder, RegressionData, TinyRegressor, training_args


class StepLossRecorder(TrainerCallback):
    """Counts optimizer steps and the observations the scheduler had received at each."""

    def __init__(self):
        self.observed_at_step: list[int] = []

    def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
        self.observed_at_step.append(lr_scheduler.num_observed)


def train(tmp_path, trainer_cls=Trainer, callbacks=(), **overrides):
    torch.manual_seed(0)
    recorder, counter = LRRecorder(), StepLossRecorder()
    trainer = trainer_cls(
        model=TinyRegressor(),
        args=training_args(tmp_path, **overrides),
        train_dataset=RegressionData(),
        callbacks=[recorder, counter, *callbacks],
    )
    trainer.train()
    return trainer, recorder.lrs, counter.observed_at_step


def test_unmodified_trainer_feeds_one_loss_per_optimizer_step_and_switches(tmp_path):
    # logging_steps left at its default (500): the loss must reach the scheduler anyway.
    trainer, lrs, observed = train(tmp_path, num_train_epochs=16)
    scheduler = trainer.lr_scheduler
    assert trainer.args.logging_steps == 500
    assert isinstance(scheduler, hf_autolr.FeedbackScheduler)
    assert observed == list(range(1, trainer.state.global_step + 1))
    assert scheduler.switch_reason == "gp_minimum"
    switch = scheduler.switch_step
    assert all(b > a for a, b in zip(lrs[:switch], lrs[1:switch]))  # rose during warmup
    assert lrs[switch] < lrs[switch - 1]  # backed off
    assert lrs[-1] < 1e-3 * max(lrs)  # ended at ~0
    assert trainer.lr_scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)


def test_observed_loss_is_the_step_mean_over_accumulation(tmp_path):
    """With logging every step, each observation equals the loss the Trainer logs for that step."""
    seen = []

    class Spy(TrainerCallback):
        def on_optimizer_step(self, args, state, control, lr_scheduler=None, **kwargs):
            seen.append(lr_scheduler._pending_loss)

    trainer, _, _ = train(
        tmp_path, callbacks=[Spy()], num_train_epochs=1, gradient_accumulation_steps=2, logging_steps=1
    )
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == len(seen) == trainer.state.global_step == 8
    assert seen == pytest.approx(logged, rel=1e-4)


def test_diagnostics_reach_the_trainer_logs(tmp_path):
    trainer, _, _ = train(tmp_path, num_train_epochs=2, logging_steps=4)
    entries = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert entries and all("autolr_gp/phase" in entry and "autolr_gp/smoothed_loss" in entry for entry in entries)


def test_mixin_with_custom_compute_loss(tmp_path):
    class L1Trainer(AutoLRTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = model(inputs["x"])
            loss = (out["logits"] - inputs["labels"]).abs().mean()
            return (loss, out) if return_outputs else loss

    trainer, _, observed = train(tmp_path, trainer_cls=L1Trainer, num_train_epochs=2)
    assert observed == list(range(1, trainer.state.global_step + 1))
    callbacks = [c for c in trainer.callback_handler.callbacks if isinstance(c, AutoLRCallback)]
    assert len(callbacks) == 1


def test_explicit_callback_is_reused_not_duplicated(tmp_path):
    mine = AutoLRCallback()
    trainer, _, observed = train(tmp_path, callbacks=[mine], num_train_epochs=1)
    assert mine.trainer is trainer
    assert sum(isinstance(c, AutoLRCallback) for c in trainer.callback_handler.callbacks) == 1
    assert observed[-1] == trainer.state.global_step


def test_forward_hook_fallback_without_a_trainer(tmp_path):
    """A callback that never learns its trainer still feeds losses, from the model's output."""
    model = TinyRegressor()
    callback = AutoLRCallback()
    args = training_args(tmp_path, num_train_epochs=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.learning_rate)
    scheduler = hf_autolr.build_scheduler("autolr_gp", optimizer, 0, 16)
    callback.on_train_begin(args, None, None, model=model)
    for batch in torch.utils.data.DataLoader(RegressionData(), batch_size=16):
        model(**batch)["loss"].backward()
        callback.on_pre_optimizer_step(args, None, None, lr_scheduler=scheduler)
        optimizer.step()
        scheduler.step()
    assert scheduler.num_observed == 16 and scheduler.num_nonfinite == 0


def test_warns_loudly_when_the_model_returns_no_loss(tmp_path):
    class NoLoss(TinyRegressor):
        def forward(self, x, labels=None):
            return {"logits": self.linear(x).squeeze(-1)}

    class External(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = model(inputs["x"])
            return ((out["logits"] - inputs["labels"]) ** 2).mean() * float("nan")

    with pytest.warns(RuntimeWarning, match="no finite training loss"):
        torch.manual_seed(0)
        External(model=NoLoss(), args=training_args(tmp_path, num_train_epochs=1), train_dataset=RegressionData()).train()


def test_registration_is_idempotent_and_usable_everywhere(tmp_path):
    from transformers import HfArgumentParser, TrainingArguments, get_scheduler
    from transformers.trainer_utils import SchedulerType

    before = len(SchedulerType._member_names_)
    assert hf_autolr.register() == hf_autolr.available_methods()
    assert len(SchedulerType._member_names_) == before
    args = TrainingArguments(output_dir=str(tmp_path), lr_scheduler_type="autolr_gp", lr_scheduler_kwargs='{"patience": 2}')
    assert args.to_dict()["lr_scheduler_type"] == "autolr_gp"
    assert args.lr_scheduler_kwargs == {"patience": 2}
    (parsed,) = HfArgumentParser(TrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--lr_scheduler_type", "autolr_gp", "--lr_scheduler_kwargs", '{"n_draws": 3}']
    )
    assert parsed.lr_scheduler_type == "autolr_gp" and parsed.lr_scheduler_kwargs == {"n_draws": 3}
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
    scheduler = get_scheduler(
        "autolr_gp", optimizer, num_warmup_steps=0, num_training_steps=50, scheduler_specific_kwargs={"patience": 2}
    )
    assert scheduler.patience == 2 and scheduler.get_last_lr() == [pytest.approx(1e-4)]
    with pytest.raises(ValueError, match="unknown option"):
        get_scheduler("autolr_gp", optimizer, num_warmup_steps=0, num_training_steps=50, scheduler_specific_kwargs={"x": 1})
    with pytest.raises(ValueError, match="autolr_gp"):  # the valid names are listed
        TrainingArguments(output_dir=str(tmp_path), lr_scheduler_type="autolr_gq")
