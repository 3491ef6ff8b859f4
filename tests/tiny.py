"""Tiny models and data for Trainer and loop tests (no downloads)."""

from __future__ import annotations

import torch
from torch import nn


class TinyRegressor(nn.Module):
    """Linear regression that returns ``{"loss", "logits"}`` like a transformers model."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = self.linear(x).squeeze(-1)
        result = {"logits": out}
        if labels is not None:
            result["loss"] = nn.functional.mse_loss(out, labels)
        return result


class RegressionData(torch.utils.data.Dataset):
    """``y = w·x + noise`` with a fixed seed; unit-scale features so SGD diverges above lr≈0.5."""

    def __init__(self, n: int = 256, dim: int = 8, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, dim, generator=g)
        w = torch.randn(dim, generator=g)
        self.y = self.x @ w + 0.1 * torch.randn(n, generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


def training_args(output_dir, **overrides):
    """``TrainingArguments`` for a fast, quiet CPU run; ``overrides`` win."""
    from transformers import TrainingArguments

    defaults = dict(
        output_dir=str(output_dir),
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        per_device_train_batch_size=16,
        num_train_epochs=8,
        learning_rate=0.1,  # autolr_gp's hint: the warmup explores [0.01, 1.0]; SGD diverges above ~0.35
        optim="sgd",
        lr_scheduler_type="autolr_gp",
        seed=0,
        dataloader_num_workers=0,
    )
    defaults.update(overrides)
    return TrainingArguments(**defaults)


class LRRecorder:
    """A TrainerCallback that records the LR applied at every optimizer step."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Recorder(TrainerCallback):
            def __init__(self):
                self.lrs: list[float] = []

            def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
                self.lrs.append(optimizer.param_groups[0]["lr"])

        return _Recorder()
