"""Degenerate run lengths: every method trains for max_steps 1, 2 and runs shorter than its first
decision, through an unmodified Trainer, and warns exactly once when it cannot adapt in that length."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from tiny import RegressionData, TinyRegressor, training_args
from transformers import Trainer

import hf_autolr
from hf_autolr.schedulers.base import too_short_message

CANNOT_ADAPT = r"cannot adapt the learning rate|too short for a test"


def train(tmp_path, method, max_steps, **options):
    extra = {"gradient_accumulation_steps": 2} if method == "adascale" else {}  # AdaScale needs S >= 2
    args = training_args(tmp_path, lr_scheduler_type=method, max_steps=max_steps, lr_scheduler_kwargs=options, **extra)
    torch.manual_seed(0)
    trainer = Trainer(model=TinyRegressor(), args=args, train_dataset=RegressionData(64))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    return trainer, [m for m in said if re.search(CANNOT_ADAPT, m)]


@pytest.mark.parametrize("max_steps", [1, 2])
@pytest.mark.parametrize("method", ["autolr_gp", "adascale", "lrtuner", "autodrop"])
def test_one_and_two_step_runs_train_and_warn_once_when_the_method_cannot_adapt(tmp_path, method, max_steps):
    trainer, warned = train(tmp_path, method, max_steps)
    assert 1 <= trainer.state.global_step <= max_steps  # AdaScale may end once its S=1 budget is spent
    assert torch.isfinite(torch.tensor(trainer.state.log_history[-1]["train_loss"]))
    if method == "adascale":  # its gain is measured from the first step's own gradients
        assert warned == []
    else:
        assert len(warned) == 1, warned


@pytest.mark.parametrize("method, options, max_steps", [
    ("autolr_gp", {"test_interval": 50}, 40),         # the warmup (cap 20) is shorter than one test interval
    ("lrtuner", {"probe_steps": 10}, 40),             # a probe round (30 steps) does not fit in 20 explore steps
    ("autodrop", {"window": 4}, 40),                  # the first drop test comes at step 4 x 13 = 52
])
def test_runs_shorter_than_the_first_decision_warn_once(tmp_path, method, options, max_steps):
    trainer, warned = train(tmp_path, method, max_steps, **options)
    assert trainer.state.global_step == max_steps
    (message,) = warned
    assert f"in a run of {max_steps} steps" in message


@pytest.mark.parametrize("method, options, max_steps", [
    ("autolr_gp", {"test_interval": 2, "min_observations": 4}, 40),
    ("lrtuner", {"probe_steps": 4}, 40),
    ("autodrop", {"window": 1, "smoothing_width": 2}, 40),
])
def test_long_enough_runs_do_not_warn(tmp_path, method, options, max_steps):
    _, warned = train(tmp_path, method, max_steps, **options)
    assert warned == []


def _raw_run(name, steps, **options):
    param = torch.nn.Parameter(torch.randn(4, generator=torch.Generator().manual_seed(0)))
    optimizer = torch.optim.SGD([param], lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = hf_autolr.build_scheduler(name, optimizer, 0, steps, **options)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = (param**2).sum()
        loss.backward()
        optimizer.step()
        scheduler.observe(loss.item())
        scheduler.step()
    return scheduler


def test_the_warning_is_exact_at_the_boundary():
    """lrtuner with probe_steps 4 explores to round(T/2): a round (12 steps from step 1) fits at T=26, not T=24."""
    short, enough = _raw_run("lrtuner", 24, probe_steps=4), _raw_run("lrtuner", 26, probe_steps=4)
    assert short.rounds == 0 and too_short_message(short, 24) is not None
    assert enough.rounds == 1 and too_short_message(enough, 26) is None


def test_build_scheduler_itself_warns_so_plain_and_accelerate_loops_hear_it_too():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    with pytest.warns(RuntimeWarning, match="autodrop cannot adapt the learning rate in a run of 50 steps"):
        hf_autolr.build_scheduler("autodrop", optimizer, num_training_steps=50)
