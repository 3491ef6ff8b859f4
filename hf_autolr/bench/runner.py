"""One benchmark run (a plain PyTorch loop, or ``transformers.Trainer`` on ``driver="trainer"``
workloads; the methods speak the same protocol in both), and the paired overhead measurement.

The loop per step: split the batch into micro-batches when the method wants gradient samples
(AdaScale), backward each (loss / count), ``before_optimizer_step()``, ``optimizer.step()``,
``observe(loss)`` then ``scheduler.step()``. Every ``eval_every`` steps (and at the end) it
records the validation loss; methods driven by evaluations (plateau, greedy) are stepped with it.
Timing counts only training steps, in process CPU time (one thread per run).
"""

from __future__ import annotations

import functools
import math
import os
import time
from typing import Any

import torch

from hf_autolr.bench.methods import METHODS, Method, Setup
from hf_autolr.bench.timing import paired_cpu_time
from hf_autolr.bench.workloads import Task, Workload

MAX_TRACE = 60  # points kept of the LR and training-loss curves


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in a (nested) state: what an optimizer or scheduler keeps."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def method_state_bytes(setup: Setup) -> int:
    total = tensor_bytes(setup.optimizer.state_dict().get("state", {}))
    if setup.scheduler is not None and hasattr(setup.scheduler, "state_dict"):
        total += tensor_bytes(setup.scheduler.state_dict())
    return total


def _short(value: float | None) -> float | None:
    """4 significant digits: enough for curves, and keeps results.json small."""
    return None if value is None else float(f"{value:.4g}")


def _thin(points: list, limit: int = MAX_TRACE) -> list:
    if len(points) <= limit:
        return points
    stride = math.ceil(len(points) / limit)
    return points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])


def train_step(task: Task, model: torch.nn.Module, setup: Setup, batch: Any) -> float:
    """One optimizer step; returns the step's training loss (mean over its micro-batches)."""
    parts = task.split(batch, setup.micro_batches) if setup.micro_batches else [batch]
    total = 0.0
    for part in parts:
        loss = task.loss(model, part) / len(parts)
        loss.backward()
        total += float(loss.detach())
    if setup.scheduler is not None and hasattr(setup.scheduler, "before_optimizer_step"):
        setup.scheduler.before_optimizer_step()
    setup.optimizer.step()
    setup.optimizer.zero_grad(set_to_none=True)
    if setup.scheduler is not None:
        if setup.observe:
            setup.scheduler.observe(total)
        setup.scheduler.step()
    return total


def _evaluate(task: Task, model: torch.nn.Module, setup: Setup, final: bool) -> tuple[float, float | None]:
    if setup.eval_weights:  # Schedule-Free: evaluate at x, with BatchNorm statistics recomputed there
        setup.optimizer.eval()
        task.recalibrate(model)
    try:
        loss = task.val_loss(model)
        metric = task.metric(model) if final else None
    finally:
        if setup.eval_weights:
            setup.optimizer.train()
    return loss, metric


def untrained(task: Task, seed: int) -> dict[str, Any]:
    """The seeded model before any step: the floor a workload's metric must rise clearly above."""
    model = task.model(seed)
    val = task.val_loss(model)
    return {"val_loss": val if math.isfinite(val) else None, "metric": task.metric(model), "seed": seed}


def _record(workload: Workload, method: Method, lr: float, seed: int, **fields: Any) -> dict[str, Any]:
    val = fields.pop("val")
    lrs, losses, cpu, step = fields.pop("lrs"), fields.pop("losses"), fields.pop("cpu"), fields["steps"]
    scheduler = fields.pop("scheduler")
    diagnostics = scheduler.diagnostics() if hasattr(scheduler, "diagnostics") else {}
    decisions = scheduler.decisions() if hasattr(scheduler, "decisions") else {}
    return {
        "workload": workload.name, "method": method.name, "lr": lr, "seed": seed,
        "val_loss": val if math.isfinite(val) else None, **fields,
        "lr_trace": _thin(lrs), "loss_trace": _thin(losses),
        "train_cpu_s": cpu, "ms_per_step": 1000 * cpu / max(step, 1),
        "diagnostics": {k: float(v) for k, v in diagnostics.items() if isinstance(v, (int, float))},
        "decisions": {k: v for k, v in decisions.items() if isinstance(v, (type(None), bool, int, float, str))},
        "outcome": scheduler.outcome() if hasattr(scheduler, "outcome") else None,
    }


def run_one(workload: Workload, task: Task, method: Method, lr: float, seed: int) -> dict[str, Any]:
    """Train ``method`` at ``lr`` (its peak LR, or its hint) for ``workload.steps`` steps."""
    if workload.driver == "trainer":
        return run_trainer(workload, task, method, lr, seed)
    model = task.model(seed)
    model.train()
    setup = method.build(model, lr, workload.steps, workload)
    batches = task.batches(seed)
    lrs, losses, evals = [], [], []
    cpu = wall = 0.0
    diverged = False
    step = 0
    try:
        while step < workload.steps and not setup.finished():
            lrs.append((step, _short(setup.effective_lr())))
            c0, w0 = time.process_time(), time.perf_counter()
            loss = train_step(task, model, setup, next(batches))
            cpu += time.process_time() - c0
            wall += time.perf_counter() - w0
            losses.append((step, _short(loss) if math.isfinite(loss) else None))
            step += 1
            if step % workload.eval_every == 0 and step < workload.steps and not setup.finished():
                val, _ = _evaluate(task, model, setup, final=False)
                evals.append((step, val if math.isfinite(val) else None, cpu))
                if not math.isfinite(val):
                    diverged = True
                    break
                if setup.on_eval is not None:
                    setup.on_eval(val)
        state_bytes = method_state_bytes(setup)
        val, metric = (math.inf, 0.0) if diverged else _evaluate(task, model, setup, final=True)
        if not math.isfinite(val):
            diverged = True
        evals.append((step, val if math.isfinite(val) else None, cpu))
        return _record(workload, method, lr, seed, steps=step, val=val, metric=metric, diverged=diverged, evals=evals,
                       lrs=lrs, losses=losses, cpu=cpu, train_wall_s=wall, state_bytes=state_bytes, scheduler=setup.scheduler)
    finally:
        setup.cleanup()


def run_trainer(workload: Workload, task: Task, method: Method, lr: float, seed: int) -> dict[str, Any]:
    """Train with ``transformers.Trainer`` exactly as a user would (``method.trainer``'s
    ``TrainingArguments``), evaluating every ``eval_every`` steps; the same record as :func:`run_one`."""
    import tempfile  # noqa: PLC0415

    import hf_autolr  # noqa: F401, PLC0415 - our lr_scheduler_type / optim names
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments  # noqa: PLC0415

    if method.trainer is None:
        raise ValueError(f"method {method.name!r} has no Trainer recipe; the {workload.name} workload runs through Trainer")
    recipe = method.trainer(workload.steps, workload)
    train, test = task.datasets
    lrs, losses, evals, clock = [], [], [], {"cpu": 0.0, "wall": 0.0, "start": None}

    class Record(TrainerCallback):
        def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
            group = optimizer.param_groups[0]
            lrs.append((state.global_step, _short(float(group["lr"]) * float(group.get("d", 1.0)))))
            clock["start"] = (time.process_time(), time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            c0, w0 = clock["start"]
            clock["cpu"] += time.process_time() - c0
            clock["wall"] += time.perf_counter() - w0

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append((state.global_step, _short(logs["loss"]) if math.isfinite(logs["loss"]) else None))

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            loss = metrics.get("eval_loss", math.inf)
            evals.append((state.global_step, loss if math.isfinite(loss) else None, clock["cpu"]))

    model = task.model(seed)
    with tempfile.TemporaryDirectory() as out:
        options = dict(
            output_dir=out, learning_rate=lr, max_steps=workload.steps, per_device_train_batch_size=workload.batch_size,
            per_device_eval_batch_size=256, weight_decay=0.01, eval_strategy="steps", eval_steps=workload.eval_every,
            logging_steps=max(1, workload.steps // MAX_TRACE), save_strategy="no", report_to="none", seed=seed,
            data_seed=10_000 + seed, dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=False,
            use_cpu=True, log_level="error",
        )
        args = TrainingArguments(**{**options, **recipe["args"]})
        optimizer = recipe["optimizer"](model, lr) if recipe["optimizer"] else None
        trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=test,
                          compute_metrics=task.compute_metrics, optimizers=(optimizer, None), callbacks=[Record()])
        trainer.remove_callback(PrinterCallback)  # the record keeps the logs; stdout stays quiet
        trainer.train()
        final = trainer.evaluate()
    evals = [e for e in evals if e[0] < trainer.state.global_step]  # the final evaluation is appended below
    val = final.get("eval_loss", math.inf)
    val = val if math.isfinite(val) else math.inf
    evals.append((trainer.state.global_step, val if math.isfinite(val) else None, clock["cpu"]))
    diverged = not math.isfinite(val)
    return _record(workload, method, lr, seed, steps=trainer.state.global_step, val=val,
                   metric=0.0 if diverged else float(final[f"eval_{workload.metric_name}"]), diverged=diverged, evals=evals,
                   lrs=lrs, losses=losses, cpu=clock["cpu"], train_wall_s=clock["wall"],
                   state_bytes=tensor_bytes(trainer.optimizer.state_dict().get("state", {})), scheduler=trainer.lr_scheduler)


def measure_overhead(workload: Workload, task: Task, method: Method, lr: float, *, blocks: int = 6, block_steps: int = 10,
                     seed: int = 0) -> dict[str, Any]:
    """Per-step CPU time and state bytes of ``method`` at ``lr`` against AdamW at the constant HF
    default LR (the ``constant`` baseline: an LR-free method's lr 1 would make AdamW diverge, and
    non-finite arithmetic runs at another speed), each on its own model, paired on the same
    batches by :func:`~hf_autolr.bench.timing.paired_cpu_time`; ``constant`` against itself
    measures the noise. The schedule both plan for is 10 × the steps timed; the state is what
    each keeps after the timed steps; the method's diagnostics then are kept too (e.g. LRTuner's
    discarded probe steps)."""
    arms, setups = {}, {}
    for arm, m, m_lr in (("method", method, lr), ("reference", METHODS["constant"], METHODS["constant"].default_lr)):
        model = task.model(seed)
        model.train()
        setups[arm] = m.build(model, m_lr, 10 * blocks * block_steps, workload)
        arms[arm] = functools.partial(train_step, task, model, setups[arm])
    try:
        timed = paired_cpu_time(arms, task.batches(seed), "reference", blocks=blocks, block_steps=block_steps)
        memory = {arm: method_state_bytes(setup) for arm, setup in setups.items()}
        scheduler = setups["method"].scheduler
        diagnostics = scheduler.diagnostics() if hasattr(scheduler, "diagnostics") else {}
    finally:
        for setup in setups.values():
            setup.cleanup()
    return {
        "workload": workload.name, "method": method.name, "lr": lr, "reference_lr": METHODS["constant"].default_lr,
        "overhead": timed["method"]["overhead"],
        "overhead_min": timed["method"]["overhead_min"], "overhead_max": timed["method"]["overhead_max"],
        "ms_per_step": timed["method"]["ms_per_step"], "reference_ms_per_step": timed["reference"]["ms_per_step"],
        "state_bytes": memory["method"], "reference_state_bytes": memory["reference"],
        "extra_state_bytes": memory["method"] - memory["reference"], "param_bytes": tensor_bytes(list(model.parameters())),
        "blocks": blocks, "block_steps": block_steps,
        "diagnostics": {k: float(v) for k, v in diagnostics.items() if isinstance(v, (int, float))},
    }


def prepare_process(threads: int) -> None:
    """One benchmark process: ``threads`` torch threads, offline, quiet transformers and datasets."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(threads)
    import datasets  # noqa: PLC0415
    import transformers  # noqa: PLC0415

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
