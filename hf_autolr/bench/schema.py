"""The one results file every suite writes: ``<out>/results.json`` (layout in :mod:`hf_autolr.bench`).

Strict JSON: a non-finite float is written as ``null``. :func:`check` says what is wrong with a
file, so a test can hold every suite to the layout.

    results = new("adascale", "quick", "python -m hf_autolr.bench adascale --quick", {"seeds": 1})
    results["runs"]["m0.9|adascale|4|0"] = {"accuracy": 97.1}
    save(results, Path("results/tmp/adascale_quick/results.json"))
"""

from __future__ import annotations

import json
import math
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

TOP_LEVEL = ("suite", "tier", "command", "machine", "created", "updated", "invocations", "config", "runs")
MACHINE = ("cpu", "cores", "threads", "platform", "python", "torch", "transformers", "load_average")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    import torch  # noqa: PLC0415
    import transformers  # noqa: PLC0415

    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(), "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "load_average": list(os.getloadavg()),
    }


def new(suite: str, tier: str, command: str, config: dict[str, Any]) -> dict[str, Any]:
    stamp = now()
    return {"suite": suite, "tier": tier, "command": command, "machine": machine(), "created": stamp, "updated": stamp,
            "invocations": [], "config": config, "runs": {}}


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (nested dicts, lists, tuples)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def save(results: dict[str, Any], path: Path) -> None:
    """Write atomically (a crash leaves the previous file), compact."""
    results["updated"] = now()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(finite(results), separators=(",", ":"), allow_nan=False))
    tmp.replace(path)


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def check(results: dict[str, Any]) -> list[str]:
    """What in ``results`` does not follow the layout (empty: it does)."""
    problems = [f"missing {key!r}" for key in TOP_LEVEL if key not in results]
    problems += [f"machine: missing {key!r}" for key in MACHINE if key not in results.get("machine", {})]
    if not isinstance(results.get("runs"), dict) or not all(isinstance(r, dict) for r in results.get("runs", {}).values()):
        problems.append("runs: not a mapping of key -> record")
    if not all(isinstance(i, dict) and {"command", "started", "wall_s"} <= i.keys() for i in results.get("invocations", [])):
        problems.append("invocations: each needs command, started, wall_s")
    try:
        json.dumps(results, allow_nan=False)
    except ValueError as error:
        problems.append(f"not strict JSON: {error}")
    return problems


def footer(results: dict[str, Any]) -> str:
    """The line under every ``table.md``: which command made it, where and when."""
    m = results["machine"]
    return (f"\n---\nSuite `{results['suite']}` ({results['tier']} tier): `{results['command']}` on {m['cpu']}, "
            f"{m['cores']} cores, {m['threads']} torch thread(s), torch {m['torch']}, transformers {m['transformers']}; "
            f"created {results['created']}, updated {results['updated']}.\n")
