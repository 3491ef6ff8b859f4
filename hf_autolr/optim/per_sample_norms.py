"""Mean per-sample gradient norm of each parameter, from layer hooks: ``PerSampleGradNorms(model)``.

For each parameter ``p``, ``norms()`` gives the mean over the samples ``i`` of the global batch
(all micro-batches since the last reset, on all processes) of ``||grad_p f_i||``. Under the
mean-loss convention (Accelerate, Trainer, DDP) ``param.grad = sum_i c_i``, ``c_i = grad f_i / N``:

    mean_i ||grad f_i|| = sum_i ||c_i||  >=  ||param.grad||      (triangle inequality)

Per-layer rules (``per_sample_rules``; ghost norms, Goodfellow 2015, arXiv 1510.01799) give each
``||c_i||`` from the layer's input and output gradient, without a loop over samples; layers they
cannot cover are listed in ``unsupported``. CLARS (:mod:`hf_autolr.optim.clars`) uses it.

Example::

    with PerSampleGradNorms(model) as tracker:
        for micro_batch in micro_batches:                  # gradient accumulation
            (model(**micro_batch).loss / len(micro_batches)).backward()
        mean_norms = tracker.norms()                       # {param: 0-dim tensor}

Design notes (conventions, distributed use, covered layers): docs/clars.md in the repository.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from torch import nn

from hf_autolr._validation import check_choice
from hf_autolr.optim.per_sample_rules import rule_for


def float_norm(t: torch.Tensor) -> torch.Tensor:
    """``||t||`` computed in float32 (float64 stays float64)."""
    return torch.linalg.vector_norm(t, dtype=torch.float64 if t.dtype == torch.float64 else torch.float32)


def world_size() -> int:
    """Number of processes of the default group, 1 when ``torch.distributed`` is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


@dataclass
class _Slot:
    name: str
    total: torch.Tensor | None = None  # sum over samples of ||c_i||, local process
    count: int = 0  # samples seen, local process
    backward_grad_norm: torch.Tensor | None = None  # ||param.grad|| after the last backward

    def clear(self) -> None:
        self.total, self.count, self.backward_grad_norm = None, 0, None


class NormSnapshot(NamedTuple):
    """What ``consume()`` hands over: per-parameter sums of contribution norms (all processes),
    and ``||param.grad||`` at the end of the last backward (empty when distributed)."""

    contribution: dict[torch.Tensor, torch.Tensor]
    backward_grad_norm: dict[torch.Tensor, torch.Tensor]


class PerSampleGradNorms:
    """Hooks on ``model`` that accumulate per-sample gradient norms of its parameters.

    Args:
        model: the module (a DDP wrapper works too: hooks go on its submodules).
        params: restrict to these parameters (default: every parameter that requires grad).
        loss_reduction: ``"mean"`` (default; the loss is the batch mean) or ``"sum"``; only
            ``norms()`` depends on it.
        sync_distributed: all-reduce across processes when ``torch.distributed`` is initialised.
    """

    def __init__(
        self,
        model: nn.Module,
        params: Iterable[torch.Tensor] | None = None,
        *,
        loss_reduction: str = "mean",
        sync_distributed: bool = True,
    ) -> None:
        self.loss_reduction = check_choice(
            "PerSampleGradNorms", "loss_reduction", loss_reduction, ("mean", "sum")
        )
        self.sync_distributed = bool(sync_distributed)
        self.model = model
        wanted = None if params is None else {id(p) for p in params}
        owners: dict[int, list[tuple[str, nn.Module, str, nn.Parameter]]] = {}
        for module_name, module in model.named_modules():
            for param_name, param in module.named_parameters(recurse=False):
                if param.requires_grad and (wanted is None or id(param) in wanted):
                    full = f"{module_name}.{param_name}" if module_name else param_name
                    owners.setdefault(id(param), []).append((full, module, param_name, param))
        self.unsupported: dict[str, str] = {}
        self._plans: dict[nn.Module, tuple[Any, str, dict[str, nn.Parameter]]] = {}
        self._slots: dict[torch.Tensor, _Slot] = {}
        for uses in owners.values():
            full, module, param_name, param = uses[0]
            if len(uses) > 1:
                self.unsupported[full] = "shared by several modules (tied weights)"
                continue
            rule, kind = rule_for(module)
            if rule is None:
                self.unsupported[full] = kind
                continue
            self._plans.setdefault(module, (rule, kind, {}))[2][param_name] = param
            self._slots[param] = _Slot(full)
        self._order = list(self._slots)  # fixed, identical on every process: the all-reduce layout
        self._handles: list[Any] = []
        self._cache: tuple | None = None
        self._in_rule = False  # the torch.func rule re-runs a forward: do not hook it
        self._forward: dict[str, int] = {"batch": 0}

    # ------------------------------------------------------------------ hooks
    def attach(self) -> PerSampleGradNorms:
        """Register the hooks (idempotent). Returns ``self``."""
        if self._handles:
            return self
        self._handles.append(self.model.register_forward_pre_hook(self._new_forward))
        for module in self._plans:
            self._handles.append(module.register_forward_hook(self._forward_hook, with_kwargs=True))
        for param in self._slots:
            self._handles.append(param.register_post_accumulate_grad_hook(self._grad_hook))
        return self

    def detach(self) -> None:
        """Remove the hooks; accumulated values stay readable."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> PerSampleGradNorms:
        return self.attach()

    def __exit__(self, *exc: Any) -> None:
        self.detach()

    @property
    def tracked(self) -> dict[str, torch.Tensor]:
        """Name -> parameter, for every parameter whose per-sample norms are computed."""
        return {slot.name: param for param, slot in self._slots.items()}

    def _new_forward(self, module: nn.Module, args: tuple) -> None:
        self._forward = {"batch": 0}  # largest batch dim seen by a hooked layer in this forward

    def _forward_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if self._in_rule or not torch.is_grad_enabled():
            return
        if not (isinstance(output, torch.Tensor) and output.requires_grad):
            return
        if module not in self._plans or output.dim() == 0:
            return
        self._forward["batch"] = max(self._forward["batch"], output.shape[0])
        detach = lambda a: a.detach() if isinstance(a, torch.Tensor) else a  # noqa: E731
        saved_args = tuple(detach(a) for a in args)
        saved_kwargs = {k: detach(v) for k, v in kwargs.items()}
        hook = functools.partial(self._on_grad_out, module, saved_args, saved_kwargs, self._forward)
        output.register_hook(hook)

    def _give_up(self, module: nn.Module, reason: str) -> None:
        """Stop tracking ``module``'s parameters (they get no norms), with one warning."""
        params = self._plans.pop(module)[2]
        names = [self._slots.pop(param).name for param in params.values() if param in self._slots]
        for name in names:
            self.unsupported[name] = reason
        self._cache = None
        message = f"PerSampleGradNorms: no per-sample norms for {', '.join(names)} ({reason})"
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    def _on_grad_out(
        self, module: nn.Module, args: tuple, kwargs: dict, forward: dict, grad_out: torch.Tensor
    ) -> None:
        plan = self._plans.get(module)
        if plan is None:
            return
        if grad_out.shape[0] == 1 and forward["batch"] > 1:
            reason = f"output has batch dim 1 in a batch of {forward['batch']}: broadcast over the batch"
            self._give_up(module, reason)
            return
        rule, kind, params = plan
        for param in params.values():
            if param.grad is None:  # first backward since zero_grad(set_to_none=True)
                self._slots[param].clear()
        self._in_rule = True
        try:
            with torch.no_grad():
                squared = rule(module, args, kwargs, grad_out.detach(), set(params))
        except Exception as error:  # e.g. a layer the generic rule cannot vmap: give it up, loudly
            self._give_up(module, f"{kind} rule failed: {type(error).__name__}: {error}")
            return
        finally:
            self._in_rule = False
        with torch.no_grad():
            for param_name, sq in squared.items():
                slot = self._slots[params[param_name]]
                total = sq.clamp_min(0).sqrt().sum()
                slot.total = total if slot.total is None else slot.total + total.to(slot.total.device)
                slot.count += int(sq.shape[0])
        self._cache = None

    def _grad_hook(self, param: torch.Tensor) -> None:
        slot = self._slots.get(param)
        if slot is None:
            return
        grad = param.grad
        if grad is None or grad.is_sparse or world_size() > 1:
            slot.backward_grad_norm = None
            return
        slot.backward_grad_norm = float_norm(grad.detach())

    # ---------------------------------------------------------------- results
    def reset(self) -> None:
        """Forget everything accumulated (start of a new optimizer step)."""
        for slot in self._slots.values():
            slot.clear()
        self._cache = None

    def _reduced(self) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, int]:
        """Per tracked parameter: sums of contribution norms and counts, over all processes.
        A parameter given up on any process gets count 0 everywhere."""
        if self._cache is not None:
            return self._cache
        params = self._order
        if not params:
            return [], torch.zeros(0), torch.zeros(0), 1
        device = params[0].device
        dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        buffer = torch.zeros(3, len(params), dtype=dtype, device=device)  # totals, counts, given up
        for i, param in enumerate(params):
            slot = self._slots.get(param)
            if slot is None:
                buffer[2, i] = 1
            elif slot.total is not None:
                buffer[0, i] = slot.total.to(device=device, dtype=dtype)
                buffer[1, i] = slot.count
        processes = world_size() if self.sync_distributed else 1
        if processes > 1:
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
        totals, counts = buffer[0], torch.where(buffer[2] > 0, 0.0, buffer[1])
        self._cache = (params, totals, counts, processes)
        return self._cache

    def contribution_norms(self) -> dict[torch.Tensor, torch.Tensor]:
        """``sum_i ||c_i||`` per parameter, in the scale of ``param.grad`` after backward (and after
        DDP's averaging). Equals ``norms()`` for ``loss_reduction="mean"``. What CLARS uses."""
        params, totals, counts, processes = self._reduced()
        return {p: totals[i] / processes for i, p in enumerate(params) if counts[i] > 0}

    def norms(self) -> dict[torch.Tensor, torch.Tensor]:
        """Mean per-sample gradient norm ``mean_i ||grad_p f_i||`` per parameter (0-dim tensors);
        parameters that saw no sample are absent."""
        if self.loss_reduction == "mean":
            return self.contribution_norms()
        params, totals, counts, _ = self._reduced()
        return {p: totals[i] / counts[i] for i, p in enumerate(params) if counts[i] > 0}

    def named_norms(self) -> dict[str, float]:
        """``norms()`` keyed by parameter name, as floats (for logging)."""
        return {self._slots[p].name: float(v) for p, v in self.norms().items()}

    def sample_counts(self) -> dict[torch.Tensor, int]:
        """Samples seen per parameter since the last reset, over all processes."""
        params, _, counts, _ = self._reduced()
        return {p: int(counts[i]) for i, p in enumerate(params) if counts[i] > 0}

    def backward_grad_norms(self) -> dict[torch.Tensor, torch.Tensor]:
        """``||param.grad||`` at the end of the last backward, for parameters that have one.
        Empty in multi-process runs (the hook sees the gradient before DDP's averaging)."""
        return {p: s.backward_grad_norm for p, s in self._slots.items() if s.backward_grad_norm is not None}

    def consume(self) -> NormSnapshot:
        """The values for this optimizer step, then ``reset()``."""
        snapshot = NormSnapshot(self.contribution_norms(), self.backward_grad_norms())
        self.reset()
        return snapshot
