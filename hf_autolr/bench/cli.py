"""``hf-autolr-bench`` / ``python scripts/benchmark.py``: the benchmark, end to end.

Phases: (0) each workload's untrained model (the floor its metric must clear); (1) the baselines'
LR grid on the tuning seeds, every method and peer at its default on the evaluation seeds, and the
LR-hint sensitivity runs (×0.01 … ×100 on the first evaluation seed; slow workloads take fewer
seeds and hints, as their ``Workload`` says);
(2) the two baselines at their selected LR on the evaluation seeds; (3) per-step overhead and
state memory, paired in one process against AdamW at a constant LR; (4) ``results.json``,
``table.md``, ``ratio_to_tuned.png`` and ``curves.png`` in ``--out``.

Resumable: a run already in ``results.json`` is not run again (delete the file to start afresh).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from hf_autolr.bench.methods import BASELINES, METHODS
from hf_autolr.bench.report import markdown, plots, select_grid, summarise
from hf_autolr.bench.workloads import QUICK_WORKLOADS, WORKLOADS, Workload

HINT_MULTIPLIERS = (0.01, 0.1, 10.0, 100.0)
FULL = {"tuning_seeds": (100, 101), "eval_seeds": (0, 1, 2), "hints": HINT_MULTIPLIERS, "grid": None}
QUICK = {"tuning_seeds": (100,), "eval_seeds": (0,), "hints": (10.0,), "grid": 2}
_WORKER_STATE: dict[str, Any] = {}


def _key(phase: str, workload: str, method: str, lr: float, seed: int) -> str:
    return f"{phase}|{workload}|{method}|{lr:.4g}|{seed}"


def _init_worker(threads: int) -> None:
    import torch  # noqa: PLC0415

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(threads)
    import datasets  # noqa: PLC0415
    import transformers  # noqa: PLC0415

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def _execute(job: dict[str, Any], workload: Workload) -> dict[str, Any]:
    """Run one job in this (worker) process; tasks are loaded once per process."""
    from hf_autolr.bench.runner import run_one  # noqa: PLC0415

    from hf_autolr.bench.runner import untrained  # noqa: PLC0415

    if workload.name not in _WORKER_STATE:
        _WORKER_STATE[workload.name] = workload.load()
    if job["phase"] == "untrained":
        return dict(untrained(_WORKER_STATE[workload.name], job["seed"]), workload=workload.name, phase="untrained",
                    method=job["method"], lr=job["lr"])
    record = run_one(workload, _WORKER_STATE[workload.name], METHODS[job["method"]], job["lr"], job["seed"])
    record.update(phase=job["phase"], multiplier=job.get("multiplier", 1.0))
    return record


def _save(results: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, separators=(",", ":")))
    tmp.replace(path)


def _run_jobs(jobs: list[dict], workloads: list[Workload], results: dict, path: Path, args: argparse.Namespace,
              desc: str) -> None:
    from tqdm.auto import tqdm  # noqa: PLC0415

    by_name = {w.name: w for w in workloads}
    todo = [j for j in jobs if j["key"] not in results["runs"]]
    if not todo:
        return
    bar = tqdm(total=len(todo), desc=desc, disable=args.no_progress)
    if args.jobs <= 1:
        _init_worker(args.threads)
        for job in todo:
            results["runs"][job["key"]] = _execute(job, by_name[job["workload"]])
            _save(results, path)
            bar.update()
    else:
        import multiprocessing as mp  # noqa: PLC0415

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                 initargs=(args.threads,)) as pool:
            futures = {pool.submit(_execute, job, by_name[job["workload"]]): job for job in todo}
            for future in as_completed(futures):
                results["runs"][futures[future]["key"]] = future.result()
                _save(results, path)
                bar.update()
    bar.close()


def _grid(workload, tier) -> tuple[float, ...]:
    if tier["grid"] is None:
        return workload.lr_grid
    middle = len(workload.lr_grid) // 2
    return workload.lr_grid[middle : middle + tier["grid"]]


def _eval_seeds(workload, tier) -> tuple[int, ...]:
    return workload.eval_seeds if workload.eval_seeds and tier is FULL else tier["eval_seeds"]


def runs_on(workload, method: str) -> bool:
    """Whether ``method`` runs on ``workload``: on Trainer workloads, only methods with a Trainer recipe."""
    return workload.driver != "trainer" or METHODS[method].trainer is not None


def plan_first(workloads, methods, tier) -> list[dict]:
    jobs = []
    for w in workloads:
        seeds = _eval_seeds(w, tier)
        jobs.append(dict(phase="untrained", workload=w.name, method="none", lr=0.0, seed=seeds[0]))
        for m in (m for m in methods if runs_on(w, m)):
            method = METHODS[m]
            if m in BASELINES:
                tuning = w.tuning_seeds or tier["tuning_seeds"]
                jobs += [dict(phase="grid", workload=w.name, method=m, lr=lr, seed=s) for lr in _grid(w, tier) for s in tuning]
                continue
            jobs += [dict(phase="eval", workload=w.name, method=m, lr=method.default_lr, seed=s) for s in seeds]
            if method.takes_hint:
                hints = w.hint_multipliers if w.hint_multipliers and tier is FULL else tier["hints"]
                jobs += [dict(phase="hint", workload=w.name, method=m, lr=method.default_lr * k, seed=seeds[0], multiplier=k)
                         for k in hints]
    return [dict(j, key=_key(j["phase"], j["workload"], j["method"], j["lr"], j["seed"])) for j in jobs]


def plan_selected(workloads, methods, tier, results) -> list[dict]:
    runs = list(results["runs"].values())
    jobs = []
    for w in workloads:
        for m in (b for b in methods if b in BASELINES and runs_on(w, b)):
            lr = select_grid(runs, w.name, m)
            jobs += [dict(phase="eval", workload=w.name, method=m, lr=lr, seed=s, key=_key("eval", w.name, m, lr, s))
                     for s in _eval_seeds(w, tier)]
    return jobs


def _overheads(workloads, methods, results, path, args) -> None:
    from hf_autolr.bench.runner import measure_overhead  # noqa: PLC0415

    _init_worker(args.threads)
    blocks, block_steps = (2, 3) if args.quick else (6, 30)
    for w in (w for w in workloads if w.driver == "loop"):  # Trainer workloads: timed by the loop workloads
        task = None
        for m in methods:
            key = f"{w.name}|{m}"
            if m in BASELINES or key in results["overhead"]:
                continue
            task = task or w.load()
            size = (min(blocks, 3), min(block_steps, 2)) if w.loader == "qa" else (blocks, block_steps)
            results["overhead"][key] = measure_overhead(w, task, METHODS[m], METHODS[m].default_lr, blocks=size[0], block_steps=size[1])
            _save(results, path)


def _machine() -> dict[str, Any]:
    import torch  # noqa: PLC0415
    import transformers  # noqa: PLC0415

    return {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "load_average": os.getloadavg(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke tier: short runs, 1 seed, 2 grid points (minutes)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default results/benchmark, or results/tmp/benchmark_quick with --quick)")
    parser.add_argument("--workloads", default=None, help=f"comma-separated subset of: {', '.join(WORKLOADS)}")
    parser.add_argument("--methods", default=None, help=f"comma-separated subset of: {', '.join(METHODS)}")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one process each (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--squad-file", default=None, help="SQuAD JSON for the squad_minilm workload (scripts/benchmark.py passes the repository's "
                        "SQuAD sample when it sits beside the clone); without it that workload is left out")
    parser.add_argument("--no-overhead", action="store_true", help="skip the paired overhead measurement")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    table = QUICK_WORKLOADS if args.quick else WORKLOADS
    for option, chosen, known in (("--workloads", args.workloads, table), ("--methods", args.methods, METHODS)):
        unknown = [n for n in (chosen or "").split(",") if n and n not in known]
        if unknown:
            parser.error(f"{option}: unknown {', '.join(unknown)}; accepted values: {', '.join(known)}")
    if args.jobs < 1 or args.threads < 1:
        parser.error("--jobs and --threads must be >= 1")
    return args


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    table = QUICK_WORKLOADS if args.quick else WORKLOADS
    if args.squad_file:
        from dataclasses import replace  # noqa: PLC0415

        table = {n: replace(w, options={**w.options, "squad_file": args.squad_file}) if w.needs_squad_file else w for n, w in table.items()}
    names = args.workloads.split(",") if args.workloads else [n for n, w in table.items() if not w.needs_squad_file or args.squad_file]
    if any(table[n].needs_squad_file for n in names) and not args.squad_file:
        raise SystemExit("the squad_minilm workload needs --squad-file (a SQuAD JSON file)")
    if len(names) < len(table) and not args.workloads:
        print("no --squad-file: the squad_minilm workload is left out", file=sys.stderr)
    workloads = [table[n] for n in names]
    methods = args.methods.split(",") if args.methods else list(METHODS)
    tier = QUICK if args.quick else FULL
    out = args.out or Path("results/tmp/benchmark_quick" if args.quick else "results/benchmark")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {"runs": {}, "overhead": {}}
    results["meta"] = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
                       "tier": "quick" if args.quick else "full", "machine": _machine(), "tuning_seeds": tier["tuning_seeds"],
                       "eval_seeds": tier["eval_seeds"], "hint_multipliers": tier["hints"],
                       "workloads": {w.name: {"title": w.title, "steps": w.steps, "batch_size": w.batch_size,
                                              "micro_batch": w.micro_batch, "lr_grid": w.lr_grid} for w in workloads}}
    start = time.time()
    _run_jobs(plan_first(workloads, methods, tier), workloads, results, path, args, "grid, methods, hints")
    _run_jobs(plan_selected(workloads, methods, tier, results), workloads, results, path, args, "tuned baselines")
    if not args.no_overhead:
        _overheads(workloads, methods, results, path, args)
    results["meta"]["last_invocation_wall_s"] = time.time() - start
    _save(results, path)
    summary = summarise(results)
    if not summary:
        raise RuntimeError(f"no finished evaluation runs in {path}: nothing to report")
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    (out / "table.md").write_text(markdown(summary, results))
    plots(summary, results, out)
    print((out / "table.md").read_text())
    return out


if __name__ == "__main__":  # pragma: no cover
    main()
