#!/usr/bin/env bash
# One-time set-up on a fresh machine (idempotent): .venv with torch's CPU wheel first, so nothing
# pulls a multi-GB CUDA build, then hf_autolr (editable) with its demo/test/bench extras.
# Set TORCH_SPEC (e.g. TORCH_SPEC=torch) to install a different torch build.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
stamp=.venv/.hf_autolr-setup
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -qq --upgrade pip
.venv/bin/python -m pip install -qq "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install -qq -e ".[demo,test,bench]"
echo "$want" > "$stamp"
