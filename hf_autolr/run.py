"""Run an unmodified training script with hf_autolr's scheduler names registered first.

    python -m hf_autolr.run SCRIPT.py [script args...]
    python -m hf_autolr.run -m package.module [args...]
    accelerate launch -m hf_autolr.run SCRIPT.py [script args...]

so that, e.g., transformers' example scripts accept ``--lr_scheduler_type autolr_gp`` and their
``Trainer`` feeds the scheduler, without editing them. The script runs as ``__main__`` with
``sys.argv`` set as if it had been started directly.

Offline metrics: when the script imports ``evaluate``, its ``evaluate.load`` gets a fallback. A
load of ``squad``, ``squad_v2`` or ``accuracy`` that fails because the Hub cannot be reached
(no network, or ``HF_HUB_OFFLINE=1`` with nothing cached) returns the package's offline copy
instead (:mod:`hf_autolr.metrics`), and one line on stderr says so; with the Hub reachable the
Hub's metric is used unchanged. Only ``hf_autolr.run`` installs this, not ``import hf_autolr``.
"""

from __future__ import annotations

import functools
import os
import runpy
import sys
from typing import Any

from hf_autolr._after_import import after_import

USAGE = "usage: python -m hf_autolr.run SCRIPT.py [args...]  |  python -m hf_autolr.run -m MODULE [args...]"


def main(argv: list[str] | None = None) -> None:
    """Register our names, then run the script or module given in ``argv`` as ``__main__``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip() if argv else USAGE)
        if not argv:
            raise SystemExit(2)
        return
    if argv[0] == "-m" and len(argv) < 2:
        raise SystemExit(USAGE)
    if argv[0] != "-m" and not os.path.isfile(argv[0]):
        raise SystemExit(f"hf_autolr.run: no such script: {argv[0]!r}\n{USAGE}")
    import hf_autolr  # noqa: F401, PLC0415 - the point: register before the script builds its parser

    install_offline_metrics()

    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        return
    script = argv[0]
    sys.argv = argv
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")


# -- offline metrics ------------------------------------------------------------------------------
_HUB_UNREACHABLE = (FileNotFoundError, ConnectionError, TimeoutError)


def with_offline_fallback(load: Any) -> Any:
    """``evaluate.load`` that, for a metric with an offline copy, returns that copy when ``load``
    fails because the Hub cannot be reached; any other metric or error is left as it was."""

    @functools.wraps(load)
    def load_or_offline_copy(path: str, config_name: str | None = None, *args: Any, **kwargs: Any) -> Any:
        try:
            return load(path, config_name, *args, **kwargs)
        except _HUB_UNREACHABLE as error:
            from hf_autolr.metrics import offline_metric  # noqa: PLC0415

            stand_in = offline_metric(path)
            if stand_in is None:
                raise
            folder, config = stand_in
            print(f"hf_autolr.run: evaluate.load({path!r}) could not reach the Hub ({type(error).__name__}); "
                  f"using hf_autolr's offline copy {folder}", file=sys.stderr)
            return load(str(folder), config or config_name, *args, **kwargs)

    load_or_offline_copy._hf_autolr = True  # type: ignore[attr-defined]
    return load_or_offline_copy


def _patch_evaluate(module: Any) -> None:
    if not getattr(module.load, "_hf_autolr", False):
        module.load = with_offline_fallback(module.load)


def install_offline_metrics() -> None:
    """Give ``evaluate.load`` the offline fallback: now if imported, else once it is (it takes
    seconds to import, so a script that never uses it does not pay for it)."""
    after_import("evaluate", _patch_evaluate)


if __name__ == "__main__":
    main()
