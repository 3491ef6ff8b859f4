"""autolr_gp on synthetic noisy loss curves: where it switches, what it backs off to."""

from __future__ import annotations

import math

import pytest
import torch

from hf_autolr import build_scheduler
from hf_autolr.schedulers.autolr_gp import AutoLRGP
from hf_autolr.schedulers.gp_smoothing import GPHyperparameters, posterior_for_last, prob_minimum_behind

HINT = 1e-3  # the optimizer's configured LR
WIDE = {"max_lr_ratio": 100.0}  # a [0.1, 100] x HINT range, so the valley lies inside it
BEST_LR = 1e-2  # where the synthetic valley curve has its minimum


def drive(curve, steps=1000, seed=0, lr=HINT, **options):
    """Run AutoLRGP for ``steps`` steps on ``curve(step, lr, generator)``; return it and the LRs."""
    generator = torch.Generator().manual_seed(seed)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=lr)
    scheduler = AutoLRGP(optimizer, steps, **{**WIDE, **options})
    lrs = []
    for step in range(steps):
        current = optimizer.param_groups[0]["lr"]
        lrs.append(current)
        optimizer.step()
        scheduler.observe(curve(step, current, generator))
        scheduler.step()
    return scheduler, lrs


def noise(generator, scale):
    return scale * float(torch.randn((), generator=generator))


def valley(step, lr, generator):
    """Loss falls while the LR approaches BEST_LR, then rises: the LR range-test picture."""
    return 1.0 + 0.5 * math.log10(max(lr, 1e-12) / BEST_LR) ** 2 + noise(generator, 0.1)


def monotone(step, lr, generator):
    return 0.1 + math.exp(-step / 200) + noise(generator, 0.05)


def flat(step, lr, generator):
    return 1.0 + noise(generator, 0.1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_valley_switches_after_minimum_and_backs_off_to_lr_at_smoothed_minimum(seed):
    scheduler, lrs = drive(valley, seed=seed)
    best_step = next(i for i, lr in enumerate(lrs) if lr >= BEST_LR)
    assert scheduler.switch_reason == "gp_minimum"
    # The switch comes after the minimum (it must be behind us), but well before the cap.
    assert best_step < scheduler.switch_step < scheduler.warmup_cap
    # The back-off LR is the warmup LR at the smoothed minimum, which lies near the true one.
    assert scheduler.switch_factor == pytest.approx(scheduler.warmup_factor(scheduler.minimum_step))
    assert abs(scheduler.minimum_step - best_step) < 0.15 * scheduler.warmup_cap
    backoff_lr = scheduler.switch_factor * HINT
    assert abs(math.log10(backoff_lr / BEST_LR)) < 0.3
    assert backoff_lr < lrs[scheduler.switch_step - 1]  # it really backs off
    # LR rose during warmup, then decays to ~0.
    warmup = lrs[: scheduler.switch_step]
    assert all(b > a for a, b in zip(warmup, warmup[1:]))
    assert lrs[-1] < 1e-3 * backoff_lr
    # What the card, the script and the benchmark table show comes from the method.
    assert scheduler.outcome() == f"test@{scheduler.switch_step}×{scheduler.switch_factor:.3g}"
    assert f"warmup ended by the test (GP-smoothed loss minimum) at step {scheduler.switch_step}" in scheduler.summary()
    marks = scheduler.plot_marks()
    assert marks["events"] == [(scheduler.switch_step, "switch (gp_minimum)")]
    assert marks["loss_curves"][0][0] == "GP-smoothed loss"


@pytest.mark.parametrize("curve", [monotone, flat], ids=["monotone", "flat"])
def test_no_gp_switch_without_a_minimum(curve):
    scheduler, lrs = drive(curve)
    assert scheduler.switch_reason == "warmup_cap"
    assert scheduler.switch_step == scheduler.warmup_cap == 500
    # No back-off: decay starts from the top of the range.
    assert scheduler.switch_factor == pytest.approx(100.0)
    assert max(lrs) == pytest.approx(100.0 * HINT, rel=0.02)
    assert scheduler.outcome() == "cap@500×100"


def test_nan_and_inf_do_not_crash_or_move_the_decision():
    clean, _ = drive(valley, seed=3)

    def poisoned(step, lr, generator):
        value = valley(step, lr, generator)
        return (float("nan"), float("inf"), -float("inf"))[step % 3] if step % 10 == 0 else value

    dirty, _ = drive(poisoned, seed=3)
    assert dirty.num_nonfinite == 100
    assert dirty.switch_reason == "gp_minimum"
    assert abs(dirty.switch_step - clean.switch_step) <= 3 * clean.test_interval
    assert abs(math.log10(dirty.switch_factor / clean.switch_factor)) < 0.2
    assert math.isfinite(dirty.diagnostics()["autolr_gp/smoothed_loss"])


def test_skipped_step_observation_is_replaced_by_the_next_one():
    param = torch.nn.Parameter(torch.zeros(1))
    scheduler = AutoLRGP(torch.optim.SGD([param], lr=HINT), 100)
    scheduler.observe(5.0)  # this step is skipped (fp16 overflow): step() is not called
    scheduler.observe(1.0)
    scheduler.optimizer.step()
    scheduler.step()
    assert scheduler.losses[0] == 1.0 and scheduler.num_observed == 2


@pytest.mark.parametrize("decay_type", ["cosine", "linear", "constant_cosine"])
def test_decay_shapes_end_at_zero(decay_type):
    scheduler, lrs = drive(valley, decay_type=decay_type)
    start = scheduler.switch_step
    after = lrs[start:]
    assert after[0] == pytest.approx(scheduler.switch_factor * HINT)
    assert all(b <= a + 1e-15 for a, b in zip(after, after[1:]))
    assert lrs[-1] < 1e-3 * after[0]
    if decay_type == "constant_cosine":
        plateau_end = int(0.8 * 1000)
        assert lrs[plateau_end - 1] == pytest.approx(after[0])
    if decay_type == "linear":
        middle = (start + 1000) // 2
        assert lrs[middle] == pytest.approx(after[0] * (1 - (middle - start) / (999 - start)))


def test_linear_warmup_and_group_ratios_are_kept():
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD([{"params": params[:1], "lr": 1e-3}, {"params": params[1:], "lr": 1e-4}])
    scheduler = AutoLRGP(optimizer, 200, warmup_type="linear")
    seen = []
    for _ in range(50):
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.observe(1.0)
        scheduler.step()
    assert seen[0][0] == pytest.approx(1e-4)  # 0.1 x hint
    steps = [b[0] - a[0] for a, b in zip(seen, seen[1:])]
    assert max(steps) == pytest.approx(min(steps))  # linear ramp
    assert all(a == pytest.approx(10 * b) for a, b in seen)


def test_num_warmup_steps_caps_the_warmup():
    scheduler, _ = drive(monotone, steps=400, num_warmup_steps=100)
    assert scheduler.warmup_cap == 100 and scheduler.switch_step == 100


@pytest.mark.parametrize("switch_at", [60, 600])
def test_resume_gives_the_same_lr_sequence(tmp_path, switch_at):
    """Stop mid-warmup (60) or mid-decay (600), save, reload weights_only, continue."""
    full, lrs_full = drive(valley, seed=5)
    generator = torch.Generator().manual_seed(5)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=HINT)
    first = AutoLRGP(optimizer, 1000, **WIDE)
    lrs = []
    for step in range(switch_at):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        first.observe(valley(step, lrs[-1], generator))
        first.step()
    torch.save(first.state_dict(), tmp_path / "scheduler.pt")
    optimizer2 = torch.optim.SGD([param], lr=HINT)
    resumed = AutoLRGP(optimizer2, 1000, **WIDE)
    resumed.load_state_dict(torch.load(tmp_path / "scheduler.pt", weights_only=True))
    for group, lr in zip(optimizer2.param_groups, resumed.get_last_lr()):
        group["lr"] = lr  # the Trainer restores this from optimizer.pt
    for step in range(switch_at, 1000):
        lrs.append(optimizer2.param_groups[0]["lr"])
        optimizer2.step()
        resumed.observe(valley(step, lrs[-1], generator))
        resumed.step()
    assert lrs == lrs_full
    assert resumed.switch_step == full.switch_step


def test_gp_fit_mll_agrees_with_closed_form_moments():
    moments, _ = drive(valley, seed=1)
    mll, _ = drive(valley, seed=1, gp_fit="mll", n_draws=3, min_votes=2, gp_max_points=40)
    assert mll.switch_reason == "gp_minimum"
    assert abs(mll.switch_step - moments.switch_step) <= 0.1 * moments.warmup_cap
    assert abs(math.log10(mll.switch_factor / moments.switch_factor)) < 0.3


def test_closed_form_posterior_matches_gpytorch():
    gpytorch = pytest.importorskip("gpytorch")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, generator=g, dtype=torch.float64).sort().values
    y = torch.sin(6 * x) + 0.1 * torch.randn(40, generator=g, dtype=torch.float64)
    grid = torch.linspace(0, 1, 30, dtype=torch.float64)
    hyper = GPHyperparameters(mean=0.1, outputscale=0.8, noise=0.02)
    mean, var, cov_last = posterior_for_last(x, y, grid, 0.2, hyper, jitter=0.0)

    class Exact(gpytorch.models.ExactGP):
        def __init__(self, likelihood):
            super().__init__(x, y, likelihood)
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())

        def forward(self, inputs):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(inputs), self.covar_module(inputs))

    likelihood = gpytorch.likelihoods.GaussianLikelihood().double()
    model = Exact(likelihood).double()
    model.covar_module.base_kernel.lengthscale = 0.2
    model.covar_module.outputscale = 0.8
    model.mean_module.constant.data.fill_(0.1)
    likelihood.noise = 0.02
    model.eval()
    with torch.no_grad(), gpytorch.settings.cholesky_jitter(double_value=1e-12):
        reference = model(grid)
    cov = reference.covariance_matrix.to_dense()
    assert torch.allclose(mean, reference.mean, atol=1e-6)
    assert torch.allclose(var, cov.diagonal(), atol=1e-6) and torch.allclose(cov_last, cov[:, -1], atol=1e-6)


def test_prob_minimum_behind_reads_the_right_direction():
    falling = torch.linspace(1, 0, 20, dtype=torch.float64)
    rising_end = torch.cat([falling, torch.linspace(0, 1, 10, dtype=torch.float64)])
    tight = lambda n: (torch.full((n,), 1e-4, dtype=torch.float64), torch.zeros(n, dtype=torch.float64))  # noqa: E731
    assert prob_minimum_behind(falling, *tight(20)) < 0.01
    assert prob_minimum_behind(rising_end, *tight(30)) > 0.99


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"warmup_type": "cubic"}, "'warmup_type'"),
        ({"decay_type": "step"}, "accepted values: 'linear', 'cosine', 'constant_cosine'"),
        ({"max_warmup_fraction": 1.5}, "'max_warmup_fraction'"),
        ({"min_votes": 9}, "'min_votes'"),
        ({"confidence": "high"}, "'confidence' must be a number"),
        ({"patiance": 3}, "unknown option(s) 'patiance'"),
    ],
)
def test_bad_options_raise_one_clear_error(options, fragment):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=HINT)
    with pytest.raises(ValueError) as info:
        build_scheduler("autolr_gp", optimizer, num_warmup_steps=0, num_training_steps=100, **options)
    assert fragment in str(info.value)


def test_state_dict_is_weights_only_loadable(tmp_path):
    scheduler, _ = drive(valley, steps=300)
    torch.save(scheduler.state_dict(), tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    assert state["switch_step"] == scheduler.switch_step
    assert len(state["losses"]) == len(scheduler.losses) > 0
    assert [v for v in state["losses"] if v == v] == [v for v in scheduler.losses if v == v]


def test_warns_when_no_loss_ever_arrives():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=HINT)
    scheduler = AutoLRGP(optimizer, 100)
    with pytest.warns(RuntimeWarning, match="without receiving a single loss"):
        for _ in range(6):
            optimizer.step()
            scheduler.step()


def test_rollback_restores_weights_and_optimizer_state_from_near_the_minimum(tmp_path):
    """With rollback, the switch puts the parameters and momentum back to the copy taken at the
    last test step whose loss EMA was at its running minimum: before the switch, after the valley."""
    generator = torch.Generator().manual_seed(0)
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([param], lr=HINT, momentum=0.9)
    scheduler = AutoLRGP(optimizer, 1000, rollback="minimum", backoff=0.5, **WIDE)
    history, lrs = [], []  # parameters and momentum after each step
    while scheduler.phase == "warmup":
        lrs.append(optimizer.param_groups[0]["lr"])
        param.grad = torch.ones(3)
        optimizer.step()
        history.append((param.detach().clone(), optimizer.state[param]["momentum_buffer"].clone()))
        scheduler.observe(valley(len(lrs) - 1, lrs[-1], generator))
        scheduler.step()
    assert scheduler.switch_reason == "gp_minimum"
    best_step = next(i for i, lr in enumerate(lrs) if lr >= BEST_LR)
    snap = scheduler.rolled_back_to
    assert best_step < snap < scheduler.switch_step
    weights, momentum = history[snap - 1]  # the state after `snap` optimizer steps
    assert torch.equal(param.detach(), weights) and not torch.equal(weights, history[-1][0])
    assert torch.equal(optimizer.state[param]["momentum_buffer"], momentum)
    assert scheduler.switch_factor == pytest.approx(0.5 * scheduler.warmup_factor(scheduler.minimum_step))
    assert scheduler.decisions()["rolled_back_to_step"] == snap
    # The in-memory copy never reaches the checkpoint, and the state loads weights_only.
    torch.save(scheduler.state_dict(), tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    assert "_snapshots" not in state and state["rolled_back_to"] == snap


def test_without_rollback_the_weights_are_left_alone():
    generator = torch.Generator().manual_seed(0)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=HINT)
    scheduler = AutoLRGP(optimizer, 1000, **WIDE)
    while scheduler.phase == "warmup":
        lr = optimizer.param_groups[0]["lr"]
        param.grad = torch.ones(1)
        optimizer.step()
        after = param.detach().clone()
        scheduler.observe(valley(scheduler.last_epoch, lr, generator))
        scheduler.step()
    assert scheduler.switch_reason == "gp_minimum" and scheduler.rolled_back_to == -1
    assert torch.equal(param.detach(), after)


def test_rollback_to_the_start_restores_the_weights_after_the_first_step():
    """``rollback="start"``: one copy after the first step, restored at a switch by the test (in
    fine-tuning the weights near the minimum are already damaged; the start's are not)."""
    generator = torch.Generator().manual_seed(0)
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([param], lr=HINT, momentum=0.9)
    scheduler = AutoLRGP(optimizer, 1000, rollback="start", backoff=0.3, **WIDE)
    first = None
    while scheduler.phase == "warmup":
        lr = optimizer.param_groups[0]["lr"]
        param.grad = torch.ones(3)
        optimizer.step()
        first = first or (param.detach().clone(), optimizer.state[param]["momentum_buffer"].clone())
        scheduler.observe(valley(scheduler.last_epoch, lr, generator))
        scheduler.step()
    assert scheduler.switch_reason == "gp_minimum" and scheduler.rolled_back_to == 1 and scheduler.num_snapshots == 1
    assert torch.equal(param.detach(), first[0]) and torch.equal(optimizer.state[param]["momentum_buffer"], first[1])
    assert scheduler.switch_factor == pytest.approx(0.3 * scheduler.warmup_factor(scheduler.minimum_step))


def test_rollback_on_the_ramp_restores_the_copy_taken_where_the_lr_was_the_backoff_lr():
    """``rollback="ramp"``: a copy each time the warmup LR has grown √10-fold (the last
    ``rollback_copies``, 4, kept); a switch by the test restores the newest copy whose LR is at most the
    back-off LR, so the state goes back to where the ramp passed that LR, not to the start."""
    generator = torch.Generator().manual_seed(0)
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([param], lr=HINT, momentum=0.9)
    scheduler = AutoLRGP(optimizer, 1000, rollback="ramp", backoff=0.3, min_lr_ratio=0.01, max_lr_ratio=1e3)
    history, kept = [], []
    while scheduler.phase == "warmup":
        lr = optimizer.param_groups[0]["lr"]
        param.grad = torch.ones(3)
        optimizer.step()
        history.append((param.detach().clone(), optimizer.state[param]["momentum_buffer"].clone()))
        scheduler.observe(valley(scheduler.last_epoch, lr, generator))
        scheduler.step()
        kept.append([step for step, _, _ in scheduler._snapshots])
    assert scheduler.switch_reason == "gp_minimum"
    assert max(len(k) for k in kept) == scheduler.rollback_copies == 4 and scheduler.num_snapshots > 4 and scheduler._snapshots == []
    copies = kept[-2]  # the copies held when the test fired
    factors = [scheduler.warmup_factor(step) for step in copies]
    assert all(b / a == pytest.approx(10**0.5, rel=0.05) for a, b in zip(factors, factors[1:]))
    snap = scheduler.rolled_back_to
    back_off = scheduler.switch_factor
    assert back_off == pytest.approx(0.3 * scheduler.warmup_factor(scheduler.minimum_step))
    assert snap == max(step for step in copies if scheduler.warmup_factor(step) <= back_off)
    assert 1 < snap < scheduler.minimum_step < scheduler.switch_step
    weights, momentum = history[snap - 1]
    assert torch.equal(param.detach(), weights) and torch.equal(optimizer.state[param]["momentum_buffer"], momentum)
    with pytest.raises(ValueError, match="rollback_copies"):
        AutoLRGP(optimizer, 100, rollback="ramp", rollback_copies=0)


def test_backoff_also_applies_at_the_warmup_cap():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=HINT)
    scheduler = AutoLRGP(optimizer, 100, backoff=0.3, rollback="start")
    for _ in range(50):
        optimizer.step()
        scheduler.observe(1.0)  # flat: the test never fires
        scheduler.step()
    assert scheduler.switch_reason == "warmup_cap" and scheduler.rolled_back_to == -1
    assert scheduler.switch_factor == pytest.approx(0.3 * scheduler.max_lr_ratio)
    with pytest.raises(ValueError, match="rollback"):
        AutoLRGP(optimizer, 100, rollback=True)


def test_diagnostics_are_finite_and_the_loss_ema_keeps_tracking_after_the_switch():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=HINT)
    scheduler = AutoLRGP(optimizer, 40)
    assert "autolr_gp/smoothed_loss" not in scheduler.diagnostics()  # no loss yet: left out, not NaN
    losses = [2.0] * 20 + [float("nan")] + [2.0 * 0.8 ** k for k in range(19)]
    logged = []
    for loss in losses:
        optimizer.step()
        scheduler.observe(loss)
        scheduler.step()
        logged.append(scheduler.diagnostics())
    assert scheduler.phase == "decay"
    assert all(math.isfinite(v) for entry in logged for v in entry.values())
    assert "autolr_gp/switch_lr_factor" not in logged[0] and "autolr_gp/switch_lr_factor" in logged[-1]
    assert logged[-1]["autolr_gp/smoothed_loss"] < 0.5 * logged[20]["autolr_gp/smoothed_loss"]  # it follows the fall
    assert logged[-1]["autolr_gp/nonfinite_losses"] == 1


@pytest.mark.parametrize("steps", [1, 2, 15])
def test_degenerate_lengths_run_and_warn_that_no_test_fits(steps):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=HINT)
    with pytest.warns(RuntimeWarning, match="too short for a test"):
        scheduler = AutoLRGP(optimizer, steps)
    for _ in range(steps):
        optimizer.step()
        scheduler.observe(1.0)
        scheduler.step()
    assert all(math.isfinite(g["lr"]) and g["lr"] >= 0 for g in optimizer.param_groups)
