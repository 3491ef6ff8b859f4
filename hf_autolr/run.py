"""Run an unmodified training script with hf_autolr's scheduler names registered first.

    python -m hf_autolr.run SCRIPT.py [script args...]
    python -m hf_autolr.run -m package.module [args...]
    accelerate launch -m hf_autolr.run SCRIPT.py [script args...]

so that, e.g., transformers' example scripts accept ``--lr_scheduler_type autolr_gp`` and their
``Trainer`` feeds the scheduler, without editing them. The script runs as ``__main__`` with
``sys.argv`` set as if it had been started directly.
"""

from __future__ import annotations

import os
import runpy
import sys

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

    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        return
    script = argv[0]
    sys.argv = argv
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
