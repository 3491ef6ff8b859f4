"""An in-memory copy of the training state a scheduler may roll back to: the parameters, the
optimizer's per-parameter state (tensors and counters alike: AdamW's moments, Prodigy's d) and the
param groups' numeric entries other than the LR. Restoring writes into the live tensors in place.

Example::

    saved = take_snapshot(optimizer)
    ...  # steps that may overshoot
    restore_snapshot(optimizer, *saved)
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from hf_autolr.schedulers.param_subset import optimizer_params

_LR_KEYS = {"params", "lr", "initial_lr"}
Snapshot = tuple[list[torch.Tensor], list[dict[str, Any]], list[dict[str, Any]]]


def _clone(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)


@torch.no_grad()
def take_snapshot(optimizer: torch.optim.Optimizer) -> Snapshot:
    """``(params, per-parameter states, param-group entries)``, all copied."""
    params = optimizer_params(optimizer)
    state = optimizer.state
    return (
        [p.detach().clone() for p in params],
        [{k: _clone(v) for k, v in state[p].items()} if p in state else {} for p in params],
        [{k: _clone(v) for k, v in g.items() if k not in _LR_KEYS and isinstance(v, (int, float, torch.Tensor))}
         for g in optimizer.param_groups],
    )


@torch.no_grad()
def restore_snapshot(optimizer: torch.optim.Optimizer, params: list[torch.Tensor], states: list[dict[str, Any]],
                     groups: list[dict[str, Any]]) -> None:
    """Parameters, optimizer state and param-group counters back to a :func:`take_snapshot`, in place."""
    state = optimizer.state
    for p, saved, saved_state in zip(optimizer_params(optimizer), params, states):
        p.copy_(saved)
        if not saved_state:
            state.pop(p, None)
            continue
        current = state[p] if p in state else {}
        restored = {}
        for key, value in saved_state.items():
            old = current.get(key)
            if isinstance(value, torch.Tensor) and isinstance(old, torch.Tensor) and old.shape == value.shape and old.dtype == value.dtype:
                restored[key] = old.copy_(value)
            else:
                restored[key] = _clone(value)
        state[p] = restored
    for group, saved_group in zip(optimizer.param_groups, groups):
        for key, value in saved_group.items():
            if isinstance(value, torch.Tensor) and isinstance(group.get(key), torch.Tensor):
                group[key].copy_(value)
            else:
                group[key] = _clone(value)
