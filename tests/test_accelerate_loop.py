"""The documented plain Accelerate loop: the scheduler is not prepared and steps once per sync."""

from __future__ import annotations

import torch
from accelerate import Accelerator

import hf_autolr
from hf_autolr.integrations import AcceleratorFeedback
from tiny import RegressionData, TinyRegressor


def test_accelerate_loop_observes_once_per_optimizer_step_with_accumulation(tmp_path):
    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    assert accelerator.num_processes == 1
    model = TinyRegressor()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = torch.utils.data.DataLoader(RegressionData(), batch_size=8)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    epochs, micro_batches = 6, len(loader)
    scheduler = hf_autolr.build_scheduler("autolr_gp", optimizer, 0, epochs * micro_batches // 2)
    accelerator.register_for_checkpointing(scheduler)
    feed = AcceleratorFeedback(accelerator, scheduler)
    stepped, micro_losses, observed = 0, [], []
    observe = scheduler.observe
    scheduler.observe = lambda loss: (observed.append(float(loss)), observe(loss))
    for _ in range(epochs):
        for batch in loader:
            with accelerator.accumulate(model):
                loss = model(**batch)["loss"]
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
                micro_losses.append(loss.item())
                pending = len(micro_losses)
                if feed(loss):
                    stepped += 1
                    assert pending % 2 == 0
    assert stepped == scheduler.last_epoch == epochs * micro_batches // 2
    assert scheduler.num_observed == stepped
    # Each observation is the mean of its two micro-batch losses.
    pairs = [sum(micro_losses[2 * i : 2 * i + 2]) / 2 for i in range(stepped)]
    assert len(observed) == stepped
    assert all(abs(a - b) <= 1e-5 * max(1.0, abs(b)) for a, b in zip(observed, pairs))
    del scheduler.observe  # the spy is not scheduler state
    accelerator.save_state(str(tmp_path / "state"))
    assert any(p.name.startswith("custom_checkpoint") for p in (tmp_path / "state").iterdir())
