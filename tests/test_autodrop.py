"""AutoDrop: angle bookkeeping, the UAI-2024 drop rule, the v1 rule, memory, resume, sharding."""

from __future__ import annotations

import io
import math
import os

import pytest
import torch
from torch import nn

from gloo_workers import run_workers

from hf_autolr.bench.runner import tensor_bytes
from hf_autolr.registry import build_scheduler
from hf_autolr.schedulers.autodrop import AutoDrop, gaussian_smooth
from hf_autolr.schedulers.param_subset import StridedGather, gather, plan_subset


def _points_scheduler(dim=2, **options):
    """A scheduler over one free parameter whose successive values we set by hand."""
    x = nn.Parameter(torch.zeros(dim))
    opt = torch.optim.SGD([x], lr=1.0)
    options.setdefault("track_fraction", 1.0)
    return x, opt, AutoDrop(opt, 1000, **options)


def _visit(x, sched, points):
    """Set the parameter to each point in turn (as if an optimizer step got it there), step."""
    for point in points:
        with torch.no_grad():
            x.copy_(torch.tensor(point, dtype=x.dtype))
        sched.optimizer.step()  # no gradients: a no-op that keeps the step order torch expects
        sched.step()


def test_angle_is_between_successive_window_mean_displacements():
    x, _, sched = _points_scheduler(window=1)
    _visit(x, sched, [(0.0, 0.0), (1.0, 0.0), (2.0, 1.0)])  # displacements (1,0) then (1,1)
    assert sched.diagnostics()["autodrop/omega"] == pytest.approx(45.0)
    _visit(x, sched, [(1.0, 1.0)])  # (1,1) then (-1,0): 135°
    assert sched.omega == pytest.approx(135.0)

    x, _, sched = _points_scheduler(window=2)
    # window means (0.5,0), (2.5,0), (2.5,2): displacements (2,0) then (0,2): 90°
    _visit(x, sched, [(0.0, 0.0), (1.0, 0.0), (2.0, 0.0), (3.0, 0.0), (2.0, 1.0), (3.0, 3.0)])
    assert sched.omega == pytest.approx(90.0)


def test_constant_omega_drops_after_buffer_fills_and_smoothed_value_repeats():
    # Displacements alternate e1, e2 so every ω is 90°. ω exists from the 3rd point, B holds 10
    # values at point 12 (first C, becomes C_prev), C repeats at point 13: drop after step 13.
    # B and C_prev are then reset, so the next drop needs 11 more points: step 24.
    x, opt, sched = _points_scheduler(window=1, min_lr_ratio=0.0)
    points, p = [], torch.zeros(2)
    for i in range(30):
        points.append(tuple(p.tolist()))
        p = p + torch.eye(2)[i % 2]
    _visit(x, sched, points)
    assert sched.drop_steps == [13, 24]
    assert sched.lr_factor == pytest.approx(0.95**2)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.95**2)
    assert sched.diagnostics()["autodrop/omega_smoothed"] == pytest.approx(90.0)


def _rotating_points(omegas):
    """Points whose successive displacements (unit length) turn by the given angles (degrees)."""
    points, p, heading = [(0.0, 0.0)], torch.zeros(2, dtype=torch.float64), 0.0
    for turn in [0.0] + list(omegas):
        heading += math.radians(turn)
        p = p + torch.tensor([math.cos(heading), math.sin(heading)], dtype=torch.float64)
        points.append(tuple(p.tolist()))
    return points


def test_signed_test_drops_while_omega_falls_absolute_test_does_not():
    falling = [80.0 - 2.0 * i for i in range(30)]  # ω falls 2° per window: |ΔC| > 0.1 always
    for signed, expect_drop in [(False, False), (True, True)]:
        x, _, sched = _points_scheduler(window=1, signed_test=signed)
        x.data = x.data.double()
        _visit(x, sched, _rotating_points(falling))
        assert (sched.drops > 0) == expect_drop


def test_gaussian_smoothing_weights_recent_values():
    assert gaussian_smooth([5.0] * 10, 10) == pytest.approx(5.0)
    rising = [float(i) for i in range(10)]
    smoothed = gaussian_smooth(rising, 10)
    assert sum(rising) / 10 < smoothed < rising[-1]  # causal: pulled toward the newest value


def _noisy_quadratic(sched_options, steps=1500, dim=2000, lr=0.02, seed=0):
    """SGD on 0.5·Σh x² with unit gradient noise; returns (scheduler, per-window records, lrs)."""
    torch.manual_seed(seed)
    h = torch.linspace(0.3, 1.0, dim)
    x = nn.Parameter(torch.full((dim,), 5.0))
    opt = torch.optim.SGD([x], lr=lr)
    sched = AutoDrop(opt, steps, **sched_options)
    noise = torch.Generator().manual_seed(seed)
    records, lrs = [], []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        x.grad = h * x.detach() + torch.randn(dim, generator=noise)
        opt.step()
        before = sched.omega
        sched.step()
        if not math.isnan(sched.omega) and (math.isnan(before) or sched.omega != before):
            records.append((sched.last_epoch, sched.omega, sched.omega_smoothed, sched.drops))
    return sched, records, lrs


def test_omega_rises_then_saturates_and_the_first_drop_comes_at_saturation():
    # min_lr_ratio=1 pins the LR, so the drop decisions are counted while ω follows one fixed-LR run.
    sched, records, lrs = _noisy_quadratic({"window": 10, "min_lr_ratio": 1.0})
    assert set(lrs) == {0.02}
    omegas = [r[1] for r in records]
    plateau = sorted(omegas[len(omegas) // 2 :])[len(omegas) // 4]  # median of the second half
    assert omegas[0] < 0.3 * plateau and plateau > 60.0  # it rises from small angles ...
    first_drop = next(i for i, r in enumerate(records) if r[3] > 0)
    assert first_drop >= 25  # ... over many windows, without a drop ...
    assert records[first_drop][2] >= 0.9 * plateau  # ... and drops once the smoothed ω has saturated
    assert all(r[2] < 0.9 * plateau or math.isnan(r[2]) for r in records[:5])
    assert sched.drops >= 3  # at saturation the drops keep coming (many small drops)


def test_lr_drops_by_the_factor_and_never_below_the_floor():
    sched, records, lrs = _noisy_quadratic({"window": 10, "drop_factor": 0.5, "min_lr_ratio": 0.2})
    factors = [lr / 0.02 for lr in lrs]
    assert min(factors) == pytest.approx(0.2)
    assert all(f >= 0.2 - 1e-12 for f in factors)
    distinct = sorted(set(round(f, 12) for f in factors), reverse=True)
    assert distinct == [1.0, 0.5, 0.25, 0.2]
    # the LR changes exactly at the recorded drop steps
    changes = [t for t in range(1, len(lrs)) if lrs[t] != lrs[t - 1]]
    assert changes == sched.drop_steps[: len(changes)]
    assert sched.drops > 3  # drops keep being decided at the floor


def test_warmup_ramps_then_tracking_starts_after_it():
    x = nn.Parameter(torch.zeros(4))
    opt = torch.optim.SGD([x], lr=0.1)
    sched = AutoDrop(opt, 100, num_warmup_steps=10, window=2)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:3] == pytest.approx([0.0, 0.01, 0.02])
    assert lrs[10:] == pytest.approx([0.1, 0.1])
    assert sched.steps_in_window == 0 and sched.num_points == 1  # one window (steps 11-12) done


@pytest.mark.parametrize("rule", ["uai2024", "v1"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_memory_overhead_is_at_most_one_parameter_copy(rule, dtype):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32), nn.LayerNorm(32)).to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    extra = {"steps_per_epoch": 5} if rule == "v1" else {}
    sched = AutoDrop(opt, 100, rule=rule, **extra)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    state_bytes = tensor_bytes(sched.state_dict())
    assert 0.9 * param_bytes <= state_bytes <= param_bytes
    # full tracking is available on request, at the documented cost (3 or 2 fp32 vectors)
    full = AutoDrop(opt, 100, rule=rule, track_fraction=1.0, **extra)
    n = sum(p.numel() for p in model.parameters())
    assert tensor_bytes(full.state_dict()) == (3 if rule == "uai2024" else 2) * 4 * n
    capped = AutoDrop(opt, 100, rule=rule, max_tracked=1000, **extra)
    assert capped.tracked_fraction * n <= 1000


def test_subset_angle_tracks_the_full_angle():
    results = {}
    for fraction in (1.0, None):
        sched, records, _ = _noisy_quadratic({"window": 10, "min_lr_ratio": 1.0, "track_fraction": fraction},
                                             steps=600, dim=30000)
        results[fraction] = [r[1] for r in records]
    full, subset = results[1.0], results[None]
    assert len(full) == len(subset)
    assert max(abs(a - b) for a, b in zip(full, subset)) < 1.5  # degrees, 10k of 30k tracked
    assert sum(abs(a - b) for a, b in zip(full, subset)) / len(full) < 0.5


def _train_with_resume(options, steps, resume_at, dim=300, lr=0.05):
    """LRs of an uninterrupted run, and of one rebuilt from checkpoints at ``resume_at``."""
    h = torch.linspace(0.3, 1.0, dim)
    noise = torch.randn(steps, dim, generator=torch.Generator().manual_seed(1))

    def build(x_init, opt_state=None, sched_state=None):
        x = nn.Parameter(x_init.clone())
        opt = torch.optim.SGD([x], lr=lr, momentum=0.9)
        sched = AutoDrop(opt, steps, **options)
        if opt_state is not None:
            opt.load_state_dict(opt_state)
            sched.load_state_dict(sched_state)
        return x, opt, sched

    def save(obj):
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        buffer.seek(0)
        return torch.load(buffer, weights_only=True)

    runs = []
    for checkpoints in ([], resume_at):
        x, opt, sched = build(torch.full((dim,), 3.0))
        lrs = []
        for t in range(steps):
            if t in checkpoints:
                x, opt, sched = build(x.detach(), save(opt.state_dict()), save(sched.state_dict()))
            lrs.append(opt.param_groups[0]["lr"])
            x.grad = h * x.detach() + noise[t]
            opt.step()
            sched.step()
        runs.append((lrs, sched.drop_steps, x.detach().clone()))
    return runs


@pytest.mark.parametrize(
    "options",
    [
        {"window": 5, "min_lr_ratio": 0.01, "drop_factor": 0.7},
        {"rule": "v1", "steps_per_epoch": 6, "threshold": 3.0, "extra_epochs": 1},
    ],
)
def test_resume_gives_the_same_lr_sequence(options):
    (lrs, drops, x), (lrs2, drops2, x2) = _train_with_resume(options, 600, resume_at=[101, 250, 333])
    assert len(drops) >= 2  # the run does decide something
    assert lrs == lrs2 and drops == drops2
    assert torch.equal(x, x2)


def test_v1_rule_arms_then_drops_after_extra_epochs():
    sched, records, lrs = _noisy_quadratic(
        {"rule": "v1", "steps_per_epoch": 20, "threshold": 2.0, "extra_epochs": 3, "min_lr_ratio": 0.0}, steps=1500
    )
    assert sched.drops >= 1
    assert lrs[sched.drop_steps[0]] == pytest.approx(0.02 * 0.2)  # v1 default ld_factor
    epochs = [(t - 1) / 20 for t in sched.drop_steps]  # drops happen right after an epoch's first step
    assert all(e == int(e) for e in epochs)
    assert sched.drop_steps[0] > 20 * (3 + 3)  # needs 3 snapshots for ω, one more to compare, +3 epochs
    assert sched.current_threshold == pytest.approx(min(1.0, 2.0 / 0.2 ** sched.drops))


def test_bad_options_raise_clear_errors():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(3))], lr=0.1)
    with pytest.raises(ValueError, match="'rule'.*'uai2024', 'v1'"):
        AutoDrop(opt, 100, rule="v2")
    with pytest.raises(ValueError, match="steps_per_epoch"):
        AutoDrop(opt, 100, rule="v1")
    with pytest.raises(ValueError, match="'extra_epochs'.*only to rule 'v1'"):
        AutoDrop(opt, 100, extra_epochs=3)
    with pytest.raises(ValueError, match="'drop_factor'"):
        AutoDrop(opt, 100, drop_factor=1.5)
    with pytest.raises(ValueError, match="'track_fraction'"):
        AutoDrop(opt, 100, track_fraction=0.0)
    with pytest.raises(ValueError, match="'sharded'"):
        AutoDrop(opt, 100, sharded="yes")
    with pytest.raises(ValueError, match="unknown option"):
        build_scheduler("autodrop", opt, num_training_steps=100, windw=3)


def test_registry_builds_it_without_a_loss():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(3))], lr=0.1)
    sched = build_scheduler("autodrop", opt, num_warmup_steps=0, num_training_steps=20_000)
    assert isinstance(sched, AutoDrop) and sched.needs_loss is False
    assert sched.window == 20  # auto: ~1000 windows per run
    assert set(sched.diagnostics()) == {"autodrop/drops", "autodrop/lr_factor", "autodrop/tracked_fraction"}


def test_mismatched_checkpoint_restarts_statistics_with_a_warning():
    x, opt, sched = _points_scheduler(window=1)
    _visit(x, sched, [(0.0, 0.0), (1.0, 0.0), (2.0, 1.0)])
    state = sched.state_dict()
    other = AutoDrop(torch.optim.SGD([nn.Parameter(torch.zeros(5))], lr=1.0), 1000, window=1, track_fraction=1.0)
    with pytest.warns(UserWarning, match="restart"):
        other.load_state_dict(state)
    assert other.num_points == 0 and other.omega == pytest.approx(45.0) and other.last_epoch == 3
    assert other.track_counts == [5] and other.window_sum.numel() == 5  # its own subset is kept
    x5 = other.optimizer.param_groups[0]["params"][0]
    _visit(x5, other, [(0.0,) * 5, (1.0, 0, 0, 0, 0), (1.0, 1.0, 0, 0, 0)])
    assert other.omega == pytest.approx(90.0)


def test_cached_views_read_what_gather_reads_even_after_the_storage_moves():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(7, 5), nn.Linear(5, 3))
    params = list(model.parameters())
    plan = plan_subset(params, 3, None, None, 0)
    assert 1 < plan.stride and 0 < plan.size < sum(p.numel() for p in params)
    reader, got = StridedGather(plan, sharded=False), torch.zeros(plan.size)
    for step in range(4):
        with torch.no_grad():
            for p in params:
                p.add_(torch.randn_like(p))  # in place, as an optimizer does
        if step == 2:
            params[0].data = params[0].data + 1.0  # new storage, as after model.to()
        expected = torch.zeros(plan.size)
        gather(params, plan, expected, accumulate=True)
        got.zero_()
        reader(params, got, accumulate=True)
        assert torch.equal(got, expected)
    transposed = [nn.Parameter(torch.randn(6, 4).t())]  # not contiguous: read afresh each call
    plan = plan_subset(transposed, 3, 0.5, None, 0)
    reader, got, expected = StridedGather(plan, sharded=False), torch.zeros(plan.size), torch.zeros(plan.size)
    reader(transposed, got, accumulate=False)
    gather(transposed, plan, expected, accumulate=False)
    assert torch.equal(got, expected) and not reader.cacheable


# -- sharded parameters: two gloo ranks, each holding half of the vector ------------------------
def _sharded_worker(rank: int, out_dir: str) -> None:
    full = [(0.0, 0.0, 0.0, 0.0), (1.0, 0.0, 2.0, 0.0), (2.0, 1.0, 3.0, 5.0)]
    x = nn.Parameter(torch.zeros(2))
    sched = AutoDrop(torch.optim.SGD([x], lr=1.0), 100, window=1, track_fraction=1.0, sharded=True)
    for point in full:
        with torch.no_grad():
            x.copy_(torch.tensor(point[2 * rank : 2 * rank + 2]))
        sched.step()
    torch.save(sched.omega, os.path.join(out_dir, f"rank{rank}.pt"))


def test_sharded_parameters_all_reduce_to_the_global_angle(tmp_path):
    run_workers(_sharded_worker, args=(str(tmp_path),))
    results = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    a, b = torch.tensor([1.0, 0.0, 2.0, 0.0]), torch.tensor([1.0, 1.0, 1.0, 5.0])
    expected = math.degrees(math.acos(float(a @ b) / float(a.norm() * b.norm())))
    assert results[0] == pytest.approx(expected, abs=1e-4) and results[1] == pytest.approx(expected, abs=1e-4)
