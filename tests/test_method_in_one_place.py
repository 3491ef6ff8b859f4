"""A method is added in one place: a toy scheduler, registered once, shows up in the Trainer's logs,
the model card, the plot and the benchmark without any other edit."""

from __future__ import annotations

import json
import re

import pytest
import torch
from transformers import Trainer

import hf_autolr
from hf_autolr.registry import METHODS, register_method
from hf_autolr.schedulers.base import FeedbackScheduler
from hf_autolr import vision
from tiny import training_args

NAME = "toy_halving"


class ToyHalving(FeedbackScheduler):
    """Halves the LR once the loss has fallen below half its first value."""

    name = NAME
    description = "halves the LR once the loss has halved (a test method)."

    def __init__(self, optimizer: torch.optim.Optimizer, *, ratio: float = 0.5, last_epoch: int = -1) -> None:
        self.ratio, self.first_loss, self.halved_at, self.marks_asked = float(ratio), None, -1, 0
        super().__init__(optimizer, last_epoch)

    def update(self, loss: float | None) -> None:
        if loss is None:
            return
        self.first_loss = loss if self.first_loss is None else self.first_loss
        if self.halved_at < 0 and loss < self.ratio * self.first_loss:
            self.halved_at = self.last_epoch

    def multiplier(self) -> float:
        return 1.0 if self.halved_at < 0 else 0.5

    def quantities(self) -> dict[str, float | None]:
        return {"factor": self.multiplier(), "halved_at": float(self.halved_at) if self.halved_at >= 0 else None}

    def summary(self) -> str:
        return f"{NAME}: halved the LR at step {self.halved_at}"

    def outcome(self) -> str | None:
        return f"halved@{self.halved_at}" if self.halved_at >= 0 else "kept"

    def plot_marks(self) -> dict:
        self.marks_asked += 1
        return {"events": [(self.halved_at, "halved")]} if self.halved_at >= 0 else {}


@pytest.fixture
def toy_method():
    register_method(NAME, ToyHalving)
    yield NAME
    METHODS.pop(NAME, None)


def test_toy_method_in_trainer_logs_card_and_plot(tmp_path, toy_method):
    train, _ = vision.digits_datasets(image_size=16, seed=0)
    torch.manual_seed(0)
    model = vision.build_model(None, "resnet", [str(i) for i in range(10)], 1, 16)  # an HF model: it has a card
    args = training_args(tmp_path, lr_scheduler_type=toy_method, learning_rate=3e-3, optim="adamw_torch",
                         max_steps=40, logging_steps=5, per_device_train_batch_size=32)
    trainer = Trainer(model=model, args=args, train_dataset=train.select(range(512)))
    trainer.train()
    scheduler = trainer.lr_scheduler
    assert isinstance(scheduler, ToyHalving) and scheduler.halved_at > 0
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logged and all(f"{NAME}/factor" in entry and f"{NAME}/nonfinite_losses" in entry for entry in logged)
    trainer.create_model_card()
    card = (tmp_path / "README.md").read_text()
    assert ToyHalving.description in card and scheduler.summary() in card and NAME in card
    assert (tmp_path / "lr_schedule.png").stat().st_size > 0 and scheduler.marks_asked >= 1


def test_toy_method_in_the_benchmark(tmp_path, toy_method):
    from hf_autolr.bench.cli import main

    assert hf_autolr.build_scheduler(NAME, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)).name == NAME
    main(["--quick", "--jobs", "1", "--out", str(tmp_path), "--no-progress", "--no-overhead",
          "--workloads", "digits_mlp", "--methods", f"tuned_linear,{toy_method}"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    row = summary["digits_mlp"]["rows"][toy_method]
    assert row["metric"] > 0 and re.fullmatch(r"kept|halved@\d+", row["decided"])
    assert f"| {toy_method} |" in (tmp_path / "table.md").read_text()
