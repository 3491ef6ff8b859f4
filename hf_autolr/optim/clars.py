"""CLARS-like (reconstructed): LARS whose denominator is the mean per-sample gradient norm.

Huo, Gu, Huang, "Large Batch Training Does Not Need Warmup", arXiv 2002.01576 (2020); published
as "Large Batch Optimization for Deep Learning Using New Complete Layer-Wise Adaptive Rate
Scaling", AAAI 2021, 35(9):7883-7890. **Not verified**: the method section could not be read and
there is no public code; the rule below (LARS with the mean per-sample gradient norm in the
denominator) and every default are a reconstruction. Per parameter tensor ``l``:

    n_l   = mean_i ||grad_l f_i(w)||                  (per-sample norms, PerSampleGradNorms)
    eta_l = trust_coefficient * ||w_l|| / (n_l + weight_decay * ||w_l|| + eps)
    buf_l = momentum * buf_l + (1 - dampening) * eta_l * (grad_l + weight_decay * w_l)
    w_l  -= lr * buf_l                                  (or Nesterov)

LARS conventions (You, Gitman, Ginsburg, arXiv 1708.03888, Alg. 1); ``lr`` multiplies the buffer.

Example::

    import hf_autolr
    args = TrainingArguments(output_dir="out", optim="clars", learning_rate=8.0)   # no warmup

Design notes: docs/clars.md in the repository.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from hf_autolr._validation import check_number
from hf_autolr.optim.per_sample_norms import PerSampleGradNorms, float_norm


class CLARS(Optimizer):
    """CLARS-like (reconstructed) momentum SGD with per-sample-norm layer-wise trust ratios.

    Args:
        params: parameters or param groups.
        lr: global learning rate (LARS's gamma); the largest relative change of an adapted tensor
            per step is about ``lr * trust_coefficient`` (before momentum).
        momentum: momentum factor (LARS: 0.9).
        weight_decay: L2 coefficient, added to the gradient and to the trust-ratio denominator.
        trust_coefficient: LARS's eta (You et al. use 0.001).
        eps: added to the trust-ratio denominator.
        dampening: momentum dampening.
        nesterov: Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
        layer_adaptation: ``None`` = adapt tensors with ``ndim > 1``; ``True``/``False`` forces it
            (usually set per param group).

    Feed it per-sample norms with ``attach(model)`` once (hooks; norms are taken and reset at each
    ``step()``) or with ``set_per_sample_norms(norms)`` before each ``step()``.

    Example::

        optimizer = CLARS.for_model(model, lr=8.0, weight_decay=1e-4)   # CLARS(...).attach(model)
        for x, y in loader:
            loss_fn(model(x), y).backward()
            optimizer.step()                        # uses the norms of this step's backward
            optimizer.zero_grad()
    """

    needs_per_sample_norms = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 1e-3,
        eps: float = 1e-8,
        dampening: float = 0.0,
        nesterov: bool = False,
        layer_adaptation: bool | None = None,
    ) -> None:
        check_number("CLARS", "lr", lr, low=0.0)
        check_number("CLARS", "momentum", momentum, low=0.0, high=1.0, high_inclusive=False)
        check_number("CLARS", "weight_decay", weight_decay, low=0.0)
        check_number("CLARS", "trust_coefficient", trust_coefficient, low=0.0, low_inclusive=False)
        check_number("CLARS", "eps", eps, low=0.0)
        check_number("CLARS", "dampening", dampening, low=0.0, high=1.0)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("CLARS: option 'nesterov' needs momentum > 0 and dampening == 0")
        if layer_adaptation not in (None, True, False):
            raise ValueError(
                f"CLARS: option 'layer_adaptation' got {layer_adaptation!r}; accepted values: None, True, False"
            )
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            trust_coefficient=trust_coefficient,
            eps=eps,
            dampening=dampening,
            nesterov=nesterov,
            layer_adaptation=layer_adaptation,
        )
        super().__init__(params, defaults)
        self._init_transient()

    def _init_transient(self) -> None:
        self._tracker: PerSampleGradNorms | None = None
        self._manual_norms: dict[torch.Tensor, torch.Tensor] | None = None
        self._grad_scale: float | None = None
        self._warned_missing = False
        self._last: dict[str, float | torch.Tensor] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("layer_adaptation", None)
            group.setdefault("nesterov", False)
            group.setdefault("dampening", 0.0)
        if not hasattr(self, "_tracker"):
            self._init_transient()

    @staticmethod
    def _adapts(group: dict[str, Any], param: torch.Tensor) -> bool:
        forced = group["layer_adaptation"]
        return param.ndim > 1 if forced is None else bool(forced)

    @classmethod
    def for_model(cls, model: nn.Module, lr: float, **options: Any) -> CLARS:
        """CLARS over ``model``'s trainable parameters with the hooks attached: one call for an
        integration (e.g. the factory a ``Trainer(optimizer_cls_and_kwargs=...)`` calls with the
        model). Weight decay only reaches adapted tensors, so one param group suffices."""
        optimizer = cls([p for p in model.parameters() if p.requires_grad], lr=lr, **options)
        optimizer.attach(model)
        return optimizer

    # --------------------------------------------------------- norm sources
    def attach(self, model: nn.Module, **tracker_options: Any) -> PerSampleGradNorms:
        """Hook ``model`` (the module holding this optimizer's parameters; a DDP wrapper is fine)
        so each ``step()`` gets the per-sample norms of the backward passes since the previous step.
        Only the tensors this optimizer adapts are tracked. ``tracker_options`` go to
        :class:`PerSampleGradNorms` (``sync_distributed``). Returns the tracker."""
        self.detach()
        adapted = [p for g in self.param_groups for p in g["params"] if self._adapts(g, p)]
        self._tracker = PerSampleGradNorms(model, adapted, **tracker_options).attach()
        if self._tracker.unsupported:
            listed = "; ".join(f"{k}: {v}" for k, v in list(self._tracker.unsupported.items())[:5])
            more = len(self._tracker.unsupported) - 5
            warnings.warn(
                f"CLARS: no per-sample norms for {len(self._tracker.unsupported)} tensor(s), they use the LARS "
                f"denominator: {listed}{f' (and {more} more)' if more > 0 else ''}",
                RuntimeWarning,
                stacklevel=2,
            )
        return self._tracker

    def detach(self) -> None:
        """Remove the hooks installed by :meth:`attach`."""
        if self._tracker is not None:
            self._tracker.detach()
            self._tracker = None

    @property
    def tracker(self) -> PerSampleGradNorms | None:
        return self._tracker

    def set_per_sample_norms(self, norms: Mapping[torch.Tensor, float | torch.Tensor]) -> None:
        """Per-sample norms for the next ``step()`` only: ``{param: mean_i ||grad f_i||}`` in the
        scale of ``param.grad`` at the end of backward (``PerSampleGradNorms.contribution_norms()``).
        Takes precedence over an attached tracker for that step."""
        self._manual_norms = {p: torch.as_tensor(v, dtype=torch.float64) for p, v in norms.items()}

    def set_grad_scale(self, factor: float) -> None:
        """For the next ``step()`` only: the factor by which ``.grad`` was multiplied between the
        end of backward and ``step()`` (e.g. ``min(1, max_norm / total_norm) / loss_scale``).
        Overrides the per-tensor factor measured in single-process runs; needed under DDP when
        gradients are clipped or unscaled."""
        check_number("CLARS", "grad_scale", factor, low=0.0, low_inclusive=False)
        self._grad_scale = float(factor)

    def _take_norms(self, required: bool) -> tuple[dict, dict]:
        manual, self._manual_norms = self._manual_norms, None
        snapshot = self._tracker.consume() if self._tracker is not None else None
        if manual is not None:
            return manual, {}
        if snapshot is not None and (snapshot.contribution or not self._tracker.tracked or not required):
            return snapshot.contribution, snapshot.backward_grad_norm
        if required:
            raise RuntimeError(
                "CLARS.step() needs per-sample gradient norms: call optimizer.attach(model) before the forward "
                "pass (and run forward/backward with grad enabled), or optimizer.set_per_sample_norms(...) "
                "before step()"
            )
        return {}, {}

    # ----------------------------------------------------------------- step
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        required = any(
            p.grad is not None and self._adapts(g, p) for g in self.param_groups for p in g["params"]
        )
        contribution, backward_norm = self._take_norms(required)
        grad_scale, self._grad_scale = self._grad_scale, None
        coherences: list[torch.Tensor] = []
        ratios: list[torch.Tensor] = []
        missing = 0
        non_finite: torch.Tensor | int = 0  # kept as a tensor: no host sync per parameter
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            momentum, dampening = group["momentum"], group["dampening"]
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                if grad.is_sparse:
                    raise RuntimeError("CLARS does not support sparse gradients")
                if self._adapts(group, p):
                    grad_norm = float_norm(grad)
                    weight_norm = float_norm(p)
                    per_sample = self._denominator(p, grad_norm, contribution, backward_norm, grad_scale)
                    if per_sample is None:
                        missing += 1
                        per_sample = grad_norm
                    else:
                        finite = torch.isfinite(per_sample)
                        non_finite = non_finite + (~finite).int()
                        per_sample = torch.where(finite, per_sample, grad_norm)
                        coherences.append(torch.where(per_sample > 0, grad_norm / per_sample, 1.0))
                    denominator = per_sample + wd * weight_norm + group["eps"]
                    ratio = torch.where(
                        (weight_norm > 0) & (denominator > 0),
                        group["trust_coefficient"] * weight_norm / denominator,
                        1.0,
                    )
                    ratios.append(ratio)
                    update = (grad.add(p, alpha=wd) if wd else grad).mul(ratio.to(grad.dtype))
                else:
                    update = grad
                if momentum > 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    buf = state["momentum_buffer"]
                    buf.mul_(momentum).add_(update, alpha=1.0 - dampening)
                    update = update.add(buf, alpha=momentum) if group["nesterov"] else buf
                p.add_(update, alpha=-lr)
        if missing and not self._warned_missing:
            self._warned_missing = True
            warnings.warn(
                f"CLARS: {missing} adapted tensor(s) had a gradient but no per-sample norm; they used the "
                "LARS denominator ||grad|| (warned once)",
                RuntimeWarning,
                stacklevel=2,
            )
        self._last = {
            "coherence": torch.stack(coherences) if coherences else None,
            "ratio": torch.stack(ratios) if ratios else None,
            "fallbacks": non_finite + missing,
        }
        return loss

    @staticmethod
    def _denominator(
        p: torch.Tensor,
        grad_norm: torch.Tensor,
        contribution: Mapping[torch.Tensor, torch.Tensor],
        backward_norm: Mapping[torch.Tensor, torch.Tensor],
        grad_scale: float | None,
    ) -> torch.Tensor | None:
        """``n_l`` in the scale of ``p.grad`` now (may be non-finite), ``None`` when unknown."""
        value = contribution.get(p)
        if value is None:
            return None
        value = value.to(device=grad_norm.device, dtype=grad_norm.dtype)
        if grad_scale is not None:
            return value * grad_scale
        if p in backward_norm:
            before = backward_norm[p].to(device=grad_norm.device)
            usable = torch.isfinite(before) & (before > 0) & torch.isfinite(grad_norm)
            value = value * torch.where(usable, grad_norm / torch.where(usable, before, 1.0), 1.0)
        return value

    def diagnostics(self) -> dict[str, float]:
        """Of the last step: ``clars/coherence_mean`` and ``_min`` (``||grad|| / n_l`` over adapted
        tensors: 1 when all samples agree, about ``1/sqrt(B)`` for pure noise),
        ``clars/trust_ratio_mean`` and ``clars/lars_fallback_tensors``."""
        if not self._last:
            return {}
        out: dict[str, float] = {"clars/lars_fallback_tensors": float(self._last["fallbacks"])}
        coherence, ratio = self._last["coherence"], self._last["ratio"]
        if coherence is not None:
            out["clars/coherence_mean"] = float(coherence.mean())
            out["clars/coherence_min"] = float(coherence.min())
        if ratio is not None:
            out["clars/trust_ratio_mean"] = float(ratio.mean())
        return {k: v for k, v in out.items() if math.isfinite(v)}
