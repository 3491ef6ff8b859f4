"""A fixed, seeded subset of parameter coordinates, gathered into flat fp32 buffers.

Methods that watch the trajectory of the parameters (AutoDrop) keep a few parameter-sized
statistics. To bound their memory they track every ``stride``-th element of each parameter
(flattened), starting at a per-tensor offset drawn from a seeded generator. No index tensor is
stored (the subset is a strided view), the subset is the same on every rank and after a resume,
and for large ``n`` angles and norms over the subset estimate those over all coordinates.

Sharded parameters (FSDP2 ``DTensor``, FSDP1 flat parameters, or anything the caller declares
sharded) contribute their local shard; :func:`global_sums` then all-reduces the scalar sums so
every rank sees the same global value. Sums over replicated shards are counted once per replica,
which scales every sum by the same factor and leaves angles unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist

try:  # torch.distributed.tensor may be missing on builds without distributed support
    from torch.distributed.tensor import DTensor
except ImportError:  # pragma: no cover - depends on the torch build
    DTensor = None  # type: ignore[assignment,misc]

BUFFER_DTYPE = torch.float32
BUFFER_BYTES = 4


def optimizer_params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The optimizer's parameters in param-group order, each once."""
    seen: set[int] = set()
    params = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


def local_tensor(p: torch.Tensor) -> torch.Tensor:
    """The locally held data of ``p`` (the local shard of a ``DTensor``), detached."""
    if DTensor is not None and isinstance(p, DTensor):
        return p.to_local().detach()
    return p.detach()


def looks_sharded(params: list[torch.Tensor]) -> bool:
    """True when a parameter is an FSDP2 ``DTensor`` or an FSDP1 flat parameter."""
    for p in params:
        if DTensor is not None and isinstance(p, DTensor):
            return True
        if getattr(p, "_is_flat_param", False) or type(p).__name__ == "FlatParameter":
            return True
    return False


@dataclass(frozen=True)
class SubsetPlan:
    """Which coordinates are tracked: ``counts[i]`` elements of param ``i`` from ``offsets[i]``."""

    stride: int
    offsets: tuple[int, ...]
    counts: tuple[int, ...]

    @property
    def size(self) -> int:
        return sum(self.counts)


def _plan(numels: list[int], stride: int, seed: int) -> SubsetPlan:
    generator = torch.Generator().manual_seed(seed)
    offsets, counts = [], []
    for n in numels:
        offset = int(torch.randint(stride, (1,), generator=generator)) if stride > 1 else 0
        offsets.append(offset)
        counts.append(max(0, (n - offset) // stride))  # floor: never more than n / stride
    return SubsetPlan(stride, tuple(offsets), tuple(counts))


def plan_subset(
    params: list[torch.Tensor],
    num_buffers: int,
    track_fraction: float | None,
    max_tracked: int | None,
    seed: int,
) -> SubsetPlan:
    """Choose the stride.

    ``track_fraction=None`` picks the largest fraction (smallest stride) whose ``num_buffers``
    fp32 buffers fit in the bytes of the parameters themselves (one parameter copy); a float
    tracks about that fraction (stride ``ceil(1/fraction)``). ``max_tracked`` caps the count.
    """
    local = [local_tensor(p) for p in params]
    numels = [t.numel() for t in local]
    total = max(1, sum(numels))  # a rank may hold an empty shard
    if track_fraction is None:
        budget = sum(t.numel() * t.element_size() for t in local)
        stride = max(1, math.ceil(num_buffers * BUFFER_BYTES / max(t.element_size() for t in local)))
        plan = _plan(numels, stride, seed)
        while plan.size * num_buffers * BUFFER_BYTES > budget:
            stride += 1
            plan = _plan(numels, stride, seed)
    else:
        stride = max(1, math.ceil(1.0 / track_fraction - 1e-9))
    if max_tracked is not None:
        stride = max(stride, math.ceil(total / max_tracked))
    return _plan(numels, stride, seed)


def _views(params: list[torch.Tensor], plan: SubsetPlan):
    position = 0
    for p, offset, count in zip(params, plan.offsets, plan.counts):
        if count:
            flat = local_tensor(p).reshape(-1)
            yield position, count, flat[offset : offset + count * plan.stride : plan.stride]
        position += count


@torch.no_grad()
def gather(params: list[torch.Tensor], plan: SubsetPlan, out: torch.Tensor, accumulate: bool) -> None:
    """Write (``accumulate=False``) or add (``True``) the tracked coordinates into ``out``."""
    for position, count, values in _views(params, plan):
        target = out[position : position + count]
        values = values.to(device=out.device, non_blocking=True)
        if accumulate:
            target.add_(values)
        else:
            target.copy_(values)


class StridedGather:
    """:func:`gather` for the per-step hot path: the strided views are built once and reused.

    One ``torch._foreach_add_`` over cached views replaces a Python loop of slicing per tensor
    (about 30 µs per parameter tensor per step on CPU). The views follow the parameters' storage,
    so they are rebuilt whenever a parameter's or the buffer's storage moves (``model.to()``,
    assigning ``p.data``); parameters that are sharded, not contiguous or on another device than
    the buffer are read through :func:`gather` at every call instead.
    """

    def __init__(self, plan: SubsetPlan, sharded: bool) -> None:
        self.plan = plan
        self.cacheable: bool | None = None if not sharded else False  # None: decided at the first call
        self._key: tuple[int, ...] | None = None
        self._sources: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    @torch.no_grad()
    def __call__(self, params: list[torch.Tensor], out: torch.Tensor, accumulate: bool) -> None:
        if self.cacheable is None:
            self.cacheable = not looks_sharded(params)
        if not self.cacheable:
            gather(params, self.plan, out, accumulate)
            return
        key = (out.data_ptr(), *(p.data_ptr() for p in params))
        if key != self._key:
            self._build(params, out, key)
            if not self.cacheable:
                gather(params, self.plan, out, accumulate)
                return
        if not self._targets:
            return
        if accumulate:
            torch._foreach_add_(self._targets, self._sources)
        else:
            torch._foreach_copy_(self._targets, self._sources)

    def _build(self, params: list[torch.Tensor], out: torch.Tensor, key: tuple[int, ...]) -> None:
        if any(not p.is_contiguous() or p.device != out.device for p in params):
            self.cacheable = False  # reshape would copy, or the values must move: no stable view
            return
        views = list(_views(params, self.plan))
        self._sources = [values for _, _, values in views]
        self._targets = [out[position : position + count] for position, count, _ in views]
        self._key = key


def global_sums(values: list[float], device: torch.device, sharded: bool) -> list[float]:
    """Sum scalar statistics over ranks when parameters are sharded; identity otherwise."""
    if not (sharded and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return values
    backend_device = device if dist.get_backend() != "gloo" else torch.device("cpu")
    tensor = torch.tensor(values, dtype=torch.float64, device=backend_device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def world_size() -> int:
    """Number of processes, 1 without an initialized process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1
