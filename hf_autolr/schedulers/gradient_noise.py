"""Gradient-noise statistics for AdaScale: S gradient samples per optimizer step.

Johnson, Agrawal, Gu, Guestrin, "AdaScale SGD: A User-Friendly Algorithm for Distributed
Training", ICML 2020, arXiv 2007.05105 (equations from the ICLR-2020 submission text). With S
independent base-batch gradients g_1..g_S and their mean ḡ, the unbiased estimates and the gain are

    σ̂² = (Σ‖g_i‖² − S‖ḡ‖²) / (S − 1)        (trace of one base batch's gradient covariance)
    μ̂² = ‖ḡ‖² − σ̂² / S                      (squared norm of the true gradient)
    r  = (σ² + μ²) / (σ²/S + μ²) ∈ [1, S]    (after clipping σ² ≥ 1e-6, μ² ≥ 0)

:class:`GradientSampleTracker` reads Σ‖g_i‖² in a multi-gradient hook, ‖ḡ‖² in ``.grad`` after DDP.

Example::

    tracker = GradientSampleTracker(model.parameters(), loss_scaling="mean")
    for x, y in micro_batches:                             # S ≥ 2 samples
        (loss_fn(model(x), y) / len(micro_batches)).backward()
    sample = tracker.collect()
    var, sqr = noise_estimates(sample.sample_sq_sum, sample.mean_sq, sample.num_samples)

Design notes: docs/adascale.md in the repository.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.autograd import Variable
from torch.autograd.graph import register_multi_grad_hook

VAR_FLOOR = 1e-6  # σ² clip of the paper (and fairscale / AdaptDL)
ADAM_PRECONDITION_AFTER = 5  # AdaptDL: raw gradients until Adam's second moment has 5 steps


def noise_estimates(sample_sq_sum: float, mean_sq: float, num_samples: int) -> tuple[float, float]:
    """Unbiased (σ̂², μ̂²) from Σ‖g_i‖², ‖ḡ‖² and S ≥ 2 samples (not clipped)."""
    s = num_samples
    if s < 2:
        raise ValueError(f"noise_estimates needs at least 2 samples, got {s}")
    var = (sample_sq_sum - s * mean_sq) / (s - 1)
    return var, mean_sq - var / s


def gain_ratio(var: float, sqr: float, scale: float) -> float:
    """AdaScale gain r = (σ² + μ²) / (σ²/S + μ²) with σ² ≥ 1e-6, μ² ≥ 0, clipped to [1, S]."""
    var, sqr = max(var, VAR_FLOOR), max(sqr, 0.0)
    return min(max((var + sqr) / (var / scale + sqr), 1.0), float(scale))


def averaging_weight(count: int, theta: float) -> float:
    """Weight of the ``count``-th observation (1-based): a plain mean while count < 1/(1−θ), then
    an exponential moving average with factor θ, i.e. ``max(1/count, 1 − θ)``."""
    return max(1.0 / count, 1.0 - theta)


def default_smoothing(num_samples: int) -> float:
    """θ = max(1 − S/1000, 0), the paper's (and fairscale's) choice."""
    return max(1.0 - num_samples / 1000.0, 0.0)


def unwrap_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The innermost optimizer of wrappers that keep it in ``.optimizer`` (accelerate's
    ``AcceleratedOptimizer``, …)."""
    seen = {id(optimizer)}
    while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
        optimizer = optimizer.optimizer
        if id(optimizer) in seen:
            break
        seen.add(id(optimizer))
    return optimizer


class AdamPreconditioner:
    """Adam's diagonal preconditioner √v̂ + ε of a parameter, as AdaptDL's ``AdamScale`` uses it.

    ``v̂ = exp_avg_sq / (1 − β₂^step)`` from the optimizer's state before this step's update. Gives
    ``None`` (raw gradient) while the parameter has fewer than ``after`` Adam steps or where the
    optimizer keeps no ``exp_avg_sq`` / ``betas`` (then the statistics are on raw gradients).
    """

    def __init__(self, optimizer: Any, after: int = ADAM_PRECONDITION_AFTER) -> None:
        self.optimizer = unwrap_optimizer(optimizer)
        self.after = after
        self._group_index: dict[int, int] = {}
        self._cache: dict[int, tuple[float, torch.Tensor]] = {}  # id(param) -> (Adam step, √v̂ + ε)

    def _group(self, param: torch.Tensor) -> dict[str, Any] | None:
        groups = self.optimizer.param_groups
        index = self._group_index.get(id(param))
        if index is None or index >= len(groups):  # a new parameter or group: re-index
            self._group_index = {id(p): i for i, group in enumerate(groups) for p in group["params"]}
            index = self._group_index.get(id(param))
        return None if index is None else groups[index]

    def __call__(self, param: torch.Tensor) -> torch.Tensor | None:
        state = self.optimizer.state.get(param)
        if not state or "exp_avg_sq" not in state:
            return None
        step = float(state.get("step", 0))
        group = self._group(param)
        if step < self.after or group is None or "betas" not in group:
            return None
        cached = self._cache.get(id(param))
        if cached is not None and cached[0] == step:  # v̂ changes only at optimizer.step()
            return cached[1]
        second_moment = state["exp_avg_sq"].detach()
        if second_moment.dtype not in (torch.float32, torch.float64):
            second_moment = second_moment.float()
        correction = 1.0 - group["betas"][1] ** step
        pinv = (second_moment / correction).sqrt_().add_(group.get("eps", 1e-8))
        self._cache[id(param)] = (step, pinv)
        return pinv

    def clear(self) -> None:
        """Free the step's √v̂ + ε (kept from the first backward of a step to its optimizer step)."""
        self._cache = {}


@dataclass(frozen=True)
class GradientSample:
    """What one optimizer step saw, summed over processes."""

    num_samples: int  # S = Σ over processes of the micro-batches
    sample_sq_sum: float  # Σ_i ‖g_i‖² (per-sample gradients, loss convention undone, unscaled)
    mean_sq: float  # ‖ḡ‖²
    finite: bool
    preconditioned: bool  # statistics on Adam-preconditioned gradients


_WIDE = (torch.float32, torch.float64)


def _sq_norm_sum(grads: list[torch.Tensor], pinvs: list[torch.Tensor | None] | None = None) -> torch.Tensor:
    """Σ ‖grad / pinv‖² over ``grads`` as a float64 scalar, from one fused ``_foreach_norm``: each
    tensor's norm in its own precision (fp16/bf16 in float32: their scaled squares overflow), the
    squares summed in float64 (σ̂² is a difference of two nearly equal sums)."""
    grads = [g.detach() for g in grads]
    if pinvs is not None and any(p is not None for p in pinvs):
        scaled = [i for i, p in enumerate(pinvs) if p is not None]
        quotients = torch._foreach_div([grads[i] if grads[i].dtype in _WIDE else grads[i].float() for i in scaled],
                                       [pinvs[i] for i in scaled])
        for i, quotient in zip(scaled, quotients):
            grads[i] = quotient
    narrow = any(g.dtype not in _WIDE for g in grads)
    norms = torch._foreach_norm(grads, 2, dtype=torch.float32) if narrow else torch._foreach_norm(grads, 2)
    if len({n.dtype for n in norms}) > 1:
        norms = [n.double() for n in norms]
    return torch.stack(norms).double().square().sum()


def _weak_hook(tracker: weakref.ref, params: list[torch.Tensor]) -> Callable[[Any], None]:
    def hook(grads: Any) -> None:
        live = tracker()
        if live is not None:
            live._on_grads(params, grads)

    return hook


class GradientSampleTracker:
    """A multi-gradient hook that collects one optimizer step's gradient samples (see docs/adascale.md).

    ``grad_scaler``: ``None``, a number, or an object with ``get_scale()`` (``torch.amp.GradScaler``)
    whose factor the gradients carry. ``preconditioner``: ``param -> Tensor | None`` to take the
    statistics on ``grad / preconditioner`` (Adam rule). Runtime only: holds parameters and hook
    handles, never goes into a checkpoint.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        *,
        grad_scaler: Any = None,
        preconditioner: Callable[[torch.Tensor], torch.Tensor | None] | None = None,
        loss_scaling: str = "mean",
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.loss_scaling = loss_scaling
        self._pending = None
        if not self.params:
            raise ValueError("AdaScale.attach: no parameters that require gradients")
        self.grad_scaler = grad_scaler
        self.preconditioner = preconditioner
        # The hooks hold the tracker weakly, and the finalizer removes them once the tracker (its
        # scheduler) is gone: a scheduler replaced without detach() (a second Trainer.train())
        # leaves no live hooks behind.
        # One multi-grad hook for all parameters: called once per backward with every local
        # gradient (before accumulation into .grad and before DDP's reduction).
        handle = register_multi_grad_hook(self.params, _weak_hook(weakref.ref(self), self.params), mode="all")
        self._remove_hooks = weakref.finalize(self, handle.remove)
        self.reset()

    # -- lifecycle ------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget what was seen since the last :meth:`collect`."""
        self._calls: dict[int, int] = {}
        self._backward_sq: torch.Tensor | None = None  # this backward pass, still scaled
        self._sample_sq: torch.Tensor | None = None  # this step, unscaled
        self._mean_sq: torch.Tensor | None = None  # ‖.grad‖² after the latest backward, unscaled
        self._preconditioned = False
        self._wait_pending()
        if hasattr(self.preconditioner, "clear"):
            self.preconditioner.clear()
        # Also re-arms the end-of-backward callback if a failed backward never ran it (queueing it
        # twice in one backward is harmless: the second run finds nothing new to fold).
        self._callback_queued = False

    def remove(self) -> None:
        """Remove the hooks (idempotent)."""
        self._remove_hooks()

    # -- DDP: the statistics travel with the last gradient bucket ----------------------------------
    def reduce_with(self, ddp: torch.nn.Module) -> bool:
        """Launch this step's sample statistics' all-reduce from ``ddp``'s comm hook, right after
        its last gradient bucket, instead of as a second collective after the backward pass.

        The hook reduces every bucket as DDP's default does (``allreduce_hook``: mean over
        processes). Returns False (and changes nothing) when ``ddp`` already has a comm hook.
        """
        if getattr(ddp, "_comm_hooks", None) or not hasattr(ddp, "register_comm_hook"):
            return False
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook  # noqa: PLC0415

        this = weakref.ref(self)

        def reduce_bucket_then_statistics(group, bucket):  # unannotated: DDP checks the annotations
            future = allreduce_hook(group, bucket)
            live = this()
            if live is not None and bucket.is_last():
                live._launch_statistics(group)
            return future

        ddp.register_comm_hook(None, reduce_bucket_then_statistics)
        return True

    def _local_statistics(self, device: torch.device | None = None) -> torch.Tensor:
        """[Σ‖g_i‖² (unscaled, loss convention undone), micro-batches, preconditioned] of this rank,
        float64 on ``device`` (default: where the gradients are)."""
        parts = [t for t in (self._sample_sq, self._backward_sq) if t is not None]
        device = device or (parts[0].device if parts else torch.device("cpu"))
        sample_sq = torch.zeros((), dtype=torch.float64, device=device)
        if self._sample_sq is not None:
            sample_sq = sample_sq + self._sample_sq.to(device)
        if self._backward_sq is not None:  # the backward pass still running (the comm hook)
            sample_sq = sample_sq + self._backward_sq.to(device) / self._grad_scale() ** 2
        micro_batches = max(self._calls.values(), default=0)
        if self.loss_scaling == "mean":  # hooks saw g_i / c
            sample_sq = sample_sq * micro_batches**2
        flags = torch.tensor([float(micro_batches), float(self._preconditioned)], dtype=torch.float64, device=device)
        return torch.cat([sample_sq.reshape(1), flags])

    def _launch_statistics(self, group: Any) -> None:
        self._wait_pending()
        packed = self._local_statistics(self.params[0].device)
        self._pending = (dist.all_reduce(packed, group=group, async_op=True), packed)

    def _wait_pending(self) -> torch.Tensor | None:
        pending, self._pending = getattr(self, "_pending", None), None
        if pending is None:
            return None
        work, packed = pending
        work.wait()
        return packed

    def has_samples(self) -> bool:
        """Whether a backward pass reached the hooks since the last :meth:`collect`."""
        return bool(self._calls)

    def same_params(self, params: Iterable[torch.Tensor]) -> bool:
        """Whether the hooks sit on exactly ``params`` (those requiring gradients)."""
        wanted = [p for p in params if p.requires_grad]
        return len(wanted) == len(self.params) and all(a is b for a, b in zip(wanted, self.params))

    # -- during backward ------------------------------------------------------------------------
    def _pinvs(self, params: list[torch.Tensor]) -> list[torch.Tensor | None] | None:
        if self.preconditioner is None:
            return None
        pinvs = [self.preconditioner(p) for p in params]
        self._preconditioned = self._preconditioned or any(p is not None for p in pinvs)
        return pinvs

    def _on_grads(self, params: list[torch.Tensor], grads: Any) -> None:
        present = [(p, g) for p, g in zip(params, grads) if g is not None]
        if not present:
            return
        first = present[0][0]
        if first.grad is None and self._calls.get(id(first), 0) > 0:
            self.reset()  # zeroed without a scheduler step (skipped fp16 step): start afresh
        for p, _ in present:
            self._calls[id(p)] = self._calls.get(id(p), 0) + 1
        used = [p for p, _ in present]
        sq = _sq_norm_sum([g for _, g in present], self._pinvs(used))
        previous = self._backward_sq
        self._backward_sq = sq if previous is None else previous + sq.to(previous.device)
        if not self._callback_queued:
            self._callback_queued = True
            Variable._execution_engine.queue_callback(self._end_of_backward)

    def _end_of_backward(self) -> None:
        self._callback_queued = False
        # Queued now, this runs after DDP's finalizer, which was queued during the backward pass.
        Variable._execution_engine.queue_callback(self._after_reduction)

    def _grad_scale(self) -> float:
        scaler = self.grad_scaler
        if scaler is None:
            return 1.0
        return float(scaler.get_scale() if hasattr(scaler, "get_scale") else scaler)

    def _after_reduction(self) -> None:
        inv_scale_sq = 1.0 / self._grad_scale() ** 2
        if self._backward_sq is not None:
            part = self._backward_sq * inv_scale_sq
            previous = self._sample_sq
            self._sample_sq = part if previous is None else previous + part.to(previous.device)
            self._backward_sq = None
        with_grad = [p for p in self.params if p.grad is not None]
        if with_grad:
            total = _sq_norm_sum([p.grad for p in with_grad], self._pinvs(with_grad))
            self._mean_sq = total * inv_scale_sq

    # -- at the optimizer step ------------------------------------------------------------------
    def collect(self, loss_scaling: str | None = None) -> GradientSample:
        """This step's samples, summed over processes (a collective when torch.distributed is
        initialised with more than one process: every rank must call it; with :meth:`reduce_with`
        it only waits for the reduction already launched), then :meth:`reset`."""
        if loss_scaling is not None:
            self.loss_scaling = loss_scaling
        packed = self._wait_pending()
        if packed is None:
            device = None
            world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
            if world > 1 and self._sample_sq is None and dist.get_backend() == "nccl":
                device = torch.device("cuda", torch.cuda.current_device())
            packed = self._local_statistics(device)
            if world > 1:
                dist.all_reduce(packed)
        return self._from_reduced(packed)

    def _from_reduced(self, packed: torch.Tensor) -> GradientSample:
        """The sample from statistics summed over processes; ‖ḡ‖² is this rank's (after DDP every
        rank holds the same averaged gradient)."""
        sample_sq_sum, count, preconditioned = packed.tolist()
        mean_sq = float(self._mean_sq) if self._mean_sq is not None else 0.0
        micro_batches = max(self._calls.values(), default=0)
        if self.loss_scaling == "sum" and micro_batches > 0:  # .grad is c·ḡ
            mean_sq = mean_sq / micro_batches**2
        self.reset()
        return GradientSample(
            num_samples=int(round(count)),
            sample_sq_sum=sample_sq_sum,
            mean_sq=mean_sq,
            finite=math.isfinite(sample_sq_sum) and math.isfinite(mean_sq),
            preconditioned=preconditioned > 0,
        )
