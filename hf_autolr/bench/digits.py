"""scikit-learn's digits (1,797 8×8 images, 10 classes): the one loader of every digits suite, and
the seeded batch order they all share.

Splits, stratified and fixed, standardised with the training part's mean and std (+1: some
pixels are constant):

- ``"quality"``: 1000 train / 397 validation (400 unused): the quality suite's workloads;
- ``"held_out"``: 1347 train / 450 test: the AdaScale scaling suite;
- ``"tuning"``: the same 450 test, the 1347 cut into 1100 train / 247 validation: the
  large-batch suite (its LRs are picked on validation).

    parts = digits("tuning")
    x, y = parts["train"]  # float32 (1100, 64), int64 (1100,)
    first = next(index_batches(len(y), 275, seed=0))  # 275 indices of epoch 1
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

SPLITS = ("quality", "held_out", "tuning")
_CACHE: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}


def _cut(x: Any, y: Any, first: int, seed: int) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """(``first`` examples, the rest), stratified by class."""
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    a, b, ya, yb = train_test_split(x, y, train_size=first, stratify=y, random_state=seed)
    return (a, ya), (b, yb)


def digits(split: str = "quality") -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The parts of ``split`` (see the module docstring): name -> (inputs, labels), cached."""
    if split not in SPLITS:
        raise ValueError(f"unknown digits split {split!r}; accepted: {', '.join(SPLITS)}")
    if split not in _CACHE:
        from sklearn.datasets import load_digits  # noqa: PLC0415

        x, y = load_digits(return_X_y=True)
        if split == "quality":
            train, rest = _cut(x, y, 1000, seed=0)
            parts = {"train": train, "val": _cut(*rest, 397, seed=0)[0]}
        else:
            pool, test = _cut(x, y, len(y) - 450, seed=0)
            parts = {"train": pool, "test": test} if split == "held_out" else dict(zip(("train", "val"), _cut(*pool, 1100, seed=1)), test=test)
        mean, std = parts["train"][0].mean(0), parts["train"][0].std(0) + 1.0
        _CACHE[split] = {name: (torch.tensor((a - mean) / std, dtype=torch.float32), torch.tensor(b)) for name, (a, b) in parts.items()}
    return _CACHE[split]


def index_batches(n: int, batch: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless batches of indices into ``n`` examples: a new seeded permutation every epoch, its
    short tail dropped (``n // batch`` batches an epoch)."""
    generator = torch.Generator().manual_seed(10_000 + seed)
    while True:
        order = torch.randperm(n, generator=generator)
        for k in range(0, n - batch + 1, batch):
            yield order[k : k + batch]
