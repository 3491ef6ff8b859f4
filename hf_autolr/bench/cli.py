"""``python -m hf_autolr.bench <suite> [--quick] [--out DIR] [options]`` (also ``hf-autolr-bench``).

Without a suite name it runs the ``quality`` suite (so ``scripts/benchmark.py --quick`` works as
it always has). Every suite writes ``<out>/results.json`` in one layout (see
:mod:`hf_autolr.bench`), then the shared report step turns it into ``table.md`` (and plots);
``--report-only`` redoes that step from the file alone. ``<suite> --help`` lists its options.

    python -m hf_autolr.bench adascale --quick      # -> results/tmp/adascale_quick/
    python -m hf_autolr.bench large_batch           # -> results/large_batch/
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from hf_autolr.bench import schema

SUITES = {
    "quality": "every method and peer against a tuned baseline (default)",
    "overhead": "per-step cost and state of every method against AdamW at a constant LR",
    "adascale": "AdaScale at scale S = 4, 8, 16 against linear scaling with warmup (Johnson et al. 2020)",
    "large_batch": "SGD / LARS / CLARS at a large batch, with and without warmup (Huo et al. 2020)",
    "clars_cost": "CLARS step cost and peak memory against SGD and LARS",
    "adascale_cost": "AdaScale's per-step cost in 2-process DDP and with accumulation, against a constant LR",
}


def check_names(parser: argparse.ArgumentParser, option: str, chosen: str | None, known: list[str]) -> None:
    """Fail with the accepted values if the comma-separated ``chosen`` names one not ``known``."""
    unknown = [n for n in (chosen or "").split(",") if n and n not in known]
    if unknown:
        parser.error(f"{option}: unknown {', '.join(unknown)}; accepted values: {', '.join(known)}")


def suite_module(name: str) -> ModuleType:
    return importlib.import_module(f"hf_autolr.bench.{name}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``[suite] options`` -> the suite's options, with ``args.suite`` set."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = argv.pop(0) if argv and argv[0] in SUITES else "quality"
    suite = suite_module(name)
    listing = "\n".join(f"  {n:12} {what}" for n, what in SUITES.items())
    parser = argparse.ArgumentParser(prog=f"python -m hf_autolr.bench {name}", formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description=f"{suite.__doc__}\nSuites (the first argument; default quality):\n{listing}")
    parser.add_argument("--quick", action="store_true", help="the quick tier: the same pipeline at a fraction of the cost")
    parser.add_argument("--out", type=Path, default=None, help=f"results folder (default {_default_out(name, False)}, "
                        f"with --quick {_default_out(name, True)})")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    parser.add_argument("--report-only", action="store_true", help="only redo table.md and the plots from <out>/results.json")
    suite.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if hasattr(suite, "check_arguments"):
        suite.check_arguments(parser, args)
    args.suite = name
    return args


def _default_out(name: str, quick: bool) -> Path:
    return Path(f"results/tmp/{name}_quick" if quick else f"results/{name}")


def _command(argv: list[str], args: argparse.Namespace, applied: dict[str, Any]) -> str:
    """The invocation as ``python -m hf_autolr.bench <suite> …``, with the defaults applied spelt out."""
    given = argv[1:] if argv and argv[0] == args.suite else argv
    return " ".join(["python -m hf_autolr.bench", args.suite, *given, *(f"--{k.replace('_', '-')} {v}" for k, v in applied.items())])


def main(argv: list[str] | None = None, defaults: dict[str, Any] | None = None) -> Path:
    """Run a suite (or only its report) and return its results folder. ``defaults``: option values
    used where the suite has the option and the command line leaves it unset."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    applied = {k: v for k, v in (defaults or {}).items() if getattr(args, k, False) is None}
    for key, value in applied.items():
        setattr(args, key, value)
    suite = suite_module(args.suite)
    out = args.out or _default_out(args.suite, args.quick)
    path = out / "results.json"
    if args.report_only:
        if not path.exists():
            raise SystemExit(f"--report-only: no {path} (run the suite first, or give its --out)")
        results = getattr(suite, "upgrade_legacy", lambda r: r)(schema.load(path))
    else:
        results = _run(suite, args, path, _command(argv, args, applied))
    text = suite.report(results, out) + schema.footer(results)
    (out / "table.md").write_text(text)
    print(text)
    return out


def _run(suite: ModuleType, args: argparse.Namespace, path: Path, command: str) -> dict[str, Any]:
    from hf_autolr.bench.runner import prepare_process  # noqa: PLC0415

    prepare_process(args.threads)
    tier = "quick" if args.quick else "full"
    results = None
    if suite.RESUMABLE and path.exists():
        results = getattr(suite, "upgrade_legacy", lambda r: r)(schema.load(path))
        if results.get("suite") != args.suite:
            raise SystemExit(f"{path} holds suite {results.get('suite')!r}, not {args.suite!r}: choose another --out")
        results.update(tier=tier, command=command, machine=schema.machine(), config=suite.config(args))
    results = results or schema.new(args.suite, tier, command, suite.config(args))
    path.parent.mkdir(parents=True, exist_ok=True)
    invocation = {"command": command, "started": schema.now(), "wall_s": None}
    results["invocations"].append(invocation)
    start = time.perf_counter()
    suite.run(args, results, lambda: schema.save(results, path))
    invocation["wall_s"] = round(time.perf_counter() - start, 1)
    results["created"] = results["created"] or invocation["started"]
    schema.save(results, path)
    return results


if __name__ == "__main__":  # pragma: no cover
    main()
