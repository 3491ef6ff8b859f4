"""``--help`` of every user-facing script prints its usage and exits 0 (argparse %-formats help
texts: a bare ``%`` in one crashed ``train_image_classification.py --help``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.mark.parametrize("name", ["train_squad.py", "train_image_classification.py", "benchmark.py"])
def test_help_prints_usage_and_exits_zero(name):
    done = subprocess.run([sys.executable, str(SCRIPTS / name), "--help"], capture_output=True, text=True, timeout=180,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage:") and "Traceback" not in done.stderr


def test_squad_help_states_the_real_defaults():
    done = subprocess.run([sys.executable, str(SCRIPTS / "train_squad.py"), "--help"], capture_output=True, text=True,
                          timeout=180, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert "autolr_gp" in done.stdout and "lr 2e-4" not in done.stdout
