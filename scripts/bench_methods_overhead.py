"""Overhead of ``autodrop`` and ``lrtuner`` per optimizer step, against a plain HF linear schedule.

Same workloads as ``scripts/bench_overhead.py``: ``digits-mlp`` (an MLP 64-128-10 on
scikit-learn's digits, batch 128, AdamW, a plain PyTorch loop over pre-built batches: the
smallest step, so the worst case) and, with ``--workload minilm-qa``, the offline MiniLM-L6 BERT
with a QA head (batch 16, sequence length 128, AdamW).

Three arms, run in rotating order (round r starts with arm r mod 3) so machine load hits them
alike: ``linear`` (``get_linear_schedule_with_warmup``, stepped every step), ``autodrop`` and
``lrtuner`` at their defaults (``observe(loss.item())`` + ``step()`` every step). Every number is
taken twice, wall time (``perf_counter``) and CPU time of this process (``process_time``), because
the benchmark machine is shared.

Reported per workload and arm:

- the step time of the whole loop, and the time spent inside the scheduler's own calls
  (``observe`` + ``step``) measured in the same loop; the latter, minus the linear schedule's,
  over the step time is the direct overhead (free of the step-time noise that a 1 % difference
  drowns in);
- AutoDrop: its state bytes (the tracked-coordinate buffers) against the parameter bytes;
- LRTuner: probe steps and rolled-back steps over the schedule (real optimizer steps whose result
  is discarded: compute the run pays for), the peak snapshot bytes (parameters + optimizer
  state) against the parameter bytes, and the measured cost of one snapshot and one restore.

For ``minilm-qa`` the timed runs are a few steps of a 2000-step schedule, which holds no probe
round's restore and a fraction of a window: its per-step costs are therefore also computed from
components timed on the real model (``components``): AutoDrop's ``step()`` over whole windows, and
LRTuner's snapshot and restore, amortized over a default round (1 snapshot + 2 or 3 restores per
``tune_every`` steps of the explore phase).

    python scripts/bench_methods_overhead.py                        # digits-mlp
    python scripts/bench_methods_overhead.py --workload all --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import get_linear_schedule_with_warmup  # noqa: E402

import hf_autolr  # noqa: E402
from hf_autolr.bench.runner import tensor_bytes  # noqa: E402
from hf_autolr.schedulers.param_subset import optimizer_params  # noqa: E402

ARMS = ("linear", "autodrop", "lrtuner")


# -- workloads: the same as scripts/bench_overhead.py ---------------------------------------------
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_overhead import digits_workload, minilm_workload  # noqa: E402


# -- measuring --------------------------------------------------------------------------------------
class Clock:
    """Wall and process-CPU seconds accumulated over ``with clock:`` blocks."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self):
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c


def build(arm: str, optimizer, schedule_steps: int):
    if arm == "linear":
        return get_linear_schedule_with_warmup(optimizer, 0, schedule_steps)
    return hf_autolr.build_scheduler(arm, optimizer, 0, schedule_steps)


def timed_run(workload, arm: str, steps: int, schedule_steps: int) -> dict:
    """One run of ``steps`` optimizer steps; per-step seconds of the loop and of the scheduler."""
    make_model, batches, loss_fn, lr = workload
    torch.manual_seed(0)
    model = make_model()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    scheduler = build(arm, optimizer, schedule_steps)
    loop, inside = Clock(), Clock()
    peak_snapshot = 0
    with loop:
        for step in range(steps):
            loss = loss_fn(model, batches[step % len(batches)])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            with inside:
                if getattr(scheduler, "needs_loss", False):  # as the integrations do: autodrop needs none
                    scheduler.observe(loss.item())
                scheduler.step()
            if arm == "lrtuner" and scheduler.snapshot_params is not None and not peak_snapshot:
                peak_snapshot = tensor_bytes([scheduler.snapshot_params, scheduler.snapshot_state])
    out = {
        "loop_wall_ms": 1e3 * loop.wall / steps,
        "loop_cpu_ms": 1e3 * loop.cpu / steps,
        "sched_wall_us": 1e6 * inside.wall / steps,
        "sched_cpu_us": 1e6 * inside.cpu / steps,
    }
    param_bytes = sum(tensor_bytes(p) for p in model.parameters())
    if arm == "autodrop":
        out.update(
            param_bytes=param_bytes,
            state_tensor_bytes=tensor_bytes(scheduler.state_dict()),
            tracked_fraction=scheduler.tracked_fraction,
            window=scheduler.window,
            drops=scheduler.drops,
        )
    if arm == "lrtuner":
        d = scheduler.diagnostics()
        out.update(
            param_bytes=param_bytes,
            optimizer_state_bytes=tensor_bytes(optimizer.state_dict()["state"]),
            peak_snapshot_bytes=peak_snapshot,
            rounds=int(d["lrtuner/rounds"]),
            probe_steps=int(d["lrtuner/probe_steps"]),
            rolled_back_steps=int(d["lrtuner/discarded_steps"]),
            probe_steps_per_candidate=scheduler.probe_steps,
            tune_every=scheduler.tune_every,
        )
    return out


def median_ms(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of ``fn()``."""
    walls, cpus = [], []
    for _ in range(repeats):
        clock = Clock()
        with clock:
            fn()
        walls.append(clock.wall)
        cpus.append(clock.cpu)
    return 1e3 * statistics.median(walls), 1e3 * statistics.median(cpus)


def component_costs(workload, schedule_steps: int) -> dict:
    """AutoDrop's step over whole windows, LRTuner's snapshot/restore, on the real model."""
    make_model, batches, loss_fn, lr = workload
    torch.manual_seed(0)
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    for step in range(2):  # optimizer state exists, as in a real round
        loss_fn(model, batches[step]).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    autodrop = hf_autolr.build_scheduler("autodrop", optimizer, 0, schedule_steps)
    calls = 3 * autodrop.window  # whole windows, so the per-window angle work is included once each
    clock = Clock()
    with clock:
        for _ in range(calls):
            autodrop.step()
    tuner = hf_autolr.build_scheduler("lrtuner", optimizer, 0, schedule_steps)
    snap_wall, snap_cpu = median_ms(tuner._take_snapshot, 5)
    restore_wall, restore_cpu = median_ms(tuner._restore_snapshot, 5)
    explore_steps = tuner.explore_end

    # default rounds start at steps 1, 1 + tune_every, ... while a whole round fits in explore
    rounds = len(range(1, explore_steps - 3 * tuner.probe_steps + 1, tuner.tune_every))

    def amortized(snap, restore, restores):  # per step over the explore phase, and over the run
        total = rounds * (snap + restores * restore)
        return 1e3 * total / explore_steps, 1e3 * total / schedule_steps

    return {
        "autodrop_step_wall_us": 1e6 * clock.wall / calls,
        "autodrop_step_cpu_us": 1e6 * clock.cpu / calls,
        "lrtuner_schedule": {  # at most, if the explore phase is not left early (patience)
            "probe_steps": tuner.probe_steps,
            "tune_every": tuner.tune_every,
            "rounds": rounds,
            "probe_steps_total": 3 * tuner.probe_steps * rounds,
            "rolled_back_steps_range": [2 * tuner.probe_steps * rounds, 3 * tuner.probe_steps * rounds],
        },
        "lrtuner_snapshot_ms": [snap_wall, snap_cpu],
        "lrtuner_restore_ms": [restore_wall, restore_cpu],
        "lrtuner_amortized_us_per_step_wall": {
            "explore_2_restores": amortized(snap_wall, restore_wall, 2)[0],
            "explore_3_restores": amortized(snap_wall, restore_wall, 3)[0],
            "whole_run_3_restores": amortized(snap_wall, restore_wall, 3)[1],
        },
        "lrtuner_amortized_us_per_step_cpu": {
            "explore_2_restores": amortized(snap_cpu, restore_cpu, 2)[0],
            "explore_3_restores": amortized(snap_cpu, restore_cpu, 3)[0],
            "whole_run_3_restores": amortized(snap_cpu, restore_cpu, 3)[1],
        },
    }


def measure(name: str, rounds: int, steps: int, schedule_steps: int) -> dict:
    workload = digits_workload() if name == "digits-mlp" else minilm_workload()
    timed_run(workload, "linear", min(steps, 3), schedule_steps)  # warm-up
    runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for r in range(rounds):
        order = ARMS[r % 3 :] + ARMS[: r % 3]
        for arm in order:
            runs[arm].append(timed_run(workload, arm, steps, schedule_steps))
        line = ", ".join(f"{a} {runs[a][-1]['loop_wall_ms']:.3f}/{runs[a][-1]['loop_cpu_ms']:.3f}" for a in ARMS)
        print(f"  {name} round {r + 1}/{rounds} (ms/step wall/cpu): {line}", flush=True)
    result = {"workload": name, "rounds": rounds, "steps_per_run": steps, "schedule_steps": schedule_steps, "arms": {}}
    base = {k: statistics.median(x[k] for x in runs["linear"]) for k in ("loop_wall_ms", "loop_cpu_ms", "sched_wall_us", "sched_cpu_us")}
    for arm in ARMS:
        med = {k: statistics.median(x[k] for x in runs[arm]) for k in base}
        arm_result = {**runs[arm][-1], **med}  # counts and bytes from the last run (deterministic)
        arm_result["min_over_rounds"] = {k: min(x[k] for x in runs[arm]) for k in base}
        arm_result["per_round"] = {k: [x[k] for x in runs[arm]] for k in base}
        arm_result["loop_vs_linear_pct_wall"] = 100 * (med["loop_wall_ms"] / base["loop_wall_ms"] - 1)
        arm_result["loop_vs_linear_pct_cpu"] = 100 * (med["loop_cpu_ms"] / base["loop_cpu_ms"] - 1)
        arm_result["direct_overhead_pct_wall"] = 100 * (med["sched_wall_us"] - base["sched_wall_us"]) / (1e3 * base["loop_wall_ms"])
        arm_result["direct_overhead_pct_cpu"] = 100 * (med["sched_cpu_us"] - base["sched_cpu_us"]) / (1e3 * base["loop_cpu_ms"])
        result["arms"][arm] = arm_result
    result["components"] = component_costs(workload, schedule_steps)
    return result


def report(results: list[dict]) -> None:
    print("\nMedians over rounds (scheduler calls: median, and min over rounds, the least disturbed by load):")
    print("\n| workload | arm | step (wall / cpu) | scheduler calls per step (wall / cpu; min cpu) | direct overhead (wall / cpu) | loop vs linear (wall / cpu) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        for arm, a in r["arms"].items():
            print(
                f"| {r['workload']} | {arm} | {a['loop_wall_ms']:.3f} / {a['loop_cpu_ms']:.3f} ms "
                f"| {a['sched_wall_us']:.1f} / {a['sched_cpu_us']:.1f} µs; {a['min_over_rounds']['sched_cpu_us']:.1f} µs "
                f"| {a['direct_overhead_pct_wall']:.2f} / {a['direct_overhead_pct_cpu']:.2f} % "
                f"| {a['loop_vs_linear_pct_wall']:+.1f} / {a['loop_vs_linear_pct_cpu']:+.1f} % |"
            )
    for r in results:
        ad, lt, c = r["arms"]["autodrop"], r["arms"]["lrtuner"], r["components"]
        mib = 2**20
        print(f"\n{r['workload']} (schedule of {r['schedule_steps']} steps, {r['steps_per_run']} timed per run):")
        print(
            f"  autodrop: window {ad['window']}, tracks {100 * ad['tracked_fraction']:.1f} % of coordinates, "
            f"state {ad['state_tensor_bytes'] / mib:.3f} MiB = {ad['state_tensor_bytes'] / ad['param_bytes']:.3f} x "
            f"parameter bytes ({ad['param_bytes'] / mib:.3f} MiB); step() on the real model "
            f"{c['autodrop_step_wall_us']:.1f} / {c['autodrop_step_cpu_us']:.1f} µs (wall / cpu); drops {ad['drops']}"
        )
        if r["steps_per_run"] == r["schedule_steps"]:  # the timed runs hold the whole schedule
            print(
                f"  lrtuner: probe_steps {lt['probe_steps_per_candidate']}, tune_every {lt['tune_every']}: "
                f"{lt['rounds']} rounds, {lt['probe_steps']} probe steps, {lt['rolled_back_steps']} rolled back "
                f"= {100 * lt['rolled_back_steps'] / r['steps_per_run']:.1f} % of the {r['steps_per_run']} steps"
            )
        else:
            plan = c["lrtuner_schedule"]
            low, high = plan["rolled_back_steps_range"]
            print(
                f"  lrtuner: probe_steps {plan['probe_steps']}, tune_every {plan['tune_every']}: at most "
                f"{plan['rounds']} rounds, {plan['probe_steps_total']} probe steps, {low}-{high} rolled back "
                f"= {100 * low / r['schedule_steps']:.1f}-{100 * high / r['schedule_steps']:.1f} % of the "
                f"{r['schedule_steps']} steps"
            )
        if lt["peak_snapshot_bytes"]:
            print(
                f"  lrtuner snapshot {lt['peak_snapshot_bytes'] / mib:.3f} MiB = "
                f"{lt['peak_snapshot_bytes'] / lt['param_bytes']:.2f} x parameter bytes "
                f"(parameters + optimizer state {lt['optimizer_state_bytes'] / mib:.3f} MiB), held during rounds only"
            )
        snap, restore = c["lrtuner_snapshot_ms"], c["lrtuner_restore_ms"]
        amort_w, amort_c = c["lrtuner_amortized_us_per_step_wall"], c["lrtuner_amortized_us_per_step_cpu"]
        print(
            f"  lrtuner snapshot {snap[0]:.3f} / {snap[1]:.3f} ms, restore {restore[0]:.3f} / {restore[1]:.3f} ms "
            f"(wall / cpu); amortized per explore step {amort_w['explore_2_restores']:.1f}-{amort_w['explore_3_restores']:.1f} µs wall, "
            f"{amort_c['explore_2_restores']:.1f}-{amort_c['explore_3_restores']:.1f} µs cpu"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=["digits-mlp", "minilm-qa", "all"], default="digits-mlp")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the three arms per workload")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--output", default="results/methods_overhead.json")
    cli = parser.parse_args()
    torch.set_num_threads(cli.threads)

    plans = {
        # (steps per timed run, length of the schedule the method plans for)
        "digits-mlp": (1400, 1400),  # 100 epochs of 14 batches: the whole schedule, rounds included
        "minilm-qa": (6, 2000),  # a 2000-step fine-tune; 6 steps per arm per round
    }
    names = list(plans) if cli.workload == "all" else [cli.workload]
    results = [measure(name, cli.rounds, *plans[name]) for name in names]
    record = {
        "command": "python scripts/bench_methods_overhead.py " + " ".join(f"--{k} {v}" for k, v in vars(cli).items()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "load_average": os.getloadavg(),
        "results": results,
    }
    Path(cli.output).parent.mkdir(parents=True, exist_ok=True)
    Path(cli.output).write_text(json.dumps(record, indent=2))
    report(results)
    print(f"\nwritten to {cli.output}")


if __name__ == "__main__":
    main()
