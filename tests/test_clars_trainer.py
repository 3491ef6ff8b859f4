"""optim="clars" / "lars" / "lamb" / "adamp" in an unmodified Trainer: names, hooks, per-sample norms,
gradient accumulation, clipping scale, autolr_gp combinations, checkpoint/resume, bad names."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments
from transformers.training_args import OptimizerNames

import hf_autolr
from hf_autolr.integrations import ClarsCallback, optimizer_cls_and_kwargs, register_optimizer_names
from hf_autolr.integrations.clars_trainer import attach_clars_callback, per_sample_optimizer
from hf_autolr.optim import CLARS
from tiny import LRRecorder, RegressionData, training_args


class TinyMLP(nn.Module):
    """8-16-1 tanh regressor returning ``{"loss", "logits"}``: two adapted (2-D) tensors, two biases."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = self.net(x).squeeze(-1)
        return {"logits": out, "loss": nn.functional.mse_loss(out, labels)} if labels is not None else {"logits": out}


CLARS_ARGS = dict(optim="clars", learning_rate=0.5, optim_args="trust_coefficient=0.02", weight_decay=1e-4)


def train(tmp_path, name="run", callbacks=(), setup=None, resume=None, trainer_kwargs=None, **overrides):
    torch.manual_seed(0)
    recorder = LRRecorder()
    trainer = Trainer(
        model=TinyMLP(),
        args=training_args(tmp_path / name, **overrides),
        train_dataset=RegressionData(),
        callbacks=[recorder, *callbacks],
        **(trainer_kwargs or {}),
    )
    if setup is not None:
        setup(trainer)
    trainer.train(resume_from_checkpoint=resume)
    return trainer, recorder.lrs


def logged(trainer, key):
    return [entry[key] for entry in trainer.state.log_history if key in entry]


def test_optim_clars_attaches_hooks_and_steps_with_per_sample_norms(tmp_path):
    """No warmup (constant schedule): the optimizer is CLARS, built from the TrainingArguments, its
    hooks cover the 2-D weights, every step used per-sample norms, and the loss falls."""
    trainer, lrs = train(tmp_path, lr_scheduler_type="constant", num_train_epochs=4, logging_steps=4, **CLARS_ARGS)
    optimizer = per_sample_optimizer(trainer.optimizer)
    assert type(optimizer) is CLARS and trainer.args.optim == "clars"
    assert sorted(optimizer.tracker.tracked) == ["net.0.weight", "net.2.weight"]
    group = optimizer.param_groups[0]
    assert group["trust_coefficient"] == 0.02 and group["momentum"] == 0.9 and group["lr"] == 0.5
    assert sorted(g["weight_decay"] for g in optimizer.param_groups) == [0.0, 1e-4]  # biases: no decay
    assert set(lrs) == {0.5}
    assert sum(isinstance(c, ClarsCallback) for c in trainer.callback_handler.callbacks) == 1
    # diagnostics in every training log: no LARS fallback, and n_l > ||grad_l|| (samples disagree)
    assert logged(trainer, "clars/lars_fallback_tensors") == [0.0] * 16
    assert all(0 < c < 1 for c in logged(trainer, "clars/coherence_mean"))
    losses = logged(trainer, "loss")
    assert losses[-1] < 0.1 * losses[0]


def test_gradient_accumulation_samples_are_examples_of_the_global_batch(tmp_path):
    """2 micro-batches of 8 = one batch of 16 (same examples): same CLARS steps. Clipping is active
    (max_grad_norm=1.0), and the DDP path (the factor computed from the Trainer's clip, given to
    ``set_grad_scale``) gives the same steps as CLARS's own single-process measurement."""
    common = dict(lr_scheduler_type="cosine", num_train_epochs=2, logging_steps=4, **CLARS_ARGS)
    whole, _ = train(tmp_path, "whole", per_device_train_batch_size=16, **common)
    split, _ = train(tmp_path, "split", per_device_train_batch_size=8, gradient_accumulation_steps=2, **common)
    explicit, _ = train(
        tmp_path,
        "explicit",
        per_device_train_batch_size=8,
        gradient_accumulation_steps=2,
        setup=lambda t: attach_clars_callback(t, explicit_grad_scale=True),
        **common,
    )
    assert whole.state.global_step == split.state.global_step == 32
    callback = next(c for c in explicit.callback_handler.callbacks if isinstance(c, ClarsCallback))
    assert callback.explicit_grad_scale is True and 0 < callback.last_grad_scale < 1  # clipped
    assert max(logged(whole, "grad_norm")) > 1.0
    for a, b, c in zip(whole.model.parameters(), split.model.parameters(), explicit.model.parameters()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
        assert torch.allclose(b, c, rtol=1e-4, atol=1e-6)
    # and the per-sample denominator mattered: LARS on the same data ends elsewhere
    lars, _ = train(tmp_path, "lars", per_device_train_batch_size=16, **{**common, "optim": "lars"})
    assert not torch.allclose(whole.model.net[0].weight, lars.model.net[0].weight, rtol=1e-3)


@pytest.mark.parametrize("route", ["optim=lamb", "optimizer_cls_and_kwargs=adamp"])
def test_autolr_gp_drives_lamb_and_adamp(tmp_path, route):
    import pytorch_optimizer

    overrides = dict(lr_scheduler_type="autolr_gp", num_train_epochs=8, learning_rate=0.01, adam_beta2=0.99)
    if route == "optim=lamb":
        expected, overrides["optim"] = pytorch_optimizer.Lamb, "lamb"
        trainer_kwargs = None
    else:
        expected = pytorch_optimizer.AdamP
        args = training_args(tmp_path, **overrides)
        trainer_kwargs = {"optimizer_cls_and_kwargs": optimizer_cls_and_kwargs(args, "adamp")}

    observed: list[int] = []

    class Count(TrainerCallback):
        def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
            observed.append(lr_scheduler.num_observed)

    trainer, lrs = train(tmp_path, callbacks=[Count()], trainer_kwargs=trainer_kwargs, logging_steps=8, **overrides)
    optimizer = trainer.optimizer.optimizer
    assert type(optimizer) is expected
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.99)  # from adam_beta1 / adam_beta2
    assert isinstance(trainer.lr_scheduler, hf_autolr.FeedbackScheduler)
    assert observed == list(range(1, trainer.state.global_step + 1))  # one loss per optimizer step
    assert all(b > a for a, b in zip(lrs[:10], lrs[1:10]))  # warmup: the LR rose
    assert lrs[9] > 1.5 * lrs[0]
    losses = logged(trainer, "loss")
    assert losses[-1] < 0.25 * losses[0]


def test_checkpoint_resume_gives_identical_lrs_and_parameters(tmp_path):
    """CLARS + autolr_gp: momentum buffers and the schedule survive a checkpoint; a resumed run ends
    with exactly the weights of the uninterrupted one."""
    common = dict(
        lr_scheduler_type="autolr_gp",
        lr_scheduler_kwargs={"max_lr_ratio": 10.0},
        num_train_epochs=5,
        save_strategy="steps",
        save_steps=30,
        **CLARS_ARGS,
    )
    full, full_lrs = train(tmp_path, "full", **common)
    checkpoint = tmp_path / "full" / "checkpoint-30"
    state = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    assert len(state["state"]) == 4 and all("momentum_buffer" in s for s in state["state"].values())
    resumed, resumed_lrs = train(tmp_path, "full", resume=str(checkpoint), **common)
    assert type(per_sample_optimizer(resumed.optimizer)) is CLARS
    assert per_sample_optimizer(resumed.optimizer).tracker is not None
    assert resumed_lrs == full_lrs[30:]
    assert len(set(full_lrs)) > 10  # the schedule moved
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_names_are_registered_once_and_usable_from_the_command_line(tmp_path):
    before = len(OptimizerNames._member_names_)
    assert register_optimizer_names() == ["clars", "lars", "lamb", "adamp"]
    assert hf_autolr.register() == hf_autolr.available_methods()
    assert len(OptimizerNames._member_names_) == before
    (parsed,) = HfArgumentParser(TrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--optim", "lars", "--optim_args", "momentum=0.8,nesterov=true"]
    )
    assert parsed.to_dict()["optim"] == "lars"
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(parsed)
    assert cls.__name__ == "LARS" and kwargs["momentum"] == 0.8 and kwargs["nesterov"] is True
    assert kwargs["lr"] == parsed.learning_rate
    # upstream names still go to transformers
    sgd_cls, _ = Trainer.get_optimizer_cls_and_kwargs(TrainingArguments(output_dir=str(tmp_path), optim="sgd"))
    assert sgd_cls is torch.optim.SGD


def test_a_name_transformers_defines_is_left_to_transformers(tmp_path, monkeypatch):
    from hf_autolr.optim import factory

    monkeypatch.setitem(factory.OPTIMIZERS, "sgd", ("hf_autolr.optim.clars:CLARS", {}))
    with pytest.warns(RuntimeWarning, match="already defines optim='sgd'"):
        assert register_optimizer_names(["sgd"]) == []
    cls, _ = Trainer.get_optimizer_cls_and_kwargs(TrainingArguments(output_dir=str(tmp_path), optim="sgd"))
    assert cls is torch.optim.SGD


def test_bad_names_and_options_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="clars"):  # the valid names are listed
        TrainingArguments(output_dir=str(tmp_path), optim="clarz")
    for optim_args, message in [
        ("trust=0.1", "accepted values: .*'trust_coefficient'"),
        ("lr=2", "option 'key' got 'lr'"),
        ("momentum=fast", "momentum='fast' is not valid; accepted: a number"),
        ("layer_adaptation=maybe", "layer_adaptation='maybe' is not valid; accepted: true, false or none"),
        ("momentum", "key=value"),
    ]:
        args = TrainingArguments(output_dir=str(tmp_path), optim="clars", optim_args=optim_args)
        with pytest.raises(ValueError, match=message):
            Trainer.get_optimizer_cls_and_kwargs(args)
    args = TrainingArguments(output_dir=str(tmp_path), optim="lamb", optim_args="beta2=0.98,max_grad_norm=0")
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    assert kwargs["betas"] == (args.adam_beta1, 0.98) and kwargs["max_grad_norm"] == 0.0
    args = TrainingArguments(output_dir=str(tmp_path), optim="clars", optim_args="layer_adaptation=true, eps=0")
    assert Trainer.get_optimizer_cls_and_kwargs(args)[1] | {"lr": 0} == {
        "lr": 0, "momentum": 0.9, "trust_coefficient": 1e-3, "eps": 0.0, "layer_adaptation": True
    }
    with pytest.raises(ValueError, match="accepted values: 'clars', 'lars', 'lamb', 'adamp'"):
        optimizer_cls_and_kwargs(args, "sgd")


def test_unsupported_setups_are_refused_and_a_missing_attach_is_caught(tmp_path):
    args = training_args(tmp_path, torch_compile=True, **CLARS_ARGS)
    trainer = Trainer(model=TinyMLP(), args=args, train_dataset=RegressionData())
    with pytest.raises(ValueError, match="torch_compile"):
        trainer.create_optimizer()
    # a CLARS passed in optimizers=(...) without attach() is attached by create_optimizer
    model = TinyMLP()
    optimizer = CLARS(model.parameters(), lr=0.5, trust_coefficient=0.02)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = Trainer(
            model=model,
            args=training_args(tmp_path, lr_scheduler_type="constant", num_train_epochs=1),
            train_dataset=RegressionData(),
            optimizers=(optimizer, None),
        )
        trainer.train()
    assert optimizer.tracker is not None and optimizer.diagnostics()["clars/lars_fallback_tensors"] == 0


def test_loss_scale_and_clip_factor_with_a_real_grad_scaler():
    """The Trainer's order (scaled backward, unscale + clip in ``accelerator.clip_grad_norm_``, then
    ``step``), with torch's GradScaler: the factor the callback computes, ``clip / loss_scale``,
    gives the steps CLARS's own per-tensor measurement gives."""
    from types import SimpleNamespace

    def run(explicit: bool):
        torch.manual_seed(0)
        model = TinyMLP()
        optimizer = CLARS(model.parameters(), lr=0.5, trust_coefficient=0.02)
        optimizer.attach(model)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)

        def clip_grad_norm_(parameters, max_norm):
            scaler.unscale_(optimizer)
            return torch.nn.utils.clip_grad_norm_(parameters, max_norm)

        accelerator = SimpleNamespace(scaler=scaler, clip_grad_norm_=clip_grad_norm_)
        trainer = SimpleNamespace(accelerator=accelerator, optimizer=optimizer, log=lambda logs: None)
        callback = ClarsCallback(trainer, explicit_grad_scale=explicit)
        callback.on_train_begin(None, None, None)
        data = RegressionData(n=64)
        for step in range(4):
            part = slice(16 * step, 16 * step + 16)
            scaler.scale(model(data.x[part], data.y[part])["loss"]).backward()
            total = trainer.accelerator.clip_grad_norm_(model.parameters(), 1.0)
            expected = min(1.0, 1.0 / (float(total) + 1e-6)) / scaler.get_scale()
            callback.on_pre_optimizer_step(None, None, None, optimizer=optimizer)
            assert callback.last_grad_scale == (pytest.approx(expected, rel=1e-12) if explicit else None)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad()
        return callback, list(model.parameters())

    callback, explicit = run(True)
    assert callback.last_grad_scale < 2.0**-10  # clipped and unscaled
    _, measured = run(False)
    for a, b in zip(explicit, measured):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------ two processes
class SequentialTrainer(Trainer):
    """Examples in dataset order: one process at batch 16 sees the same global batches as two
    processes at 8 (Accelerate hands out batches 0, 2, ... to rank 0 and 1, 3, ... to rank 1)."""

    def _get_train_sampler(self, train_dataset=None):
        return torch.utils.data.SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)


def _sequential_run(out_dir, explicit_grad_scale=None, **overrides):
    torch.manual_seed(0)
    args = training_args(
        out_dir, lr_scheduler_type="constant", num_train_epochs=2, ddp_find_unused_parameters=False,
        **{**CLARS_ARGS, **overrides},
    )
    trainer = SequentialTrainer(model=TinyMLP(), args=args, train_dataset=RegressionData())
    if explicit_grad_scale is not None:
        attach_clars_callback(trainer, explicit_grad_scale=explicit_grad_scale)
    trainer.train()
    return trainer


def _ddp_worker(out_dir: str) -> None:
    import torch.distributed as dist

    import hf_autolr  # noqa: F401 - registers the names in this process too

    result = {"world_size": dist.get_world_size()}
    for key, explicit in (("auto", None), ("unscaled", False)):
        trainer = _sequential_run(out_dir, explicit, per_device_train_batch_size=4, gradient_accumulation_steps=2)
        result[key] = [p.detach().clone() for p in trainer.model.parameters()]
        result[key + "_steps"] = trainer.state.global_step
    if trainer.args.process_index == 0:
        torch.save(result, f"{out_dir}/ddp.pt")


def test_two_processes_match_one_with_clipping(tmp_path):
    """DDP (2 ranks x 2 micro-batches x 4) = one process at batch 16, with max_grad_norm=1.0 clipping
    every step: per-sample norms are all-reduced and the callback rescales them by the clip factor.
    Without that factor (``explicit_grad_scale=False``) the DDP run ends elsewhere."""
    from accelerate import debug_launcher

    single = _sequential_run(tmp_path / "single", per_device_train_batch_size=16, logging_steps=1)
    assert min(logged(single, "grad_norm")) > 1.0  # clipped at every step
    debug_launcher(_ddp_worker, args=(str(tmp_path),), num_processes=2)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    assert ddp["world_size"] == 2 and ddp["auto_steps"] == single.state.global_step == 32
    for a, b in zip(single.model.parameters(), ddp["auto"]):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(single.model.net[0].weight, ddp["unscaled"][0], rtol=1e-3)
