"""Every method in every loop: Trainer, Accelerate and plain PyTorch, each through the one driver,
with gradient accumulation (AdaScale's gradient samples). The plain and Accelerate loops see the
same batches in the same order, so they must take exactly the same LR decisions."""

from __future__ import annotations

import math

import pytest
import torch
from accelerate import Accelerator
from transformers import Trainer

import hf_autolr
from hf_autolr.integrations import AcceleratorFeedback, AutoLRCallback
from hf_autolr.integrations.driver import FeedbackDriver
from tiny import RegressionData, TinyRegressor, training_args

STEPS, ACCUMULATION, BATCH, LR = 24, 2, 8, 0.05
METHODS = hf_autolr.available_methods()


def setup(method: str):
    torch.manual_seed(0)
    model = TinyRegressor()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loader = torch.utils.data.DataLoader(RegressionData(STEPS * ACCUMULATION * BATCH), batch_size=BATCH)
    return model, optimizer, loader


def spy_on_observe(scheduler) -> list[float]:
    observed: list[float] = []
    observe = scheduler.observe
    scheduler.observe = lambda loss: (observed.append(float(loss)), observe(loss))
    return observed


def plain_loop(method: str, tmp_path):
    model, optimizer, loader = setup(method)
    scheduler = hf_autolr.build_scheduler(method, optimizer, num_training_steps=STEPS)
    observed, micro, lrs = spy_on_observe(scheduler), [], []
    driver = FeedbackDriver(scheduler).attach(model)
    batches = iter(loader)
    for _ in range(STEPS):
        for _ in range(ACCUMULATION):
            loss = model(**next(batches))["loss"]
            (loss / ACCUMULATION).backward()
            driver.add_loss(loss)
            micro.append(loss.item())
        driver.before_optimizer_step()
        lrs.append(optimizer.param_groups[0]["lr"])  # after the pre-step hook: AdaScale's gain of this step
        optimizer.step()
        optimizer.zero_grad()
        driver.step()
    return scheduler, lrs, observed, micro


def accelerate_loop(method: str, tmp_path):
    model, optimizer, loader = setup(method)
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=ACCUMULATION)
    assert accelerator.num_processes == 1
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    scheduler = hf_autolr.build_scheduler(method, optimizer, num_training_steps=STEPS)
    observed, micro, lrs = spy_on_observe(scheduler), [], []
    feed = AcceleratorFeedback(accelerator, scheduler, model)
    for batch in loader:
        with accelerator.accumulate(model):
            loss = model(**batch)["loss"]
            accelerator.backward(loss)
            feed.before_optimizer_step(loss)
            micro.append(loss.item())
            if accelerator.sync_gradients:
                lrs.append(optimizer.param_groups[0]["lr"])  # after the pre-step hook, as above
            optimizer.step()
            feed.step()
            optimizer.zero_grad()
    return scheduler, lrs, observed, micro


def trainer_loop(method: str, tmp_path):
    model, _, loader = setup(method)
    args = training_args(tmp_path, lr_scheduler_type=method, learning_rate=LR, max_steps=STEPS,
                         per_device_train_batch_size=BATCH, gradient_accumulation_steps=ACCUMULATION)
    trainer = Trainer(model=model, args=args, train_dataset=loader.dataset)
    trainer.train()
    (callback,) = [c for c in trainer.callback_handler.callbacks if isinstance(c, AutoLRCallback)]
    return trainer.lr_scheduler, None, callback.history["loss"], None


LOOPS = {"plain": plain_loop, "accelerate": accelerate_loop, "trainer": trainer_loop}


@pytest.mark.filterwarnings("ignore:autolr_gp. a warmup of at most")  # 24 steps: too short for a GP test
@pytest.mark.parametrize("loop", list(LOOPS))
@pytest.mark.parametrize("method", METHODS)
def test_every_method_in_every_loop(method, loop, tmp_path):
    scheduler, _, observed, micro = LOOPS[loop](method, tmp_path)
    steps = scheduler.last_epoch  # one scheduler step per optimizer step...
    # the Trainer stops early when AdaScale's scale-invariant budget is spent (gain > 1)
    assert type(scheduler).name == method and (steps == STEPS or (loop == "trainer" and scheduler.finished))
    if scheduler.needs_loss:  # ...and one observation each
        assert len(observed) == scheduler.num_observed == steps
        assert all(math.isfinite(v) for v in observed)
        if micro is not None:  # the observation is the mean of the step's micro-batch losses
            means = [sum(micro[i : i + ACCUMULATION]) / ACCUMULATION for i in range(0, len(micro), ACCUMULATION)]
            assert observed == pytest.approx(means, rel=1e-5)
    if scheduler.needs_gradient_samples:
        assert scheduler.scale == ACCUMULATION  # one gradient sample per accumulated micro-batch
    diagnostics = scheduler.diagnostics()
    assert diagnostics and all(k.startswith(f"{method}/") and math.isfinite(v) for k, v in diagnostics.items())


@pytest.mark.parametrize("method", METHODS)
def test_plain_and_accelerate_loops_decide_alike(method, tmp_path):
    _, plain, _, _ = plain_loop(method, tmp_path)
    _, accelerated, _, _ = accelerate_loop(method, tmp_path)
    assert len(plain) == STEPS and accelerated == pytest.approx(plain, rel=1e-6)
