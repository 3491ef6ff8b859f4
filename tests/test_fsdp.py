"""FSDP2 (``fully_shard``, gloo on CPU): every method takes the same LR decisions on both ranks;
AdaScale, whose statistics need each process's whole local gradient, is refused with one error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import hf_autolr
from gloo_workers import run_workers
from hf_autolr.integrations.driver import FeedbackDriver

fsdp = pytest.importorskip("torch.distributed.fsdp")
if not hasattr(fsdp, "fully_shard"):
    pytest.skip("this torch has no FSDP2 fully_shard", allow_module_level=True)

STEPS = 30
SHARDABLE = [m for m in hf_autolr.available_methods() if m != "adascale"]


def _sharded_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    for layer in model:
        if isinstance(layer, nn.Linear):
            fsdp.fully_shard(layer)
    fsdp.fully_shard(model)
    return model


def _worker(rank: int, out_dir: str, methods: list[str]) -> None:
    records = {}
    for method in methods:
        model = _sharded_model()
        assert type(next(model.parameters())).__name__ == "DTensor"  # really sharded
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        scheduler = hf_autolr.build_scheduler(method, optimizer, num_training_steps=STEPS)
        driver = FeedbackDriver(scheduler).attach(model)
        g = torch.Generator().manual_seed(rank)  # different data on each rank
        lrs = []
        for _ in range(STEPS):
            x = torch.randn(16, 8, generator=g)
            loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
            loss.backward()
            driver.before_optimizer_step(loss)
            optimizer.step()
            optimizer.zero_grad()
            driver.step()
            lrs.append(scheduler.get_last_lr()[0])
        local = {"autodrop/tracked_fraction"}  # the share of this rank's shard that is tracked
        records[method] = {"lrs": lrs, "diagnostics": {k: v for k, v in scheduler.diagnostics().items() if k not in local},
                           "decisions": {k: v for k, v in scheduler.decisions().items()
                                         if isinstance(v, (int, float, str, type(None)))}}
    torch.save(records, Path(out_dir) / f"rank{rank}.pt")


def test_every_method_decides_alike_on_all_ranks_under_fsdp2(tmp_path):
    run_workers(_worker, args=(str(tmp_path), SHARDABLE), nprocs=2, timeout=240)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert set(rank0) == set(SHARDABLE)
    for method in SHARDABLE:
        assert rank0[method] == rank1[method], method  # the same LR at every step, the same decisions
    assert len(set(rank0["autolr_gp"]["lrs"])) > 1 and len(set(rank0["lrtuner"]["lrs"])) > 1  # the LR moved
    assert "autodrop/omega" in rank0["autodrop"]["diagnostics"]  # an angle over all shards, the same on both


def _adascale_worker(rank: int, out_dir: str) -> None:
    model = _sharded_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = hf_autolr.build_scheduler("adascale", optimizer, num_training_steps=STEPS)
    try:
        scheduler.attach(model)
    except ValueError as error:
        (Path(out_dir) / f"rank{rank}.txt").write_text(str(error))


def test_adascale_refuses_sharded_parameters_naming_the_alternative(tmp_path):
    run_workers(_adascale_worker, args=(str(tmp_path),), nprocs=2, timeout=120)
    message = (tmp_path / "rank0.txt").read_text()
    assert "FSDP" in message and "DDP" in message and "\n" not in message
