"""The tested stack: constraints.txt pins what setup.sh installs, the README states it, and the
setup stamp notices a changed constraints file."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KEY_PACKAGES = ("transformers", "accelerate", "torch", "datasets", "evaluate", "tokenizers", "huggingface_hub",
                "safetensors", "numpy")


def pins(path=ROOT / "constraints.txt"):
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return {re.sub(r"[-_.]+", "_", name).lower(): v for name, _, v in (l.partition("==") for l in lines if "==" in l)}


def test_constraints_pin_every_key_package():
    pinned = pins()
    assert set(map(str.lower, KEY_PACKAGES)) <= set(pinned)


@pytest.mark.skipif(os.environ.get("HF_AUTOLR_CONSTRAINTS", "constraints.txt") != "constraints.txt",
                    reason="a run on another stack (bash .ci/run --latest)")
def test_the_installed_stack_is_the_pinned_one():
    pinned = pins()
    for package in KEY_PACKAGES:
        assert version(package).split("+")[0] == pinned[package.lower()], package


def test_readme_states_the_tested_versions():
    pinned = pins()
    readme = " ".join((ROOT / "README.md").read_text().split())
    for package in ("transformers", "accelerate", "torch"):
        assert f"{package} {pinned[package]}" in readme, package


def _fake_python(folder: Path) -> Path:
    """A venv whose python only records its arguments (so setup.sh installs nothing)."""
    log = folder / "calls.log"
    python = folder / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    return log


def _setup(venv: Path, constraints: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_AUTOLR_VENV": str(venv), "HF_AUTOLR_CONSTRAINTS": constraints}
    return subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], capture_output=True, text=True, env=env, timeout=60)


def test_setup_installs_with_the_constraints_and_reruns_when_they_change(tmp_path):
    log = _fake_python(tmp_path / "venv")
    assert _setup(tmp_path / "venv", "constraints.txt").returncode == 0
    calls = log.read_text().splitlines()
    assert sum("-c constraints.txt" in call for call in calls) == 2 and any("-e .[demo,test,bench]" in c for c in calls)
    assert _setup(tmp_path / "venv", "constraints.txt").returncode == 0
    assert log.read_text().splitlines() == calls  # up to date: nothing run
    edited = tmp_path / "edited.txt"
    edited.write_text((ROOT / "constraints.txt").read_text().replace("numpy==", "numpy>="))
    assert _setup(tmp_path / "venv", str(edited)).returncode == 0
    assert sum(f"-c {edited}" in call for call in log.read_text().splitlines()) == 2
    assert _setup(tmp_path / "venv", "none").returncode == 0
    assert "-c" not in log.read_text().splitlines()[-1].split()


def test_setup_refuses_a_missing_constraints_file(tmp_path):
    done = _setup(tmp_path / "venv", str(tmp_path / "missing.txt"))
    assert done.returncode == 2 and "no constraints file" in done.stderr
