"""Trainer checkpoint/resume: same LR sequence, and scheduler.pt loads with weights_only=True."""

from __future__ import annotations

import pytest
import torch
from transformers import Trainer

import hf_autolr  # noqa: F401 - registers lr_scheduler_type="autolr_gp"

from tiny import LRRecorder, RegressionData, TinyRegressor, training_args


def run(tmp_path, name, resume=None, **overrides):
    torch.manual_seed(0)
    recorder = LRRecorder()
    args = training_args(tmp_path / name, num_train_epochs=16, save_strategy="steps", save_steps=40, **overrides)
    trainer = Trainer(model=TinyRegressor(), args=args, train_dataset=RegressionData(), callbacks=[recorder])
    trainer.train(resume_from_checkpoint=resume)
    return trainer, recorder.lrs


@pytest.mark.parametrize("checkpoint", [40, 160], ids=["mid-warmup", "after-switch"])
def test_resume_reproduces_the_uninterrupted_lr_sequence(tmp_path, checkpoint):
    full, full_lrs = run(tmp_path, "full")
    assert full.lr_scheduler.switch_reason == "gp_minimum" and 40 < full.lr_scheduler.switch_step < 160
    path = tmp_path / "full" / f"checkpoint-{checkpoint}"
    state = torch.load(path / "scheduler.pt", weights_only=True)
    assert state["last_epoch"] == checkpoint
    resumed, resumed_lrs = run(tmp_path, "full", resume=str(path))
    assert resumed_lrs == full_lrs[checkpoint:]
    assert resumed.lr_scheduler.switch_step == full.lr_scheduler.switch_step
