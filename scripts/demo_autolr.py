"""Offline demo: an unmodified ``Trainer`` with ``lr_scheduler_type="autolr_gp"`` on digits.

A small MLP on scikit-learn's bundled digits (no download). The optimizer's learning rate is
only a hint; the scheduler finds the warmup peak itself, prints what it decided and saves
``lr_schedule.png``.

    python scripts/demo_autolr.py [--learning_rate 5e-5] [--output_dir outputs/demo]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from transformers import Trainer, TrainingArguments  # noqa: E402

import hf_autolr  # noqa: E402,F401 - registers lr_scheduler_type="autolr_gp"
from hf_autolr.integrations import AutoLRCallback  # noqa: E402
from hf_autolr.plotting import plot_schedule  # noqa: E402


class DigitsMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, pixel_values, labels=None):
        logits = self.net(pixel_values)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


def digits_split(seed: int = 0):
    from sklearn.datasets import load_digits  # noqa: PLC0415

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    train, test = order[:1400], order[1400:]
    as_rows = lambda idx: [{"pixel_values": x[i], "labels": y[i]} for i in idx.tolist()]  # noqa: E731
    return as_rows(train), as_rows(test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learning_rate", type=float, default=5e-5, help="LR hint (transformers' default)")
    parser.add_argument("--num_train_epochs", type=float, default=30)
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--lr_scheduler_kwargs", default="{}", help="JSON options for autolr_gp")
    cli = parser.parse_args()

    torch.manual_seed(0)
    train, test = digits_split()
    args = TrainingArguments(
        output_dir=cli.output_dir,
        lr_scheduler_type="autolr_gp",
        lr_scheduler_kwargs=cli.lr_scheduler_kwargs,
        learning_rate=cli.learning_rate,
        num_train_epochs=cli.num_train_epochs,
        per_device_train_batch_size=32,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=100,
        seed=0,
    )
    trainer = Trainer(model=DigitsMLP(), args=args, train_dataset=train)
    trainer.train()

    scheduler = trainer.lr_scheduler
    callback = next(c for c in trainer.callback_handler.callbacks if isinstance(c, AutoLRCallback))
    model = trainer.model.eval()
    with torch.no_grad():
        x = torch.stack([row["pixel_values"] for row in test])
        y = torch.stack([row["labels"] for row in test])
        accuracy = (model(x)["logits"].argmax(-1) == y).float().mean().item()
    hint = cli.learning_rate
    print(f"\nautolr_gp, LR hint {hint:g}: warmup over [{scheduler.min_lr_ratio * hint:.2g}, {scheduler.max_lr_ratio * hint:.2g}]")
    print(f"  switched at step {scheduler.switch_step} of {scheduler.total_steps} ({scheduler.switch_reason}),")
    print(f"  peak LR {max(callback.history['lr']):.3g}, backed off to LR {scheduler.switch_factor * hint:.3g}, final LR {callback.history['lr'][-1]:.2g}")
    print(f"  test accuracy {accuracy:.4f}")
    path = plot_schedule(callback.history, scheduler, os.path.join(cli.output_dir, "lr_schedule.png"))
    print(f"  plot: {path}")


if __name__ == "__main__":
    main()
