"""``python -m hf_autolr.run``: a third-party script accepts our scheduler names unchanged, and its
``evaluate.load("squad" | "squad_v2" | "accuracy")`` works offline."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

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


OFFLINE_METRICS_SCRIPT = textwrap.dedent(
    """
    # Unmodified: loads the Hub's metrics by name, as transformers' examples do.
    import evaluate
    from evaluate import load

    print("ACCURACY", load("accuracy").compute(predictions=[0, 1, 1, 2], references=[0, 1, 2, 2])["accuracy"])
    gold = [{"id": "1", "answers": {"text": ["1976", "in 1976"], "answer_start": [0, 0]}}]
    squad = evaluate.load("squad").compute(predictions=[{"id": "1", "prediction_text": "the year 1976"}], references=gold)
    print("SQUAD", squad["exact_match"], round(squad["f1"], 2))
    v2 = evaluate.load("squad_v2").compute(
        predictions=[{"id": "2", "prediction_text": "", "no_answer_probability": 0.9}],
        references=[{"id": "2", "answers": {"text": [], "answer_start": []}}])
    print("SQUAD_V2", v2["exact"], v2["NoAns_total"])
    """
)


def test_unmodified_script_gets_offline_metrics_when_the_hub_is_unreachable(tmp_path):
    script = tmp_path / "metrics_script.py"
    script.write_text(OFFLINE_METRICS_SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "hf_autolr.run", str(script)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ACCURACY 0.75" in done.stdout and "SQUAD 0.0 66.67" in done.stdout and "SQUAD_V2 100.0 1" in done.stdout
    said = done.stderr.splitlines()
    assert len(said) == 3 and all("could not reach the Hub" in line and "offline copy" in line for line in said), said


def test_the_fallback_is_only_for_an_unreachable_hub_and_only_in_hf_autolr_run():
    import hf_autolr  # noqa: F401
    from hf_autolr import run

    from hf_autolr import _after_import

    assert "evaluate" not in _after_import._PENDING  # nothing waits for evaluate on a plain import
    if "evaluate" in sys.modules:
        assert not getattr(sys.modules["evaluate"].load, "_hf_autolr", False)
    calls = []

    def hub_load(path, config_name=None, **kwargs):
        calls.append((path, config_name))
        if path in ("accuracy", "no-such-metric"):
            raise FileNotFoundError(f"Couldn't find a module script at {path}")
        return f"hub:{path}"

    load = run.with_offline_fallback(hub_load)
    assert load("squad") == "hub:squad"  # the Hub answered: its metric, nothing said
    with pytest.raises(FileNotFoundError):
        load("no-such-metric")  # no offline copy: the error stands
    assert load("accuracy").startswith("hub:") and calls[-1] == (str(run_metric_dir("accuracy")), None)


def run_metric_dir(name):
    from hf_autolr.metrics import offline_metric

    return offline_metric(name)[0]
