"""Suite ``overhead``: what every method costs per optimizer step, and the state it keeps, against
AdamW at a constant LR (:func:`~hf_autolr.bench.runner.measure_overhead`: the two on their own
models, on the same batches, alternating in blocks in one process, in CPU time).

Workloads: the quality suite's plain-loop ones (default: ``digits_mlp``, the smallest step, so
the worst case, and ``embedded_qa_minilm``, MiniLM-L6 fine-tuning); every method except the two
grid baselines, ``constant`` against itself giving the noise. Full tier: 20 blocks of 50 steps on
digits, 3 blocks of 2 steps on QA (a step takes seconds there); quick tier: 2 × 3 and 1 × 1 on the
quick workloads.

    python -m hf_autolr.bench overhead --quick --methods constant,autolr_gp
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hf_autolr.bench.cli import check_names
from hf_autolr.bench.methods import BASELINES, METHODS
from hf_autolr.bench.workloads import QUICK_WORKLOADS, WORKLOADS, Workload, select

RESUMABLE = False
DEFAULT_WORKLOADS = ("digits_mlp", "embedded_qa_minilm")
SIZES = {"full": {"digits": (20, 50), "qa": (3, 2)}, "quick": {"digits": (2, 3), "qa": (1, 1)}}  # loader -> (blocks, steps)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    loops = [n for n, w in WORKLOADS.items() if w.driver == "loop"]
    parser.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS), help=f"comma-separated subset of: {', '.join(loops)}")
    parser.add_argument("--methods", default=None, help="comma-separated subset of the methods (default: all but the grid baselines)")
    parser.add_argument("--squad-file", default=None, help="SQuAD JSON, for the squad_minilm workload")


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    table = QUICK_WORKLOADS if args.quick else WORKLOADS
    check_names(parser, "--workloads", args.workloads, [n for n, w in table.items() if w.driver == "loop"])
    check_names(parser, "--methods", args.methods, [m for m in METHODS if m not in BASELINES])


def config(args: argparse.Namespace) -> dict[str, Any]:
    return {"workloads": args.workloads.split(","), "methods": _methods(args), "sizes": SIZES[_tier(args)],
            "reference": "constant"}


def _tier(args: argparse.Namespace) -> str:
    return "quick" if args.quick else "full"


def _methods(args: argparse.Namespace) -> list[str]:
    return args.methods.split(",") if args.methods else [m for m in METHODS if m not in BASELINES]


def measure_all(workloads: list[Workload], methods: list[str], results: dict[str, Any], save,
                sizes: dict[str, tuple[int, int]]) -> None:
    """One record per plain-loop workload and method (grid baselines left out), keyed
    ``overhead|workload|method``; a record already in ``results`` is kept."""
    from hf_autolr.bench.runner import measure_overhead  # noqa: PLC0415

    for w in (w for w in workloads if w.driver == "loop"):  # Trainer workloads: timed by the loop workloads
        task = None
        for m in (m for m in methods if m not in BASELINES):
            key = f"overhead|{w.name}|{m}"
            if key in results["runs"]:
                continue
            task = task or w.load()
            blocks, block_steps = sizes[w.loader]
            record = measure_overhead(w, task, METHODS[m], METHODS[m].default_lr, blocks=blocks, block_steps=block_steps)
            results["runs"][key] = dict(record, phase="overhead")
            save()


def run(args: argparse.Namespace, results: dict[str, Any], save) -> None:
    workloads = select(args.workloads, quick=args.quick, squad_file=args.squad_file)
    measure_all(workloads, _methods(args), results, save, SIZES[_tier(args)])


def report(results: dict[str, Any], out: Path) -> str:
    records = list(results["runs"].values())
    lines = ["## Per-step overhead and extra state against AdamW at a constant LR (paired, alternating blocks, CPU time)\n\n",
             "overhead = median over blocks of (method's time / AdamW's) − 1 [min … max]; `constant` is AdamW against itself "
             "(the noise); state = optimizer + scheduler tensors beyond AdamW's, in parameter sizes.\n"]
    for w in dict.fromkeys(r["workload"] for r in records):
        mine = [r for r in records if r["workload"] == w]
        first = mine[0]
        lines += [f"\n### {w} ({first['blocks']} blocks × {first['block_steps']} steps; AdamW {first['reference_ms_per_step']:.3g} ms/step, "
                  f"parameters {first['param_bytes'] / 2**20:.3g} MiB)\n\n",
                  "| method | ms/step | AdamW ms/step | overhead | extra state |\n|---|---|---|---|---|\n"]
        for r in mine:
            lines.append(f"| {r['method']} | {r['ms_per_step']:.3g} | {r['reference_ms_per_step']:.3g} | {100 * r['overhead']:+.1f}% "
                         f"[{100 * r['overhead_min']:+.1f} … {100 * r['overhead_max']:+.1f}] | "
                         f"{r['extra_state_bytes'] / r['param_bytes']:+.2f} × ({r['extra_state_bytes'] / 2**20:+.3g} MiB) |\n")
    return "".join(lines)
