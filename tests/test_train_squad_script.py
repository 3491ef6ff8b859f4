"""``scripts/train_squad.py`` end to end: two processes on CPU (gloo), world size asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gloo_workers import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_two_process_run_trains_evaluates_and_writes_the_card(tmp_path):
    out = tmp_path / "squad"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        str(ROOT / "scripts" / "train_squad.py"),
        "--use_cpu", "--output_dir", str(out), "--max_steps", "4", "--per_device_train_batch_size", "4",
        "--max_train_samples", "32", "--max_eval_samples", "12", "--lr_scheduler_type", "autolr_gp",
        "--logging_steps", "2", "--disable_tqdm", "true", "--report_to", "none",
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    train = json.loads((out / "train_results.json").read_text())
    assert train["world_size"] == 2
    evaluation = json.loads((out / "eval_results.json").read_text())
    assert 0.0 <= evaluation["eval_f1"] <= 100.0
    assert "Final evaluation on 12 questions" in done.stdout
    card = (out / "README.md").read_text()
    assert "autolr_gp" in card and (out / "lr_schedule.png").is_file()
