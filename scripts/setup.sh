#!/usr/bin/env bash
# One-time set-up on a fresh machine (idempotent): a virtual environment with torch's CPU wheel
# first, so nothing pulls a multi-GB CUDA build, then hf_autolr (editable) with its demo/test/bench
# extras, every package at the version of the tested stack in constraints.txt.
#   TORCH_SPEC=...             another torch build (default torch==2.13.0, the tested one)
#   HF_AUTOLR_CONSTRAINTS=none no pins (newest versions pyproject.toml allows); or a path to another file
#   HF_AUTOLR_VENV=dir         where the environment goes (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
venv=${HF_AUTOLR_VENV:-.venv}
constraints=${HF_AUTOLR_CONSTRAINTS:-constraints.txt}
pins=()
if [ "$constraints" != none ]; then
  [ -f "$constraints" ] || { echo "setup.sh: no constraints file $constraints (HF_AUTOLR_CONSTRAINTS=none for none)" >&2; exit 2; }
  pins=(-c "$constraints")
fi
stamp=$venv/.hf_autolr-setup
want="$( { cat pyproject.toml scripts/setup.sh; echo "constraints=$constraints torch=${TORCH_SPEC:-}";
           [ "$constraints" = none ] || cat "$constraints"; } | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -qq --upgrade pip
"$venv/bin/python" -m pip install -qq ${pins[@]+"${pins[@]}"} "${TORCH_SPEC:-torch==2.13.0}"
"$venv/bin/python" -m pip install -qq ${pins[@]+"${pins[@]}"} -e ".[demo,test,bench]"
echo "$want" > "$stamp"
