"""autodrop and lrtuner end to end: unmodified Trainer, two processes, resume, plain Accelerate.

The task is a multi-target linear regression (16.6k parameters, label noise): at a fixed LR SGD
first moves steadily (small angles between successive moves), then rattles around the minimum
(angles saturate near 95°), which is what AutoDrop waits for; an LR 20x too low leaves LRTuner
something to correct.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from accelerate import debug_launcher
from torch import nn
from transformers import Trainer, TrainerCallback

import hf_autolr  # noqa: F401 - registers lr_scheduler_type="autodrop" / "lrtuner"
from tiny import LRRecorder, training_args

AUTODROP_LR, AUTODROP_KWARGS = 0.2, {"window": 4}
LRTUNER_LR, LRTUNER_KWARGS = 0.01, {"probe_steps": 4, "tune_every": 13, "explore_fraction": 0.75}
SETUPS = {"autodrop": (AUTODROP_LR, AUTODROP_KWARGS), "lrtuner": (LRTUNER_LR, LRTUNER_KWARGS)}


class MultiTargetRegressor(nn.Module):
    """``y = W x + b`` for 256 targets; loss = half the squared error summed over targets."""

    def __init__(self, dim: int = 64, targets: int = 256) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, targets)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = self.linear(x)
        result = {"logits": out}
        if labels is not None:
            result["loss"] = ((out - labels) ** 2).sum(-1).mean() / 2
        return result


class MultiTargetData(torch.utils.data.Dataset):
    def __init__(self, n: int = 512, dim: int = 64, targets: int = 256, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, dim, generator=g)
        self.y = self.x @ torch.randn(dim, targets, generator=g) + 0.5 * torch.randn(n, targets, generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


class DecisionRecorder(TrainerCallback):
    """After every ``lr_scheduler.step()``: AutoDrop's ω, and LRTuner's restores checked against
    the live model weights recorded (independently of the scheduler) when each round began."""

    def __init__(self) -> None:
        self.omegas: list[tuple[int, float, float]] = []  # (step, ω, smoothed ω) at each new ω
        self.restores_checked = 0
        self.restores_wrong = 0
        self._round_start: list[torch.Tensor] | None = None
        self._prev = (-1, 0, 0)  # candidate index, rounds, raises + lowers after the last step

    def on_step_end(self, args, state, control, lr_scheduler=None, model=None, **kwargs):
        s = lr_scheduler
        if s.name == "autodrop":
            if s.omega == s.omega and (not self.omegas or s.omega != self.omegas[-1][1]):
                self.omegas.append((state.global_step, s.omega, s.omega_smoothed))
            return
        weights = [p.detach().clone() for p in model.parameters()]
        index, moves = s.candidate_index, s.raises + s.lowers
        prev_index, prev_rounds, prev_moves = self._prev
        restored = (index > 0 and index == prev_index + 1) or (s.rounds > prev_rounds and moves > prev_moves)
        if restored and self._round_start is not None:
            self.restores_checked += 1
            self.restores_wrong += not all(torch.equal(a, b) for a, b in zip(weights, self._round_start))
        if index == 0 and prev_index == -1:
            self._round_start = weights
        self._prev = (index, s.rounds, moves)


def build_trainer(out_dir, method, callbacks=(), lr_scheduler_kwargs=None, **overrides):
    lr, kwargs = SETUPS[method]
    torch.manual_seed(0)
    settings = dict(
        lr_scheduler_type=method,
        lr_scheduler_kwargs=kwargs if lr_scheduler_kwargs is None else lr_scheduler_kwargs,
        learning_rate=lr,
        num_train_epochs=4,
        max_grad_norm=0.0,
        logging_steps=8,
    )
    settings.update(overrides)
    return Trainer(
        model=MultiTargetRegressor(),
        args=training_args(out_dir, **settings),
        train_dataset=MultiTargetData(),
        callbacks=list(callbacks),
    )


def run(out_dir, method, resume=None, **overrides):
    recorder, decisions = LRRecorder(), DecisionRecorder()
    trainer = build_trainer(out_dir, method, callbacks=[recorder, decisions], **overrides)
    trainer.train(resume_from_checkpoint=resume)
    return trainer, recorder.lrs, decisions


def logged(trainer):
    return [entry for entry in trainer.state.log_history if "loss" in entry]


# -- unmodified Trainer ---------------------------------------------------------------------------
def test_autodrop_in_trainer_drops_once_the_angle_saturates(tmp_path):
    trainer, lrs, decisions = run(tmp_path, "autodrop")
    scheduler = trainer.lr_scheduler
    assert scheduler.window == 4 and scheduler.threshold == 0.1  # paper's θ and m, small k
    assert scheduler.drops >= 1
    first = scheduler.drop_steps[0]
    assert lrs[:first] == [AUTODROP_LR] * first
    assert lrs[first] == pytest.approx(0.95 * AUTODROP_LR)
    # ω rose before the first drop, and the drop came on the plateau
    omegas = decisions.omegas
    at_drop = [smoothed for step, _, smoothed in omegas if step <= first][-1]
    assert omegas[0][1] < 0.9 * at_drop
    assert max(omega for _, omega, _ in omegas) < 1.1 * at_drop
    entries = logged(trainer)
    assert all("autodrop/drops" in e and "autodrop/lr_factor" in e for e in entries)
    assert any("autodrop/omega" in e and "autodrop/omega_smoothed" in e for e in entries)
    assert entries[-1]["autodrop/drops"] == scheduler.drops
    assert entries[-1]["learning_rate"] == pytest.approx(AUTODROP_LR * scheduler.lr_factor)


def test_lrtuner_in_trainer_raises_a_too_low_lr_and_restores_the_live_weights(tmp_path):
    trainer, lrs, decisions = run(tmp_path, "lrtuner")
    scheduler = trainer.lr_scheduler
    diag = scheduler.diagnostics()
    assert scheduler.last_epoch == trainer.state.global_step == 128  # probe steps are training steps
    assert diag["lrtuner/rounds"] >= 3 and diag["lrtuner/raises"] > diag["lrtuner/lowers"]
    assert scheduler.exploit_factor > 1.0 and diag["lrtuner/phase"] == 2.0
    assert max(lrs) == pytest.approx(LRTUNER_LR * scheduler.exploit_factor)
    assert diag["lrtuner/discarded_steps"] >= 2 * 4 * diag["lrtuner/rounds"]
    # every restore put the model's own weights back to where the round began
    assert decisions.restores_checked >= 2 * diag["lrtuner/rounds"] and decisions.restores_wrong == 0
    entries = logged(trainer)
    keys = {"lrtuner/lr_factor", "lrtuner/phase", "lrtuner/probing", "lrtuner/rounds", "lrtuner/discarded_steps"}
    assert all(keys <= set(e) for e in entries)
    assert any(e["lrtuner/probing"] == 1.0 for e in entries) and entries[-1]["lrtuner/phase"] == 2.0


@pytest.mark.parametrize(
    ("method", "kwargs", "message"),
    [
        ("autodrop", {"windw": 3}, "unknown option.*'windw'"),
        ("autodrop", {"drop_factor": 1.5}, "'drop_factor'"),
        ("autodrop", '{"rule": "v1"}', "'steps_per_epoch' is required"),
        ("lrtuner", {"probe": "inline"}, "'probe'.*'restore', 'off'"),
        ("lrtuner", '{"probe_steps": 2}', "'probe_steps'"),
    ],
)
def test_bad_lr_scheduler_kwargs_raise_a_value_error_naming_the_option(tmp_path, method, kwargs, message):
    trainer = build_trainer(tmp_path, method, lr_scheduler_kwargs=kwargs)
    with pytest.raises(ValueError, match=message):
        trainer.train()


# -- two processes ----------------------------------------------------------------------------------
def _both_methods_on_each_rank(out_dir: str) -> None:
    import torch.distributed as dist

    import hf_autolr  # noqa: F401 - registers the names in this process too

    result = {"world_size": dist.get_world_size() if dist.is_initialized() else 1}
    for method in SETUPS:
        # Each rank reads different batches: local losses differ, only the reduction agrees.
        trainer, lrs, decisions = run(
            os.path.join(out_dir, method), method, per_device_train_batch_size=8, ddp_find_unused_parameters=False
        )
        weights = torch.cat([p.detach().reshape(-1) for p in trainer.model.parameters()])
        result[method] = {
            "lrs": lrs,
            "steps": trainer.state.global_step,
            "diagnostics": trainer.lr_scheduler.diagnostics(),
            "restores": [decisions.restores_checked, decisions.restores_wrong],
            "weights": weights.tolist(),
        }
    rank = dist.get_rank() if dist.is_initialized() else 0
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


def test_two_processes_take_identical_lrs_and_restore_identically(tmp_path, monkeypatch):
    # Without it Accelerate gives each rank psutil's physical-core count of threads: 4x slower here.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    debug_launcher(_both_methods_on_each_rank, args=(str(tmp_path),), num_processes=2)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    for method in SETUPS:
        a, b = ranks[0][method], ranks[1][method]
        assert a["steps"] == b["steps"] == len(a["lrs"]) == 128
        assert a["lrs"] == b["lrs"]  # every step, exactly
        assert a["diagnostics"] == b["diagnostics"]
        assert a["weights"] == b["weights"]  # DDP replicas still identical after the restores
    assert ranks[0]["autodrop"]["diagnostics"]["autodrop/drops"] >= 1
    tuner = ranks[0]["lrtuner"]
    assert tuner["diagnostics"]["lrtuner/rounds"] >= 3 and tuner["diagnostics"]["lrtuner/discarded_steps"] > 0
    for rank in ranks:
        checked, wrong = rank["lrtuner"]["restores"]
        assert checked >= 2 * tuner["diagnostics"]["lrtuner/rounds"] and wrong == 0


# -- resume -----------------------------------------------------------------------------------------
def _pick_checkpoint(run_dir, wanted):
    """The first ``checkpoint-N`` whose ``scheduler.pt`` (loaded ``weights_only``) satisfies ``wanted``."""
    steps = sorted(int(p.name.split("-")[1]) for p in run_dir.glob("checkpoint-*"))
    for step in steps:
        state = torch.load(run_dir / f"checkpoint-{step}" / "scheduler.pt", weights_only=True)
        assert state["last_epoch"] == step
        if wanted(state):
            return step, state
    raise AssertionError("no checkpoint in the wanted state")


@pytest.mark.parametrize(
    ("method", "save", "wanted"),
    [
        # after the first drop, in the middle of a window (the window sum is carried)
        ("autodrop", {}, lambda s: s["drops"] >= 1 and s["steps_in_window"] > 0),
        # mid-probe (a candidate after a restore) in a round after a decision: snapshot carried
        ("lrtuner", {"optim_args": "momentum=0.9"}, lambda s: s["candidate_index"] >= 1 and s["rounds"] >= 1),
    ],
    ids=["autodrop", "lrtuner-mid-probe"],
)
def test_resume_reproduces_the_uninterrupted_run(tmp_path, method, save, wanted):
    options = dict(save_strategy="steps", save_steps=5, **save)
    full, full_lrs, _ = run(tmp_path, method, **options)
    step, state = _pick_checkpoint(tmp_path, wanted)
    if method == "lrtuner":
        assert state["snapshot_params"] and all(isinstance(t, torch.Tensor) for t in state["snapshot_params"])
        assert any(s for s in state["snapshot_state"])  # momentum buffers are part of the snapshot
    resumed, resumed_lrs, _ = run(tmp_path, method, resume=str(tmp_path / f"checkpoint-{step}"), **options)
    assert len(set(full_lrs)) > 2
    assert resumed_lrs == full_lrs[step:]
    assert resumed.lr_scheduler.diagnostics() == full.lr_scheduler.diagnostics()
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)


# -- plain Accelerate loop --------------------------------------------------------------------------
def _loop(method, use_accelerate, epochs=3, accumulation=2):
    """LRs of a loop with ``accumulation`` micro-batches per step: Accelerate + feed, or plain torch."""
    from accelerate import Accelerator

    from hf_autolr.integrations import AcceleratorFeedback

    lr, kwargs = SETUPS[method]
    steps = epochs * len(MultiTargetData()) // 8 // accumulation
    torch.manual_seed(0)
    model = MultiTargetRegressor()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.5)
    loader = torch.utils.data.DataLoader(MultiTargetData(), batch_size=8)
    if use_accelerate:  # the scheduler is built on the prepared optimizer and is not prepared
        accelerator = Accelerator(cpu=True, gradient_accumulation_steps=accumulation)
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    scheduler = hf_autolr.build_scheduler(method, optimizer, 0, steps, **kwargs)
    if use_accelerate:
        feed = AcceleratorFeedback(accelerator, scheduler)
    lrs = []
    micro_losses = []
    for i, batch in enumerate(batch for _ in range(epochs) for batch in loader):
        if use_accelerate:
            with accelerator.accumulate(model):
                loss = model(**batch)["loss"]
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    lrs.append(optimizer.param_groups[0]["lr"])
                optimizer.step()
                optimizer.zero_grad()
                feed(loss)
            continue
        loss = model(**batch)["loss"]
        (loss / accumulation).backward()
        micro_losses.append(loss.detach())
        if (i + 1) % accumulation == 0:
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            optimizer.zero_grad()
            scheduler.observe(torch.stack(micro_losses).mean())
            micro_losses = []
            scheduler.step()
    weights = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return lrs, scheduler, weights


@pytest.mark.parametrize("method", ["autodrop", "lrtuner"])
def test_plain_accelerate_loop_matches_a_plain_torch_loop(method):
    torch_lrs, torch_sched, torch_weights = _loop(method, use_accelerate=False)
    acc_lrs, acc_sched, acc_weights = _loop(method, use_accelerate=True)
    assert acc_sched.last_epoch == len(acc_lrs) == 96
    assert acc_lrs == torch_lrs
    assert torch.equal(acc_weights, torch_weights)  # LRTuner's in-step restores hit the real weights
    assert acc_sched.diagnostics() == torch_sched.diagnostics()
    if method == "autodrop":
        assert acc_sched.drops >= 1
    else:
        assert acc_sched.rounds >= 3 and acc_sched.discarded_steps > 0 and len(set(acc_lrs)) > 3
