"""Two CPU processes (gloo): every rank takes the same decision at the same step."""

from __future__ import annotations

import json
import os

import pytest
import torch
from accelerate import debug_launcher


def _train_on_each_rank(out_dir: str) -> None:
    import torch.distributed as dist
    from transformers import Trainer

    import hf_autolr  # noqa: F401 - registers the names in this process too
    from tiny import LRRecorder, RegressionData, TinyRegressor, training_args

    torch.manual_seed(0)
    recorder = LRRecorder()
    args = training_args(
        out_dir, num_train_epochs=12, per_device_train_batch_size=8, gradient_accumulation_steps=2,
        ddp_find_unused_parameters=False,
    )
    # Each rank sees different data, so local losses differ: only the reduction makes LRs agree.
    trainer = Trainer(model=TinyRegressor(), args=args, train_dataset=RegressionData(seed=0), callbacks=[recorder])
    trainer.train()
    scheduler = trainer.lr_scheduler
    result = {
        "world_size": dist.get_world_size() if dist.is_initialized() else 1,
        "backend": dist.get_backend() if dist.is_initialized() else None,
        "lrs": recorder.lrs,
        "observed": scheduler.num_observed,
        "steps": trainer.state.global_step,
        "switch_step": scheduler.switch_step,
        "switch_reason": scheduler.switch_reason,
    }
    with open(os.path.join(out_dir, f"rank{trainer.args.process_index}.json"), "w") as f:
        json.dump(result, f)


def test_two_processes_take_identical_lr_at_every_step(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # else each rank takes every core: 4x slower here
    debug_launcher(_train_on_each_rank, args=(str(tmp_path),), num_processes=2)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["backend"] == "gloo"
    assert ranks[0]["observed"] == ranks[0]["steps"] > 0
    assert ranks[0]["lrs"] == ranks[1]["lrs"]
    assert ranks[0]["switch_step"] == ranks[1]["switch_step"]
    assert ranks[0]["switch_reason"] != ""
    assert len(ranks[0]["lrs"]) == ranks[0]["steps"]
