"""What the benchmark compares: an optimizer plus how its LR is driven, built for one run.

- Baselines: AdamW with 5% linear warmup then ``cosine`` or ``linear`` decay to 0 (HF's own
  ``get_scheduler``), peak LR chosen on the workload's grid; ``constant``: AdamW at the hint.
- Ours, at their defaults, the LR hint = the transformers default ``learning_rate`` 5e-5:
  ``autolr_gp``, ``adascale``, ``lrtuner``, ``autodrop`` (AdamW + the method), and ``clars`` (our
  optimizer with HF's default linear decay, no warmup). CLARS's LR is LARS-scale (relative change
  ≈ lr × trust coefficient per step), so its "hint" is 1.0, not 5e-5.
- Peers at their documented defaults: Schedule-Free AdamW (lr 0.0025, 5% warmup, evaluated at x,
  BatchNorm recalibrated), Prodigy (lr 1, ``safeguard_warmup``, cosine), D-Adaptation Adam (lr 1,
  decoupled wd, cosine), and HF's ``reduce_lr_on_plateau``, ``greedy`` (both stepped with the
  validation loss at every evaluation) and ``warmup_stable_decay`` (5% warmup, 20% decay) on
  AdamW at the hint.

Every AdamW here has betas (0.9, 0.999) and weight decay 0.01; peers that take weight
decay get the same 0.01.

On ``Trainer`` workloads a method runs as a user would write it (``Method.trainer``): our
schedulers and HF's by ``lr_scheduler_type``, CLARS and Schedule-Free by ``optim``, Prodigy and
D-Adaptation as ``optimizers=(optimizer, None)`` with ``lr_scheduler_type="cosine"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

HF_DEFAULT_LR = 5e-5  # transformers.TrainingArguments.learning_rate
WEIGHT_DECAY = 0.01
WARMUP_FRACTION = 0.05


@dataclass
class Setup:
    """One run's optimizer and LR driver, and how the loop must talk to them."""

    optimizer: torch.optim.Optimizer
    scheduler: Any = None
    observe: bool = False  # feed scheduler.observe(loss) before scheduler.step()
    micro_batches: int | None = None  # split each batch into micro-batches of this many items
    on_eval: Callable[[float], None] | None = None  # stepped with the validation loss
    eval_weights: bool = False  # Schedule-Free: optimizer.eval()/train() around evaluation
    cleanup: Callable[[], None] = lambda: None

    def finished(self) -> bool:
        return bool(getattr(self.scheduler, "finished", False))

    def effective_lr(self) -> float:
        group = self.optimizer.param_groups[0]
        return float(group["lr"]) * float(group.get("d", 1.0))  # Prodigy/D-Adapt: d × lr


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    kind: str  # "baseline" | "ours" | "peer"
    build: Callable[..., Setup]
    default_lr: float | None = HF_DEFAULT_LR  # None: the LR comes from the grid (baselines)
    takes_hint: bool = True  # report the sensitivity to the LR hint (ours)
    trainer: Callable[..., dict] | None = None  # (steps, workload) -> Trainer recipe; None: not on Trainer workloads


def trainer_recipe(lr_scheduler_type: str, *, warmup: bool = False, optimizer: Callable | None = None,
                   accumulate: bool = False, **args: Any) -> Callable[..., dict]:
    """How a user runs a method with ``Trainer``: ``{"args": TrainingArguments kwargs, "optimizer":
    model, lr -> optimizer or None}``; ``warmup``: 5% warmup steps; ``accumulate``: the batch as
    micro-batches of ``workload.micro_batch`` accumulated (AdaScale's gradient samples)."""

    def recipe(steps: int, workload: Any) -> dict:
        extra = dict(args)
        if warmup:
            extra["warmup_steps"] = _warmup(steps)
        if callable(extra.get("lr_scheduler_kwargs")):
            extra["lr_scheduler_kwargs"] = extra["lr_scheduler_kwargs"](steps)
        if accumulate:
            extra.update(per_device_train_batch_size=workload.micro_batch,
                         gradient_accumulation_steps=workload.batch_size // workload.micro_batch)
        return {"args": {"lr_scheduler_type": lr_scheduler_type, **extra}, "optimizer": optimizer}

    return recipe


def _groups(model: nn.Module, weight_decay: float = WEIGHT_DECAY) -> list[dict]:
    """Weight decay on matrices and convolutions only (HF Trainer's convention)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]


def adamw(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(_groups(model), lr=lr, betas=(0.9, 0.999), eps=1e-8)


def _warmup(steps: int) -> int:
    return max(1, round(WARMUP_FRACTION * steps))


def _hf_schedule(name: str, decay_fraction: float | None = None) -> Callable[..., Setup]:
    """HF's ``get_scheduler(name)`` on AdamW with 5% warmup; ``decay_fraction``: WSD's decay phase."""

    def build(model: nn.Module, lr: float, steps: int, workload: Any) -> Setup:
        from transformers import get_scheduler  # noqa: PLC0415

        optimizer = adamw(model, lr)
        extra = {"num_decay_steps": round(decay_fraction * steps)} if decay_fraction else None
        scheduler = get_scheduler(name, optimizer, num_warmup_steps=_warmup(steps), num_training_steps=steps,
                                  scheduler_specific_kwargs=extra)
        return Setup(optimizer, scheduler)

    return build


def _hf_on_eval(name: str) -> Callable[..., Setup]:
    """``reduce_lr_on_plateau`` / ``greedy``: stepped with the validation loss, as the Trainer does
    after each evaluation; HF defaults otherwise."""

    def build(model: nn.Module, lr: float, steps: int, workload: Any) -> Setup:
        from transformers import get_scheduler  # noqa: PLC0415

        optimizer = adamw(model, lr)
        scheduler = get_scheduler(name, optimizer)
        return Setup(optimizer, None, on_eval=scheduler.step)

    return build


def _ours(name: str, **options: Any) -> Callable[..., Setup]:
    def build(model: nn.Module, lr: float, steps: int, workload: Any) -> Setup:
        from hf_autolr.registry import build_scheduler  # noqa: PLC0415

        optimizer = adamw(model, lr)
        scheduler = build_scheduler(name, optimizer, num_training_steps=steps, **options)
        scheduler.attach(model)
        setup = Setup(optimizer, scheduler, observe=scheduler.needs_loss, cleanup=getattr(scheduler, "detach", lambda: None))
        if scheduler.needs_gradient_samples:  # the batch's micro-batches (S = batch / micro_batch)
            setup.micro_batches = workload.micro_batch
        return setup

    return build


def _clars(model: nn.Module, lr: float, steps: int, workload: Any) -> Setup:
    from transformers import get_scheduler  # noqa: PLC0415

    from hf_autolr.optim import CLARS  # noqa: PLC0415

    optimizer = CLARS(_groups(model), lr=lr, momentum=0.9, trust_coefficient=1e-3)
    optimizer.attach(model)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=0, num_training_steps=steps)
    return Setup(optimizer, scheduler, cleanup=optimizer.detach)


def _schedule_free(model: nn.Module, lr: float, steps: int, workload: Any) -> Setup:
    import schedulefree  # noqa: PLC0415

    optimizer = schedulefree.AdamWScheduleFree(_groups(model), lr=lr, warmup_steps=_warmup(steps))
    optimizer.train()
    return Setup(optimizer, None, eval_weights=True)


def _lr_free_optimizer(cls_path: str, **options: Any) -> Callable[[nn.Module, float], torch.optim.Optimizer]:
    def make(model: nn.Module, lr: float) -> torch.optim.Optimizer:
        import importlib  # noqa: PLC0415

        module, _, name = cls_path.partition(":")
        return getattr(importlib.import_module(module), name)(_groups(model), lr=lr, **options)

    return make


def _lr_free(make: Callable[[nn.Module, float], torch.optim.Optimizer]) -> Callable[..., Setup]:
    """An LR-free optimizer (lr 1) under transformers' cosine decay, no warmup."""

    def build(model: nn.Module, lr: float, steps: int, workload: Any) -> Setup:
        from transformers import get_scheduler  # noqa: PLC0415

        optimizer = make(model, lr)
        scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=0, num_training_steps=steps)
        return Setup(optimizer, scheduler)

    return build


_WSD_DECAY = 0.2
WIDE = {"min_lr_ratio": 0.01, "max_lr_ratio": 1e4, "rollback": "start", "backoff": 0.3}  # autolr_gp without a usable hint
_PRODIGY = _lr_free_optimizer("prodigyopt:Prodigy", safeguard_warmup=True)
_DADAPT = _lr_free_optimizer("dadaptation:DAdaptAdam", decouple=True)


def our_method(name: str) -> Method:
    """Registered method ``name`` at its defaults, as the benchmark runs it (AdamW + the method)."""
    from hf_autolr.registry import method_class  # noqa: PLC0415

    samples = method_class(name).needs_gradient_samples  # AdaScale: accumulated micro-batches
    return Method(name, f"hf_autolr {name}", "ours", _ours(name), trainer=trainer_recipe(name, accumulate=samples))


_BASELINES = (
    Method("tuned_cosine", "AdamW, warmup+cosine, LR tuned on grid", "baseline", _hf_schedule("cosine"), None, False,
           trainer_recipe("cosine", warmup=True)),
    Method("tuned_linear", "AdamW, warmup+linear, LR tuned on grid", "baseline", _hf_schedule("linear"), None, False,
           trainer_recipe("linear", warmup=True)),
    Method("constant", "AdamW, constant LR 5e-5 (untuned HF default LR)", "baseline", _hf_schedule("constant"), HF_DEFAULT_LR, False,
           trainer_recipe("constant")),
)
_PRESETS_AND_PEERS = (
    Method("autolr_gp_wide", "hf_autolr autolr_gp, six-decade range + rollback (no-hint preset)", "ours",
           _ours("autolr_gp", **WIDE), takes_hint=False, trainer=trainer_recipe("autolr_gp", lr_scheduler_kwargs=WIDE)),
    Method("clars", "hf_autolr CLARS (+linear decay)", "ours", _clars, 1.0, trainer=trainer_recipe("linear", optim="clars")),
    Method("schedule_free_adamw", "Schedule-Free AdamW (lr 0.0025)", "peer", _schedule_free, 0.0025, False,
           trainer_recipe("constant", warmup=True, optim="schedule_free_adamw")),
    Method("prodigy", "Prodigy (lr 1, cosine)", "peer", _lr_free(_PRODIGY), 1.0, False,
           trainer_recipe("cosine", optimizer=_PRODIGY)),
    Method("dadapt_adam", "D-Adaptation Adam (lr 1, cosine)", "peer", _lr_free(_DADAPT), 1.0, False,
           trainer_recipe("cosine", optimizer=_DADAPT)),
    Method("hf_reduce_lr_on_plateau", "HF reduce_lr_on_plateau (AdamW 5e-5)", "peer", _hf_on_eval("reduce_lr_on_plateau"),
           takes_hint=False, trainer=trainer_recipe("reduce_lr_on_plateau")),
    Method("hf_greedy", "HF greedy (AdamW 5e-5)", "peer", _hf_on_eval("greedy"), takes_hint=False, trainer=trainer_recipe("greedy")),
    Method("hf_warmup_stable_decay", "HF warmup_stable_decay (AdamW 5e-5)", "peer",
           _hf_schedule("warmup_stable_decay", decay_fraction=_WSD_DECAY), takes_hint=False,
           trainer=trainer_recipe("warmup_stable_decay", warmup=True,
                                  lr_scheduler_kwargs=lambda steps: {"num_decay_steps": round(_WSD_DECAY * steps)})),
)


class _Methods(Mapping):
    """Name -> :class:`Method`: the baselines, every registered hf_autolr method (the registry is
    read at each lookup, so a method registered later is benchmarked too), presets and peers. The
    table is rebuilt only when the registry changed."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._table: dict[str, Method] = {}

    def _all(self) -> dict[str, Method]:
        from hf_autolr import registry  # noqa: PLC0415

        key = tuple(registry.METHODS.items())
        if key != self._key:
            ours = [our_method(name) for name in registry.available_methods()]
            self._table = {m.name: m for m in (*_BASELINES, *ours, *_PRESETS_AND_PEERS)}
            self._key = key
        return self._table

    def __getitem__(self, name: str) -> Method:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


METHODS: Mapping[str, Method] = _Methods()
BASELINES = [m.name for m in _BASELINES if m.default_lr is None]
