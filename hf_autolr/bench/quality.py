"""Suite ``quality``: every hf_autolr method and the peers (Prodigy, Schedule-Free, D-Adaptation,
HF's schedules) against a tuned baseline, on the workloads of :mod:`hf_autolr.bench.workloads`.

Phases: (0) each workload's untrained model (the floor its metric must clear); (1) the baselines'
LR grid on the tuning seeds, every method and peer at its default on the evaluation seeds, and the
LR-hint sensitivity runs (×0.01 … ×100 on the first evaluation seed; slow workloads take fewer
seeds and hints, as their ``Workload`` says); (2) the two baselines at their selected LR on the
evaluation seeds; (3) per-step overhead and state memory against AdamW at a constant LR (the
``overhead`` suite's measurement). Report: ``table.md``, ``summary.json``, ``ratio_to_tuned.png``
and ``curves.png``.

Resumable: a run already in ``results.json`` is not run again (delete the file to start afresh).

    python -m hf_autolr.bench quality --quick --workloads digits_mlp --methods tuned_linear,autolr_gp
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from hf_autolr.bench.cli import check_names
from hf_autolr.bench.methods import BASELINES, METHODS
from hf_autolr.bench.report import markdown, plots, select_grid, summarise
from hf_autolr.bench.schema import MACHINE
from hf_autolr.bench.workloads import QUICK_WORKLOADS, WORKLOADS, Workload, select

RESUMABLE = True
HINT_MULTIPLIERS = (0.01, 0.1, 10.0, 100.0)
FULL = {"tuning_seeds": (100, 101), "eval_seeds": (0, 1, 2), "hints": HINT_MULTIPLIERS, "grid": None}
QUICK = {"tuning_seeds": (100,), "eval_seeds": (0,), "hints": (10.0,), "grid": 2}
OVERHEAD_SIZES = {"full": {"digits": (6, 30), "qa": (3, 2)}, "quick": {"digits": (2, 3), "qa": (2, 2)}}  # (blocks, steps)
_WORKER_STATE: dict[str, Any] = {}


def _key(phase: str, workload: str, method: str, lr: float, seed: int) -> str:
    return f"{phase}|{workload}|{method}|{lr:.4g}|{seed}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workloads", default=None, help=f"comma-separated subset of: {', '.join(WORKLOADS)}")
    parser.add_argument("--methods", default=None, help=f"comma-separated subset of: {', '.join(METHODS)}")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one process each (default 2)")
    parser.add_argument("--squad-file", default=None, help="SQuAD JSON for the squad_minilm workload (scripts/benchmark.py passes the repository's "
                        "SQuAD sample when it sits beside the clone); without it that workload is left out")
    parser.add_argument("--no-overhead", action="store_true", help="skip the paired overhead measurement")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    check_names(parser, "--workloads", args.workloads, list(QUICK_WORKLOADS if args.quick else WORKLOADS))
    check_names(parser, "--methods", args.methods, list(METHODS))
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")


def config(args: argparse.Namespace) -> dict[str, Any]:
    tier = QUICK if args.quick else FULL
    return {"tuning_seeds": tier["tuning_seeds"], "eval_seeds": tier["eval_seeds"], "hint_multipliers": tier["hints"],
            "workloads": {w.name: {"title": w.title, "steps": w.steps, "batch_size": w.batch_size, "micro_batch": w.micro_batch,
                                   "lr_grid": w.lr_grid} for w in select(args.workloads, quick=args.quick, squad_file=args.squad_file)}}


def _execute(job: dict[str, Any], workload: Workload) -> dict[str, Any]:
    """Run one job in this (worker) process; tasks are loaded once per process."""
    from hf_autolr.bench.runner import run_one, untrained  # noqa: PLC0415

    if workload.name not in _WORKER_STATE:
        _WORKER_STATE[workload.name] = workload.load()
    if job["phase"] == "untrained":
        return dict(untrained(_WORKER_STATE[workload.name], job["seed"]), workload=workload.name, phase="untrained",
                    method=job["method"], lr=job["lr"])
    record = run_one(workload, _WORKER_STATE[workload.name], METHODS[job["method"]], job["lr"], job["seed"])
    record.update(phase=job["phase"], multiplier=job.get("multiplier", 1.0))
    return record


def _run_jobs(jobs: list[dict], workloads: list[Workload], results: dict, save, args: argparse.Namespace, desc: str) -> None:
    from tqdm.auto import tqdm  # noqa: PLC0415

    from hf_autolr.bench.runner import prepare_process  # noqa: PLC0415

    by_name = {w.name: w for w in workloads}
    todo = [j for j in jobs if j["key"] not in results["runs"]]
    if not todo:
        return
    bar = tqdm(total=len(todo), desc=desc, disable=args.no_progress)
    if args.jobs <= 1:
        for job in todo:
            results["runs"][job["key"]] = _execute(job, by_name[job["workload"]])
            save()
            bar.update()
    else:
        import multiprocessing as mp  # noqa: PLC0415

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn"), initializer=prepare_process,
                                 initargs=(args.threads,)) as pool:
            futures = {pool.submit(_execute, job, by_name[job["workload"]]): job for job in todo}
            for future in as_completed(futures):
                results["runs"][futures[future]["key"]] = future.result()
                save()
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
    runs = [r for r in results["runs"].values() if r["phase"] != "overhead"]
    jobs = []
    for w in workloads:
        for m in (b for b in methods if b in BASELINES and runs_on(w, b)):
            lr = select_grid(runs, w.name, m)
            jobs += [dict(phase="eval", workload=w.name, method=m, lr=lr, seed=s, key=_key("eval", w.name, m, lr, s))
                     for s in _eval_seeds(w, tier)]
    return jobs


def upgrade_legacy(results: dict[str, Any]) -> dict[str, Any]:
    """A ``results.json`` of the layout before the suites (``runs``, ``overhead``, ``meta``) in the
    suites' layout, its records unchanged, so that a run resumes from it."""
    if "meta" not in results:
        return results
    meta = results.pop("meta")
    for key, record in results.pop("overhead", {}).items():
        results["runs"][f"overhead|{key}"] = dict(record, phase="overhead")
    config = {k: v for k, v in meta.items() if k not in ("command", "machine", "tier", "last_invocation_wall_s")}
    machine = meta.get("machine", {})
    machine = {**dict.fromkeys(MACHINE), **machine, "cpu": machine.get("processor"), "cores": machine.get("cpus")}
    return {"suite": "quality", "tier": meta.get("tier", "full"), "command": meta.get("command", ""), "machine": machine,
            "created": None, "updated": None, "invocations": [], "config": config, "runs": results["runs"]}


def run(args: argparse.Namespace, results: dict[str, Any], save) -> None:
    from hf_autolr.bench.overhead import measure_all  # noqa: PLC0415

    workloads = select(args.workloads, quick=args.quick, squad_file=args.squad_file)
    methods = args.methods.split(",") if args.methods else list(METHODS)
    tier = QUICK if args.quick else FULL
    _run_jobs(plan_first(workloads, methods, tier), workloads, results, save, args, "grid, methods, hints")
    _run_jobs(plan_selected(workloads, methods, tier, results), workloads, results, save, args, "tuned baselines")
    if not args.no_overhead:
        measure_all(workloads, methods, results, save, OVERHEAD_SIZES["quick" if args.quick else "full"])


def report(results: dict[str, Any], out: Path) -> str:
    summary = summarise(results)
    if not summary:
        raise RuntimeError(f"no finished evaluation runs in {out / 'results.json'}: nothing to report")
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    plots(summary, results, out)
    return markdown(summary, results)
