"""User mistakes on the scripts' command lines: one line on stderr, exit status 2, no traceback, and
before any model or data loads.

Every subprocess here names a model that cannot load (``no-such-org/no-such-model``: offline,
``from_pretrained`` would fail with a long ``OSError`` traceback), so an answer that names the
mistake instead proves the check ran first. The other cases run in-process (same code path).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNLOADABLE = ["--model_name_or_path", "no-such-org/no-such-model"]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def run_script(name, *args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(ROOT / "scripts" / f"{name}.py"), *UNLOADABLE, *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=180, cwd=ROOT)


def assert_one_line_error(done, *expected):
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "no-such-model" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and ": error: " in lines[0], done.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    assert done.stdout == ""
    return lines[0]


@pytest.fixture()
def squad_files(tmp_path):
    def write(name, questions):
        path = tmp_path / name
        paragraph = {"context": "Paris is the capital of France.", "qas": questions}
        path.write_text(json.dumps({"data": [{"title": "Paris", "paragraphs": [paragraph]}]}))
        return str(path)

    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    good = {"id": "ok1", "question": "What is Paris?", "answers": [{"text": "the capital", "answer_start": 9}]}
    return {
        "no_answers_key": write("no_answers.json", [good, {"id": "q2", "question": "Where is Paris?"}]),
        "all_unanswerable": write("unanswerable.json", [{"id": "u1", "question": "Why?", "answers": []}]),
        "not_json": str(broken),
    }


# -- subprocesses: the real scripts ---------------------------------------------------------------
def test_squad_misspelt_scheduler_option(tmp_path):
    done = run_script("train_squad", "--lr_scheduler_kwargs", '{"patiencee": 2}', "--output_dir", str(tmp_path))
    assert_one_line_error(done, "--lr_scheduler_kwargs", "patiencee", "accepted options:", "patience,")


def test_squad_malformed_json_names_the_option(tmp_path):
    done = run_script("train_squad", "--lr_scheduler_kwargs", "{patience: 2}", "--output_dir", str(tmp_path))
    assert_one_line_error(done, "--lr_scheduler_kwargs {patience: 2}", "not valid JSON")


def test_squad_bad_optim_args_value(tmp_path):
    done = run_script("train_squad", "--optim", "clars", "--optim_args", "layer_adaptation=maybe", "--output_dir", str(tmp_path))
    assert_one_line_error(done, "--optim clars", "layer_adaptation='maybe'", "accepted: true, false or none")


def test_squad_file_whose_question_lacks_answers(tmp_path, squad_files):
    path = squad_files["no_answers_key"]
    done = run_script("train_squad", "--train_file", path, "--validation_file", path, "--output_dir", str(tmp_path))
    assert_one_line_error(done, "--train_file", path, "paragraph 0 question 1 (id 'q2')", "missing 'answers'")


def test_image_script_scheduler_value_and_malformed_json(tmp_path):
    done = run_script("train_image_classification", "--lr_scheduler_type", "lrtuner",
                      "--lr_scheduler_kwargs", '{"patience": -1}', "--output_dir", str(tmp_path))
    assert_one_line_error(done, "--lr_scheduler_kwargs", "'patience' must be an integer in [1, inf], got -1")
    done = run_script("train_image_classification", "--lr_scheduler_kwargs", '{"decay_type": linear}')
    assert_one_line_error(done, "--lr_scheduler_kwargs", "not valid JSON")


# -- in-process: the same parse path, more cases --------------------------------------------------
@pytest.mark.parametrize(
    "args, expected",
    [
        (["--lr_scheduler_type", "autolr_gpp"], ["--lr_scheduler_type autolr_gpp", "accepted values:", "adascale"]),
        (["--learning_rate=-1e-3"], ["--learning_rate -0.001", ">= 0"]),
        (["--lr_scheduler_type", "cosine", "--lr_scheduler_kwargs", '{"num_cyclez": 2}'], ["num_cyclez", "accepted options: num_cycles"]),
        (["--lr_scheduler_type", "autodrop", "--lr_scheduler_kwargs", '{"rule": "v2"}'], ["'rule' got 'v2'", "'uai2024', 'v1'"]),
        (["--optim", "lamb", "--optim_args", "beta3=0.9"], ["--optim lamb", "beta3", "accepted values"]),
        (["--lr_schedular_type", "linear"], ["--lr_schedular_type"]),
        (["--train_file", "/no/such/train.json"], ["--train_file /no/such/train.json", "no such QA data file"]),
        (["--model_name_or_path", "./no/such/folder"], ["--model_name_or_path ./no/such/folder", "no such folder"]),
    ],
)
def test_squad_mistakes_in_process(args, expected, capsys):
    script = _script("train_squad")
    with pytest.raises(SystemExit) as stop:
        script.main([*UNLOADABLE, *args])
    assert stop.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert all(text in line for text in expected), line


@pytest.mark.parametrize("name, expected", [
    ("all_unanswerable", ["none of its 1 train questions has an answer", "id 'u1'", "--version_2_with_negative"]),
    ("not_json", ["is not a JSON file"]),
])
def test_squad_data_file_mistakes_in_process(name, expected, squad_files, capsys):
    path = squad_files[name]
    with pytest.raises(SystemExit):
        _script("train_squad").main([*UNLOADABLE, "--train_file", path, "--validation_file", path])
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("train_squad.py: error: --train_file ")
    assert all(text in line for text in expected), line


@pytest.mark.parametrize("args, expected", [
    (["--optim", "clars", "--optim_args", "momentum=2"], ["--optim clars --optim_args 'momentum=2'", "momentum"]),
    (["--hidden_sizes", "16,x"], ["--hidden_sizes 16,x", "positive integers"]),
])
def test_image_mistakes_in_process(args, expected, capsys):
    with pytest.raises(SystemExit):
        _script("train_image_classification").parse_args(args)
    (line,) = capsys.readouterr().err.splitlines()
    assert all(text in line for text in expected), line


def test_python_api_keeps_raising_value_error(tmp_path):
    from transformers import TrainingArguments

    from hf_autolr.integrations.cli import check_training_arguments

    args = TrainingArguments(output_dir=str(tmp_path), lr_scheduler_type="autolr_gp", lr_scheduler_kwargs={"patience": 0})
    with pytest.raises(ValueError, match=r"--lr_scheduler_kwargs \{\"patience\": 0\}: autolr_gp: option 'patience'"):
        check_training_arguments(args)
    check_training_arguments(TrainingArguments(output_dir=str(tmp_path), lr_scheduler_type="autolr_gp"))  # fine
