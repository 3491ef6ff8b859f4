"""AdaScale: gain estimation from hooked micro-batch gradients, progress, rules, resume, DDP."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from gloo_workers import run_workers

from hf_autolr.registry import build_scheduler
from hf_autolr.schedulers.adascale import AdaScale, optimizer_family, resolve_rule
from hf_autolr.schedulers.gradient_noise import gain_ratio, noise_estimates

# -- helpers ------------------------------------------------------------------------------------


def vec(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def vector_param(dim: int) -> nn.Parameter:
    return nn.Parameter(torch.zeros(dim, dtype=torch.float64))


def backward_samples(param: torch.Tensor, grads: list[torch.Tensor], loss_scaling="mean", scale=1.0) -> None:
    """One micro-batch per gradient: ``loss_i = <param, g_i>`` has gradient exactly g_i."""
    for g in grads:
        loss = (param * g).sum() * scale
        (loss / len(grads) if loss_scaling == "mean" else loss).backward()


def take_step(opt: torch.optim.Optimizer, sched: AdaScale) -> None:
    opt.step()
    sched.step()
    opt.zero_grad()


def hand_estimates(grads: list[torch.Tensor]) -> tuple[float, float]:
    """σ² as the trace of the sample covariance (centred form), μ² = ‖ḡ‖² − σ²/S."""
    g = torch.stack([x.double() for x in grads])
    mean = g.mean(0)
    s = len(grads)
    var = float(((g - mean) ** 2).sum() / (s - 1))
    return var, float(mean.square().sum()) - var / s


def hand_gain(var: float, sqr: float, s: int) -> float:
    var, sqr = max(var, 1e-6), max(sqr, 0.0)
    return (var + sqr) / (var / s + sqr)


def make(dim: int = 4, lr: float = 0.1, optimizer=torch.optim.SGD, **options):
    param = vector_param(dim)
    opt = optimizer([param], lr=lr)
    sched = AdaScale(opt, options.pop("num_training_steps", 1000), **options)
    sched.attach([param])
    return param, opt, sched


# -- gains ----------------------------------------------------------------------------------------

GOLDEN = [  # fairscale's golden values (its AdaScale unit tests), rechecked by hand
    ([[1.0, 0.0], [0.0, 1.0]], 2.0, 2.0, 4 / 3),
    ([[1.0, 1.0], [1.0, 1.0]], 1e-6, 6.0, 1.0000001),
    ([[-1.0, 1.0], [1.0, -1.0]], 8.0, 0.0, 2.0),
    ([[1.0, 4.0], [5.0, 0.5]], 28.25, 16.0, 1.46888),
    ([[-0.2, 3.0], [5.0, 0.5]], 33.29, 3.0, 1.84729),
]


@pytest.mark.parametrize("loss_scaling", ["mean", "sum"])
@pytest.mark.parametrize(("inputs", "var", "sqr", "gain"), GOLDEN)
def test_golden_gain_after_one_step(inputs, var, sqr, gain, loss_scaling):
    torch.manual_seed(0)
    model = nn.Linear(2, 2, bias=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = AdaScale(opt, 100, loss_scaling=loss_scaling).attach(model)
    for x in inputs:
        loss = model(torch.tensor([x])).sum()
        (loss / len(inputs) if loss_scaling == "mean" else loss).backward()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)  # r₀ = 1 for the first step
    take_step(opt, sched)
    assert sched.scale == 2
    assert sched.var_avg == pytest.approx(var, rel=1e-5)
    assert sched.sqr_avg == pytest.approx(sqr, rel=1e-5, abs=1e-5)
    assert sched.gain == pytest.approx(gain, rel=1e-5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * sched.gain)


def _gradient_sets(kind: str, s: int) -> list[torch.Tensor]:
    if kind == "orthogonal":
        return [3.0 * torch.eye(s, dtype=torch.float64)[i] for i in range(s)]
    if kind == "identical":
        return [vec(1.0, -2.0, 0.5, 3.0)] * s
    g = torch.Generator().manual_seed(s)
    return [torch.randn(6, generator=g, dtype=torch.float64) + 0.7 for _ in range(s)]


@pytest.mark.parametrize("loss_scaling", ["mean", "sum"])
@pytest.mark.parametrize("s", [2, 3, 5, 8])
@pytest.mark.parametrize("kind", ["orthogonal", "identical", "random"])
def test_estimates_from_hooks_match_hand_computation(kind, s, loss_scaling):
    grads = _gradient_sets(kind, s)
    param, opt, sched = make(dim=grads[0].numel(), loss_scaling=loss_scaling)
    backward_samples(param, grads, loss_scaling)
    take_step(opt, sched)
    var, sqr = hand_estimates(grads)
    if kind == "orthogonal":  # ‖g_i‖² = 9, ḡ = 3/S·1: σ² = 9, μ² = 0 → r = S
        assert (var, sqr) == pytest.approx((9.0, 0.0), abs=1e-12)
    if kind == "identical":  # no noise: σ² = 0, μ² = ‖g‖² → r ≈ 1
        assert (var, sqr) == pytest.approx((0.0, 14.25), abs=1e-12)
    assert sched.scale == s
    assert sched.var_step == pytest.approx(var, rel=1e-9, abs=1e-9)
    assert sched.sqr_step == pytest.approx(sqr, rel=1e-9, abs=1e-9)
    assert sched.var_avg == pytest.approx(max(var, 1e-6), rel=1e-9)
    assert sched.sqr_avg == pytest.approx(max(sqr, 0.0), rel=1e-9, abs=1e-9)
    assert sched.gain == pytest.approx(hand_gain(var, sqr, s), rel=1e-9)
    sample_sq_sum = sum(float(g.square().sum()) for g in grads)
    mean_sq = float(torch.stack(grads).mean(0).square().sum())
    assert noise_estimates(sample_sq_sum, mean_sq, s) == pytest.approx((var, sqr), abs=1e-9)


def test_smoothing_is_plain_mean_then_ema():
    theta = 0.75  # plain mean for observations 1..3 (t < 1/(1-θ) = 4), then weight 1/4
    param, opt, sched = make(dim=5, smoothing=theta)
    g = torch.Generator().manual_seed(1)
    var_avg = sqr_avg = None
    for t in range(1, 8):
        grads = [torch.randn(5, generator=g, dtype=torch.float64) + 0.5 for _ in range(3)]
        backward_samples(param, grads)
        take_step(opt, sched)
        var, sqr = hand_estimates(grads)
        var, sqr = max(var, 1e-6), max(sqr, 0.0)
        w = 1.0 / t if t <= 4 else 1 - theta
        var_avg = var if t == 1 else (1 - w) * var_avg + w * var
        sqr_avg = sqr if t == 1 else (1 - w) * sqr_avg + w * sqr
        assert sched.var_avg == pytest.approx(var_avg, rel=1e-9)
        assert sched.sqr_avg == pytest.approx(sqr_avg, rel=1e-9, abs=1e-12)
        assert sched.gain == pytest.approx(hand_gain(var_avg, sqr_avg, 3), rel=1e-9)


def test_default_smoothing_averages_early_steps_plainly():
    param, opt, sched = make(dim=3)  # S = 2 → θ = 0.998: plain mean for 500 observations
    g = torch.Generator().manual_seed(2)
    seen = []
    for _ in range(4):
        grads = [torch.randn(3, generator=g, dtype=torch.float64) + 1.0 for _ in range(2)]
        backward_samples(param, grads)
        take_step(opt, sched)
        var, sqr = hand_estimates(grads)
        seen.append((max(var, 1e-6), max(sqr, 0.0)))
    assert sched.var_avg == pytest.approx(sum(v for v, _ in seen) / 4, rel=1e-9)
    assert sched.sqr_avg == pytest.approx(sum(q for _, q in seen) / 4, rel=1e-9)


def test_gain_stays_in_one_to_s():
    g = torch.Generator().manual_seed(3)
    for _ in range(200):
        var, sqr = (torch.randn(2, generator=g, dtype=torch.float64) * 10).tolist()
        s = int(torch.randint(2, 64, (1,), generator=g))
        r = gain_ratio(var, sqr, s)
        assert 1.0 <= r <= s
    assert gain_ratio(5.0, -1.0, 8) == 8.0  # μ² < 0 clips to 0: all noise → r = S
    assert gain_ratio(-1.0, 3.0, 8) == pytest.approx(1.0, abs=1e-6)  # σ² clips to 1e-6


def _mlp_statistics(checkpointed: bool, clip: float | None) -> tuple[int, float, float]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = AdaScale(opt, 100).attach(model)
    for mb in range(3):
        g = torch.Generator().manual_seed(mb)
        x, y = torch.randn(5, 3, generator=g), torch.randn(5, 2, generator=g)
        if checkpointed:
            out = torch.utils.checkpoint.checkpoint(model, x, use_reentrant=False)
        else:
            out = model(x)
        (nn.functional.mse_loss(out, y) / 3).backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    take_step(opt, sched)
    return sched.scale, sched.var_step, sched.sqr_step


def test_statistics_are_pre_clip_and_survive_activation_checkpointing():
    reference = _mlp_statistics(checkpointed=False, clip=None)
    assert reference[0] == 3
    assert _mlp_statistics(checkpointed=False, clip=1e-3) == pytest.approx(reference, rel=1e-9)
    assert _mlp_statistics(checkpointed=True, clip=None) == pytest.approx(reference, rel=1e-6)


# -- refusals and bad numbers -------------------------------------------------------------------


def test_one_sample_is_refused_with_the_remedy():
    param, opt, sched = make()
    backward_samples(param, [torch.ones(4, dtype=torch.float64)])
    opt.step()
    with pytest.raises(RuntimeError, match="gradient_accumulation_steps >= 2 or train on more processes"):
        sched.step()


def test_step_without_attach_is_refused():
    param = vector_param(2)
    opt = torch.optim.SGD([param], lr=0.1)
    sched = AdaScale(opt, 10)
    backward_samples(param, [torch.ones(2, dtype=torch.float64)] * 2)
    opt.step()
    with pytest.raises(RuntimeError, match="attach"):
        sched.step()


def test_nonfinite_gradients_are_not_an_observation():
    param, opt, sched = make()
    backward_samples(param, [vec(1.0, 2.0, 0.0, 1.0), vec(1.0, 1.0, 1.0, 1.0)])
    take_step(opt, sched)
    before = (sched.var_avg, sched.sqr_avg, sched.gain, sched.progress)
    backward_samples(param, [vec(math.nan, 1.0, 0.0, 1.0), vec(1.0, 1.0, 1.0, 1.0)])
    take_step(opt, sched)
    assert (sched.var_avg, sched.sqr_avg, sched.gain) == before[:3]
    assert sched.progress == before[3] + before[2]  # the step was taken: τ advanced by its r
    assert sched.num_skipped == 1
    assert math.isfinite(sched.get_last_lr()[0])


def test_gradients_zeroed_without_scheduler_step_start_afresh():
    """A skipped fp16 step: overflowed micro-batches, zero_grad, no scheduler step."""
    param, opt, sched = make()
    backward_samples(param, [torch.full((4,), math.inf, dtype=torch.float64)] * 2)
    opt.zero_grad()
    clean = [vec(1.0, 0.0, 2.0, 0.0), vec(0.0, 1.0, 1.0, 1.0)]
    backward_samples(param, clean)
    take_step(opt, sched)
    var, sqr = hand_estimates(clean)
    assert (sched.var_step, sched.sqr_step) == pytest.approx((var, sqr))
    assert sched.num_skipped == 0


def test_fp16_scale_is_divided_out():
    """Gradients carry the GradScaler factor; the scale is read at the end of each backward, so a
    scale change in ``scaler.update()`` before ``sched.step()`` does not matter."""
    grads = [torch.tensor([1.0, -1.0, 2.0, 0.5]), torch.tensor([0.0, 1.0, 1.0, -0.5])]
    param = nn.Parameter(torch.zeros(4))
    opt = torch.optim.SGD([param], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1)
    sched = AdaScale(opt, 100).attach([param], grad_scaler=scaler)
    for g in grads:
        scaler.scale((param * g).sum() / 2).backward()
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() == 2048.0  # grew before the scheduler step
    sched.step()
    var, sqr = hand_estimates(grads)
    assert (sched.var_step, sched.sqr_step) == pytest.approx((var, sqr), rel=1e-6)
    # a plain number works too
    param2, opt2, sched2 = make()
    sched2.attach([param2], grad_scaler=64.0)  # same params: only the scale changes
    backward_samples(param2, [g.double() for g in grads], scale=64.0)
    take_step(opt2, sched2)
    assert (sched2.var_step, sched2.sqr_step) == pytest.approx((var, sqr), rel=1e-9)


# -- progress, base schedules, rules ------------------------------------------------------------

ANTIPODAL = [vec(1.0, 2.0, 0.0, -1.0), vec(-1.0, -2.0, 0.0, 1.0)]


def _linear_with_warmup(step: int, warmup: int, total: int) -> float:
    return step / warmup if step < warmup else max(0.0, (total - step) / (total - warmup))


def test_progress_advances_by_gain_and_base_is_evaluated_at_floor_tau():
    # ḡ = 0: μ² clips to 0 and r = S = 2 exactly, every step
    param, opt, sched = make(lr=1.0, base="linear", num_training_steps=10, num_warmup_steps=3)
    taus, lrs = [], []
    while not sched.finished:
        taus.append(sched.progress)
        lrs.append(opt.param_groups[0]["lr"])
        backward_samples(param, ANTIPODAL)
        take_step(opt, sched)
    assert taus == [0.0, 1.0, 3.0, 5.0, 7.0, 9.0]  # r₀ = 1, then r = 2
    assert sched.progress == 11.0 and sched.finished
    gains = [1.0] + [2.0] * 5
    expected = [_linear_with_warmup(math.floor(t), 3, 10) * r for t, r in zip(taus, gains)]
    assert lrs == pytest.approx(expected)
    assert sched.diagnostics()["adascale/progress"] == 11.0
    assert sched.diagnostics()["adascale/scale"] == 2.0


@pytest.mark.parametrize("base", ["constant", "cosine", "cosine_with_min_lr"])
def test_base_schedules_without_noise_follow_the_s1_schedule(base):
    # identical samples: r ≈ 1, so τ ≈ step count and LR ≈ the S=1 schedule
    param, opt, sched = make(lr=1.0, base=base, num_training_steps=8, num_warmup_steps=2, min_lr_ratio=0.1)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        backward_samples(param, [torch.ones(4, dtype=torch.float64)] * 2)
        take_step(opt, sched)
    def cos(k):
        return 0.5 * (1 + math.cos(math.pi * (k - 2) / 6))
    shape = {
        "constant": lambda k: 1.0,
        "cosine": cos,
        "cosine_with_min_lr": lambda k: 0.1 + 0.9 * cos(k),
    }[base]
    expected = [k / 2 if k < 2 else shape(k) for k in range(8)]
    assert lrs == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert sched.finished


def test_record_gradients_applies_this_steps_gain_to_this_step():
    param, opt, sched = make(lr=0.5)
    backward_samples(param, ANTIPODAL)
    sched.record_gradients()
    assert opt.param_groups[0]["lr"] == 1.0 and sched.get_last_lr() == [1.0]  # 0.5 × r=2, now
    take_step(opt, sched)
    assert sched.progress == 2.0  # this step used r = 2
    assert opt.param_groups[0]["lr"] == 1.0


@pytest.mark.parametrize(
    ("optimizer", "rule", "factor"),
    [
        (torch.optim.SGD, "auto", 4.0),
        (torch.optim.AdamW, "auto", 2.0),
        (torch.optim.Adam, "sgd", 4.0),
        (torch.optim.SGD, "adam", 2.0),
    ],
)
def test_sgd_rule_scales_by_gain_adam_rule_by_its_square_root(optimizer, rule, factor):
    param, opt, sched = make(lr=0.01, optimizer=optimizer, rule=rule)
    g = vec(1.0, 2.0, -1.0, 0.5)
    backward_samples(param, [g, -g, 2 * g, -2 * g])  # ḡ = 0 → r = S = 4
    take_step(opt, sched)
    assert sched.gain == 4.0
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * factor)
    assert sched.progress == 1.0
    backward_samples(param, [g, -g, 2 * g, -2 * g])
    take_step(opt, sched)
    assert sched.progress == 5.0  # τ advances by r under both rules


def test_adam_statistics_use_preconditioned_gradients_from_the_sixth_step():
    param, opt, sched = make(dim=5, lr=0.01, optimizer=torch.optim.Adam, smoothing=0.0)
    g = torch.Generator().manual_seed(4)
    for step in range(1, 7):
        grads = [torch.randn(5, generator=g, dtype=torch.float64) * (1 + i) + 0.3 for i in range(3)]
        state = opt.state.get(param, {})
        precond = None
        if state and float(state["step"]) >= 5:
            t = float(state["step"])
            precond = (state["exp_avg_sq"] / (1 - 0.999**t)).sqrt() + 1e-8
        backward_samples(param, grads)
        take_step(opt, sched)
        expected = hand_estimates(grads if precond is None else [x / precond for x in grads])
        assert (sched.var_step, sched.sqr_step) == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert sched.preconditioned == (step == 6)
    assert sched.num_averaged == 1  # the averages restarted when preconditioning started


def test_rule_detection():
    p = [nn.Parameter(torch.zeros(1))]

    class Wrapper(torch.optim.Optimizer):  # like accelerate's AcceleratedOptimizer
        def __init__(self, optimizer):
            self.optimizer = optimizer
            self.defaults = optimizer.defaults

        @property
        def param_groups(self):
            return self.optimizer.param_groups

        @property
        def state(self):
            return self.optimizer.state

    class Mystery(torch.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {"lr": 0.1})

    assert optimizer_family(torch.optim.SGD(p, lr=0.1, momentum=0.9)) == "sgd"
    assert optimizer_family(torch.optim.RMSprop(p)) == "adam"
    assert optimizer_family(Wrapper(torch.optim.AdamW(p))) == "adam"
    assert optimizer_family(Wrapper(torch.optim.SGD(p, lr=0.1))) == "sgd"
    assert resolve_rule(Mystery(p), "sgd") == "sgd"
    with pytest.raises(ValueError, match="rule='sgd'"):
        resolve_rule(Mystery(p), "auto")


def test_param_group_ratios_are_kept():
    a, b = vector_param(2), vector_param(2)
    opt = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}])
    sched = AdaScale(opt, 100).attach()  # default: the optimizer's parameters
    for _ in range(3):
        for sign in (1.0, -1.0):
            ((a * sign * torch.tensor([1.0, 2.0])).sum() / 2 + (b * torch.tensor([0.5, 0.5])).sum() / 2).backward()
        take_step(opt, sched)
        lr_a, lr_b = (group["lr"] for group in opt.param_groups)
        assert lr_a == pytest.approx(10 * lr_b) and lr_a == pytest.approx(0.1 * sched.gain)
        assert sched.gain > 1.0


def test_attach_is_idempotent_and_detach_removes_hooks():
    param, opt, sched = make()
    sched.attach([param])
    sched.attach([param])
    backward_samples(param, ANTIPODAL)
    take_step(opt, sched)
    var, _ = hand_estimates(ANTIPODAL)
    assert sched.var_step == pytest.approx(var)  # one set of hooks, not three
    sched.detach()
    backward_samples(param, ANTIPODAL)
    opt.step()
    with pytest.raises(RuntimeError, match="attach"):
        sched.step()


def test_options_are_validated_and_registered():
    param = vector_param(2)
    opt = torch.optim.SGD([param], lr=0.1)
    sched = build_scheduler("adascale", opt, num_warmup_steps=5, num_training_steps=50, base="cosine")
    assert isinstance(sched, AdaScale) and sched.num_warmup_steps == 5 and not sched.needs_loss
    for bad, match in [({"base": "step"}, "'base'"), ({"rule": "lamb"}, "'rule'"),
                       ({"loss_scaling": "avg"}, "'loss_scaling'"), ({"smoothing": 1.0}, "'smoothing'")]:
        with pytest.raises(ValueError, match=match):
            AdaScale(opt, 10, **bad)


# -- resume -------------------------------------------------------------------------------------


def _regression_run(optimizer_name: str, steps: range, state=None):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    if optimizer_name == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
    sched = AdaScale(opt, 40, base="cosine", num_warmup_steps=2)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
    sched.attach(model)
    lrs = []
    for step in steps:
        for mb in range(3):
            g = torch.Generator().manual_seed(1000 * step + mb)
            x, y = torch.randn(4, 3, generator=g), torch.randn(4, 2, generator=g)
            (nn.functional.mse_loss(model(x), y) / 3).backward()
        take_step(opt, sched)
        lrs.append((sched.get_last_lr()[0], sched.gain, sched.progress, sched.var_avg, sched.sqr_avg))
    saved = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
    return lrs, saved


@pytest.mark.parametrize("optimizer_name", ["sgd", "adam"])
def test_resume_gives_the_same_lr_sequence(optimizer_name, tmp_path):
    full, _ = _regression_run(optimizer_name, range(9))
    first, saved = _regression_run(optimizer_name, range(4))
    torch.save(saved["scheduler"], tmp_path / "scheduler.pt")
    saved["scheduler"] = torch.load(tmp_path / "scheduler.pt", weights_only=True)
    rest, _ = _regression_run(optimizer_name, range(4, 9), state=saved)
    assert first + rest == full
    assert len({lr for lr, *_ in full}) > 3  # the LR actually moved


# -- two processes --------------------------------------------------------------------------------

WORLD, MICRO, STEPS = 2, 2, 3


def _batch(step: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 * step + index)
    return torch.randn(3, 4, generator=g), torch.randn(3, 2, generator=g) + 1.0


def _ddp_worker(rank: int, out_dir: str, users_comm_hook: bool) -> None:
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    torch.manual_seed(0)
    ddp = DistributedDataParallel(nn.Linear(4, 2))
    if users_comm_hook:  # the user's own hook stays; the statistics take a second all-reduce
        ddp.register_comm_hook(None, allreduce_hook)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    sched = AdaScale(opt, 100).attach(ddp)
    assert len(ddp._comm_hooks) == 1  # ours (statistics with the last gradient bucket) or the user's
    record = []
    for step in range(STEPS):
        for mb in range(MICRO):
            x, y = _batch(step, rank * MICRO + mb)
            if mb < MICRO - 1:
                with ddp.no_sync():
                    (nn.functional.mse_loss(ddp(x), y) / MICRO).backward()
            else:
                (nn.functional.mse_loss(ddp(x), y) / MICRO).backward()
        take_step(opt, sched)
        record.append((sched.scale, sched.gain, sched.var_step, sched.sqr_step, sched.get_last_lr()[0]))
    torch.save(record, Path(out_dir) / f"rank{rank}.pt")


@pytest.mark.parametrize("users_comm_hook", [False, True], ids=["with-last-bucket", "own-collective"])
def test_two_processes_with_accumulation_use_all_four_samples(tmp_path, users_comm_hook):
    run_workers(_ddp_worker, args=(str(tmp_path), users_comm_hook), nprocs=WORLD)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0 == rank1  # identical gain and LR on both ranks, every step

    # the same 4 micro-batches per step in one process
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = AdaScale(opt, 100).attach(model)
    for step in range(STEPS):
        for index in range(WORLD * MICRO):
            x, y = _batch(step, index)
            (nn.functional.mse_loss(model(x), y) / (WORLD * MICRO)).backward()
        take_step(opt, sched)
        scale, gain, var, sqr, lr = rank0[step]
        assert scale == 4 and sched.scale == 4
        expected = (sched.gain, sched.var_step, sched.sqr_step, sched.get_last_lr()[0])
        assert (gain, var, sqr, lr) == pytest.approx(expected, rel=1e-5)
    assert len({round(r[1], 6) for r in rank0}) > 1  # the gain moved between steps


# -- the integration hooks: before_optimizer_step, skipped steps, short steps ---------------------


@pytest.mark.parametrize("record_after_skip", [True, False], ids=["hook-every-step", "hook-then-plain-loop"])
def test_skipped_fp16_step_leaves_progress_and_averages_untouched(record_after_skip):
    """A GradScaler skips step 2 (overflow) after ``before_optimizer_step`` ran; ``step()`` is not
    called. τ does not advance, the overflow is no observation, and step 3 is measured afresh,
    whether or not ``before_optimizer_step`` is called again."""
    param = nn.Parameter(torch.zeros(4))
    opt = torch.optim.SGD([param], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=256.0)
    sched = AdaScale(opt, 100).attach(model=[param], grad_scaler=scaler)
    steps = [
        [torch.tensor([1.0, -1.0, 2.0, 0.5]), torch.tensor([0.0, 1.0, 1.0, -0.5])],
        [torch.tensor([math.inf, 1.0, 0.0, 0.0]), torch.tensor([1.0, 1.0, 1.0, 1.0])],
        [torch.tensor([2.0, 0.0, -1.0, 1.0]), torch.tensor([0.5, 0.5, 1.0, 0.0])],
    ]
    lrs = []
    for index, grads in enumerate(steps):
        for g in grads:
            scaler.scale((param * g).sum() / 2).backward()
        if index < 2 or record_after_skip:
            sched.before_optimizer_step()
        lrs.append(opt.param_groups[0]["lr"])
        scale_before = scaler.get_scale()
        scaler.step(opt)
        scaler.update()
        if scaler.get_scale() >= scale_before:  # not skipped (an overflow halves the scale)
            sched.step()
        opt.zero_grad()
        if index == 1:
            assert scaler.get_scale() < scale_before  # the step was skipped
            assert sched.num_skipped == 1 and sched.last_epoch == 1
    clean = [steps[0], steps[2]]
    estimates = [hand_estimates(g) for g in clean]
    var_avg = sum(max(v, 1e-6) for v, _ in estimates) / 2
    sqr_avg = sum(max(q, 0.0) for _, q in estimates) / 2
    gain_1 = hand_gain(*estimates[0], 2)
    gain_3 = hand_gain(var_avg, sqr_avg, 2)
    assert (sched.var_avg, sched.sqr_avg) == pytest.approx((var_avg, sqr_avg), rel=1e-6)
    assert lrs[0] == pytest.approx(0.1 * gain_1)  # step 1 used its own gain
    assert lrs[1] == pytest.approx(0.1 * gain_1)  # the skipped step changed nothing
    if record_after_skip:
        assert lrs[2] == pytest.approx(0.1 * gain_3)  # step 3 used its own gain
        assert sched.progress == pytest.approx(gain_1 + gain_3)
    else:
        assert lrs[2] == pytest.approx(0.1 * gain_1)  # plain loop: the gain lags one step
        assert sched.progress == pytest.approx(2 * gain_1)
    assert sched.last_epoch == 2 and sched.gain == pytest.approx(gain_3)


def test_before_optimizer_step_twice_changes_nothing():
    param, opt, sched = make(lr=0.5)
    backward_samples(param, ANTIPODAL)
    sched.before_optimizer_step()
    sched.before_optimizer_step()
    assert opt.param_groups[0]["lr"] == 1.0 and sched.num_averaged == 1
    take_step(opt, sched)
    assert sched.progress == 2.0 and sched.num_averaged == 1


def test_one_sample_step_after_normal_ones_has_gain_one():
    """The short last step of an epoch (e.g. 16 micro-batches with accumulation 3)."""
    param, opt, sched = make(lr=0.5)
    backward_samples(param, ANTIPODAL)  # r = 2
    sched.before_optimizer_step()
    take_step(opt, sched)
    before = (sched.var_avg, sched.sqr_avg, sched.num_averaged, sched.scale)
    backward_samples(param, [vec(1.0, 0.0, 0.0, 0.0)])
    sched.before_optimizer_step()
    assert opt.param_groups[0]["lr"] == 0.5  # gain 1 for one sample
    take_step(opt, sched)
    assert sched.progress == 3.0
    assert (sched.var_avg, sched.sqr_avg, sched.num_averaged, sched.scale) == before
    assert sched.gain == 2.0  # the next full step is expected to be worth 2 again
    # ... and without the hook a one-sample step is not an observation either
    backward_samples(param, [vec(1.0, 0.0, 0.0, 0.0)])
    take_step(opt, sched)
    assert sched.num_averaged == before[2]


def test_first_step_with_one_sample_is_refused_through_the_hook_too():
    param, opt, sched = make()
    backward_samples(param, [torch.ones(4, dtype=torch.float64)])
    with pytest.raises(RuntimeError, match="gradient_accumulation_steps >= 2"):
        sched.before_optimizer_step()


def test_hooks_go_away_with_the_scheduler():
    """A scheduler replaced without detach() (a second Trainer.train()) leaves no live hooks."""
    import gc

    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = AdaScale(opt, 10).attach(model)
    assert all(len(p._backward_hooks) == 1 for p in model.parameters())
    del sched
    gc.collect()
    assert all(not p._backward_hooks for p in model.parameters())
    model(torch.ones(2, 3)).sum().backward()  # nothing stale runs


def test_old_option_name_min_lr_rate_still_works_with_a_warning():
    opt = torch.optim.SGD([vector_param(4)], lr=0.1)
    with pytest.warns(FutureWarning, match="'min_lr_rate' is now called 'min_lr_ratio'"):
        sched = build_scheduler("adascale", opt, num_training_steps=10, base="cosine_with_min_lr", min_lr_rate=0.2)
    assert sched.min_lr_ratio == 0.2


def test_momentum_scaling_keeps_the_decay_and_the_step_per_sample():
    """momentum_scaling: a step worth r S=1 steps gets momentum β^r and LR factor r(1 − β^r)/(1 − β)."""
    param, opt, sched = make(lr=0.1, momentum_scaling=True, optimizer=lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9))
    g = vec(1.0, 2.0, -1.0, 0.5)
    backward_samples(param, [g, -g, 2 * g, -2 * g])  # ḡ = 0 → r = S = 4
    take_step(opt, sched)
    assert sched.gain == 4.0
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.9**4)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 4 * (1 - 0.9**4) / (1 - 0.9))
    assert sched.diagnostics()["adascale/momentum"] == pytest.approx(0.9**4)
    plain = make(lr=0.1, optimizer=lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9))[2]
    assert "adascale/momentum" not in plain.diagnostics()  # off by default: the paper's rule
    with pytest.raises(ValueError, match="'momentum_scaling'"):
        make(lr=0.01, optimizer=torch.optim.AdamW, momentum_scaling=True)
