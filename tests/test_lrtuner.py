"""LRTuner (reconstruction): probe rounds with restore, known-answer tuning, budget, resume, NaN."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from hf_autolr.registry import build_scheduler
from hf_autolr.schedulers.lrtuner import LRTuner

DIM, STEPS = 200, 600
CURVATURE = torch.linspace(0.2, 1.0, DIM)


def _optimizer(name, params, lr):
    if name == "sgd_momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    return torch.optim.Adam(params, lr=lr)


def _quadratic_run(opt_name, lr, steps=STEPS, tuner_options=None, seed=0, corrupt=None, checkpoints=()):
    """Noisy quadratic 0.5·Σh x² (unit gradient noise), observed loss = true loss at the step.

    Returns (losses, lrs, scheduler, x). ``corrupt(t)`` may replace the observed loss;
    ``checkpoints`` rebuilds optimizer and scheduler from ``weights_only`` checkpoints there.
    """
    noise = torch.randn(steps, DIM, generator=torch.Generator().manual_seed(seed))
    x = nn.Parameter(torch.full((DIM,), 3.0))
    opt = _optimizer(opt_name, [x], lr)
    sched = LRTuner(opt, steps, **tuner_options) if tuner_options is not None else None
    losses, lrs = [], []
    for t in range(steps):
        if t in checkpoints:
            x, opt, sched = _rebuild(opt_name, lr, steps, tuner_options, x, opt, sched)
        value = 0.5 * float((CURVATURE * x.detach() ** 2).sum())
        lrs.append(opt.param_groups[0]["lr"])
        x.grad = CURVATURE * x.detach() + noise[t]
        opt.step()
        if sched is not None:
            sched.observe(corrupt(t, value) if corrupt else value)
            sched.step()
        losses.append(value)
    return losses, lrs, sched, x.detach().clone()


def _reload(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _rebuild(opt_name, lr, steps, tuner_options, x, opt, sched):
    """A fresh parameter, optimizer and scheduler restored from checkpoints (Trainer's order)."""
    x2 = nn.Parameter(x.detach().clone())
    opt2 = _optimizer(opt_name, [x2], lr)
    sched2 = LRTuner(opt2, steps, **tuner_options)
    opt2.load_state_dict(_reload(opt.state_dict()))
    sched2.load_state_dict(_reload(sched.state_dict()))
    return x2, opt2, sched2


def _best_constant_lr(opt_name):
    """The known answer: the grid LR with the lowest final loss over the run (no tuner)."""
    grid = [0.3 * 10 ** (-k / 2) for k in range(8)]  # 0.3 ... 1e-4, half-decade steps
    final = {lr: sum(_quadratic_run(opt_name, lr)[0][-50:]) for lr in grid}
    return min(final, key=final.get)


TUNE = {"probe_steps": 8, "tune_every": 40, "explore_fraction": 1.0}


@pytest.mark.parametrize("opt_name", ["sgd_momentum", "adam"])
def test_tuner_moves_a_wrong_lr_to_the_known_best_from_both_sides(opt_name):
    torch.manual_seed(0)
    best = _best_constant_lr(opt_name)
    for start, direction in [(best / 10, "raise"), (best * 10, "lower")]:
        losses, lrs, sched, _ = _quadratic_run(opt_name, start, tuner_options=TUNE)
        diag = sched.diagnostics()
        if direction == "raise":  # the loss falls faster at a higher LR: it goes up
            assert diag["lrtuner/raises"] > diag["lrtuner/lowers"]
        else:  # a lower LR reaches a lower noise floor: it goes down
            assert diag["lrtuner/lowers"] > diag["lrtuner/raises"]
        assert best / 4 <= lrs[-1] <= best * 4, (start, lrs[-1], best)
        fixed = _quadratic_run(opt_name, start)[0]
        assert sum(losses[-50:]) < 0.5 * sum(fixed[-50:])  # and training is much better for it


def test_probe_steps_count_toward_the_budget_and_exploit_decays_to_zero():
    options = {"probe_steps": 8, "tune_every": 40, "explore_fraction": 0.5}
    _, lrs, sched, _ = _quadratic_run("sgd_momentum", 0.001, tuner_options=options)
    assert sched.last_epoch == STEPS  # one scheduler step per optimizer step, probes included
    diag = sched.diagnostics()
    rounds = diag["lrtuner/rounds"]
    # rounds start at steps 1, 41, ... while a full round (24 steps) ends by step 300
    assert rounds == len(range(1, 300 - 24 + 1, 40))
    assert diag["lrtuner/probe_steps"] == 3 * 8 * rounds
    assert 2 * 8 * rounds <= diag["lrtuner/discarded_steps"] <= 3 * 8 * rounds
    assert diag["lrtuner/phase"] == 2.0 and sched.exploit_start == 300
    tuned = sched.exploit_factor * 0.001
    assert lrs[300] == pytest.approx(tuned)
    assert lrs[450] == pytest.approx(tuned * 0.5)  # linear decay from the tuned LR ...
    assert lrs[-1] == pytest.approx(tuned / 300)  # ... to zero at the last step


def test_restore_brings_back_parameters_and_optimizer_state_exactly():
    for opt_name in ("sgd_momentum", "adam"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
        opt = _optimizer(opt_name, model.parameters(), 0.05)
        sched = LRTuner(opt, 100, probe_steps=4, tune_every=20)
        data = torch.randn(16, 4)

        def train_step():
            opt.zero_grad()
            model(data).pow(2).mean().backward()
            opt.step()

        for _ in range(3):
            train_step()
        reference_model = copy.deepcopy(model)
        reference_opt = _optimizer(opt_name, reference_model.parameters(), 0.05)
        reference_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
        sched._take_snapshot()
        for _ in range(4):
            train_step()
        sched._restore_snapshot()
        for p, q in zip(model.parameters(), reference_model.parameters()):
            assert torch.equal(p, q)
        # the next step from the restored state equals the next step from the reference
        train_step()
        ref_params = list(reference_model.parameters())
        reference_opt.zero_grad()
        reference_model(data).pow(2).mean().backward()
        reference_opt.step()
        for p, q in zip(model.parameters(), ref_params):
            assert torch.equal(p, q)


def test_restore_of_a_snapshot_without_optimizer_state_clears_it():
    x = nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([x], lr=0.1)
    sched = LRTuner(opt, 100, probe_steps=4, tune_every=20)
    sched._take_snapshot()
    x.grad = torch.ones(3)
    opt.step()
    assert opt.state[x]
    sched._restore_snapshot()
    assert x not in opt.state and torch.equal(x.detach(), torch.ones(3))


@pytest.mark.parametrize("opt_name", ["sgd_momentum", "adam"])
def test_resume_gives_the_same_lr_sequence(opt_name):
    options = {"probe_steps": 6, "tune_every": 25, "explore_fraction": 0.7}
    steps = 300
    _, lrs, sched, x = _quadratic_run(opt_name, 0.001, steps=steps, tuner_options=options)
    # 27 and 31 fall inside the second probe round (steps 26-43), 130 inside another
    _, lrs2, sched2, x2 = _quadratic_run(
        opt_name, 0.001, steps=steps, tuner_options=options, checkpoints=(27, 31, 130, 250)
    )
    assert sched.rounds > 3 and len(set(lrs)) > 5
    assert lrs == lrs2
    assert torch.equal(x, x2)
    assert sched.diagnostics() == sched2.diagnostics()


def test_nan_and_inf_losses_are_ignored():
    torch.manual_seed(0)
    bad = set(torch.randperm(STEPS)[: STEPS // 7].tolist())

    def corrupt(t, value):
        return (float("nan") if t % 2 else float("inf")) if t in bad else value

    _, lrs, sched, _ = _quadratic_run("sgd_momentum", 0.0003, tuner_options=TUNE, corrupt=corrupt)
    assert sched.num_nonfinite == len(bad)
    assert lrs[-1] >= 0.0003 * 3  # still tunes upward from a 10x too low LR
    assert all(math.isfinite(v) for v in sched.diagnostics().values())


def test_all_nonfinite_losses_change_nothing():
    _, lrs, sched, _ = _quadratic_run(
        "adam", 0.01, tuner_options=TUNE, corrupt=lambda t, v: float("nan")
    )
    assert sched.num_nonfinite == STEPS
    assert sched.rounds > 0 and sched.raises == sched.lowers == 0
    assert lrs[-1] == 0.01


def test_flat_loss_stalls_and_leaves_explore_after_patience_periods():
    x = nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([x], lr=0.1)
    sched = LRTuner(opt, 1000, probe_steps=4, tune_every=20, patience=3)
    for _ in range(200):
        opt.step()
        sched.observe(1.0)
        sched.step()
    # periods close at rounds 1, 21, 41, 61: the first sets the best, three more do not beat it
    assert sched.exploit_start == 61 and sched.rounds == 3
    assert sched.raises == sched.lowers == 0 and sched.exploit_factor == 1.0


def test_probe_off_is_the_knee_schedule():
    x = nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([x], lr=0.1)
    sched = LRTuner(opt, 100, num_warmup_steps=10, probe="off", explore_fraction=0.5)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.observe(1.0)
        sched.step()
    expected = [0.1 * t / 10 for t in range(10)] + [0.1] * 40 + [0.1 * (1 - (t - 50) / 50) for t in range(50, 100)]
    assert lrs == pytest.approx(expected)
    assert sched.rounds == 0


def test_bad_options_raise_clear_errors():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(3))], lr=0.1)
    with pytest.raises(ValueError, match="'probe'.*'restore', 'off'"):
        LRTuner(opt, 100, probe="inline")
    with pytest.raises(ValueError, match="'tune_every'"):
        LRTuner(opt, 100, probe_steps=10, tune_every=20)
    with pytest.raises(ValueError, match="'probe_factor'"):
        LRTuner(opt, 100, probe_factor=1.0)
    with pytest.raises(ValueError, match="'explore_fraction'"):
        LRTuner(opt, 100, explore_fraction=1.5)
    with pytest.raises(ValueError, match="unknown option"):
        build_scheduler("lrtuner", opt, num_training_steps=100, probe_step=3)


def test_registry_defaults_scale_with_the_run():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(3))], lr=0.1)
    sched = build_scheduler("lrtuner", opt, num_warmup_steps=0, num_training_steps=2000)
    assert isinstance(sched, LRTuner) and sched.needs_loss
    assert (sched.probe_steps, sched.tune_every, sched.explore_end) == (20, 200, 1000)
    keys = set(sched.diagnostics())
    assert {"lrtuner/lr_factor", "lrtuner/phase", "lrtuner/rounds", "lrtuner/nonfinite_losses"} <= keys
    assert "lrtuner/smoothed_loss" not in keys  # not defined before the first loss: left out, not NaN
    sched.observe(1.0)
    sched.step()
    assert sched.diagnostics()["lrtuner/smoothed_loss"] == 1.0


def test_losses_that_do_not_depend_on_the_lr_rarely_move_it():
    """Pure noise: the significance gate (2 standard errors) keeps the LR; without it, it wanders."""
    changes = {}
    for significance in (2.0, 0.0):
        x = nn.Parameter(torch.zeros(2))
        opt = torch.optim.SGD([x], lr=0.1)
        sched = LRTuner(
            opt, 4000, probe_steps=8, tune_every=40, explore_fraction=1.0, patience=1000, significance=significance
        )
        noise = torch.Generator().manual_seed(0)
        for _ in range(4000):
            opt.step()
            sched.observe(1.0 + float(torch.randn(1, generator=noise)))
            sched.step()
        changes[significance] = (sched.raises + sched.lowers) / sched.rounds
    assert changes[2.0] <= 0.15
    assert changes[0.0] >= 0.5
