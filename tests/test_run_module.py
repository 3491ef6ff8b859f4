"""``python -m hf_autolr.run`` makes a third-party script accept our scheduler names unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

THIRD_PARTY = textwrap.dedent(
    """
    # A script that knows nothing of hf_autolr: it builds its parser before any import of ours.
    import torch
    from transformers import HfArgumentParser, Trainer, TrainingArguments

    (args,) = HfArgumentParser(TrainingArguments).parse_args_into_dataclasses()

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 1)

        def forward(self, x, labels=None):
            out = self.linear(x).squeeze(-1)
            return {"loss": torch.nn.functional.mse_loss(out, labels), "logits": out}

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    data = [{"x": x[i], "labels": x[i].sum()} for i in range(64)]
    trainer = Trainer(model=Model(), args=args, train_dataset=data)
    trainer.train()
    s = trainer.lr_scheduler
    print("SCHEDULER", type(s).__name__, s.num_observed, trainer.state.global_step)
    """
)


def run(tmp_path, *launcher):
    script = tmp_path / "third_party_train.py"
    script.write_text(THIRD_PARTY)
    args = ["--output_dir", str(tmp_path / "out"), "--use_cpu", "--report_to", "none", "--save_strategy", "no",
            "--lr_scheduler_type", "autolr_gp", "--num_train_epochs", "2", "--per_device_train_batch_size", "8",
            "--disable_tqdm", "true"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([*launcher, str(script), *args], capture_output=True, text=True, env=env, timeout=300)


def test_unmodified_script_fails_without_us_and_runs_with_us(tmp_path):
    plain = run(tmp_path, sys.executable)
    assert plain.returncode != 0 and "autolr_gp" in plain.stderr  # argparse rejects the name
    wrapped = run(tmp_path, sys.executable, "-m", "hf_autolr.run")
    assert wrapped.returncode == 0, wrapped.stderr[-2000:]
    line = next(l for l in wrapped.stdout.splitlines() if l.startswith("SCHEDULER"))
    _, name, observed, steps = line.split()
    assert name == "AutoLRGP" and int(observed) == int(steps) == 16


def test_usage_errors_are_clear():
    missing = subprocess.run([sys.executable, "-m", "hf_autolr.run", "no_such_script.py"], capture_output=True, text=True)
    assert missing.returncode != 0 and "no such script" in missing.stderr
    empty = subprocess.run([sys.executable, "-m", "hf_autolr.run"], capture_output=True, text=True)
    assert empty.returncode == 2 and "usage" in empty.stdout
