"""scripts/train_image_classification.py: a short digits run, bad scheduler names, missing columns."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image

from hf_autolr import vision

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_image_classification.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("train_image_classification", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_digits_run_prints_accuracy_and_writes_plot_and_card(script, tmp_path, capsys):
    torch.manual_seed(0)
    out = tmp_path / "run"
    metrics = script.main(["--output_dir", str(out), "--num_train_epochs", "4", "--max_train_samples", "640",
                           "--use_cpu", "--disable_tqdm", "true", "--logging_steps", "5"])  # fmt: skip
    printed = capsys.readouterr().out
    assert f"held-out accuracy {metrics['eval_accuracy']:.4f}" in printed
    assert metrics["eval_accuracy"] > 0.5  # chance is 0.1
    assert (out / "lr_schedule.png").read_bytes().startswith(b"\x89PNG")
    card = ModelCard.load(out / "README.md")
    assert {"hf_autolr", "autolr_gp"} <= set(card.data.tags)
    assert card.data["hf_autolr"]["metrics"]["eval_accuracy"] == pytest.approx(metrics["eval_accuracy"])
    assert "](lr_schedule.png)" in card.text
    assert "This model was trained from scratch on the scikit-learn digits dataset." in card.text
    assert "[](https://huggingface.co/)" not in card.text


def test_unknown_scheduler_name_is_one_clear_error(script, capsys):
    with pytest.raises(SystemExit):
        script.parse_args(["--lr_scheduler_type", "autolr_gpp"])
    err = capsys.readouterr().err
    assert "autolr_gpp" in err and "autolr_gp" in err.replace("autolr_gpp", "") and "adascale" in err


def test_digits_images_are_upsampled_single_channel():
    train, test = vision.digits_datasets(image_size=32, seed=0)
    assert len(train) + len(test) == 1797
    row = train[0]
    assert row["pixel_values"].shape == (1, 32, 32) and 0 <= int(row["labels"]) < 10
    assert -1.0 <= float(row["pixel_values"].min()) and float(row["pixel_values"].max()) <= 1.0


def _image_rows(n=6, label_key="label"):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)) for _ in range(n)]
    features = datasets.Features({"img": datasets.Image(), label_key: datasets.ClassLabel(names=["cat", "dog"])})
    return datasets.Dataset.from_dict({"img": images, label_key: [i % 2 for i in range(n)]}, features=features)


def test_hub_style_dataset_becomes_pixel_values_and_labels(script):
    cli, _ = script.parse_args(["--image_column_name", "img", "--image_size", "16"])
    data = _image_rows()
    train, test, names, channels = script.prepare_dataset_pair(cli, data, data)
    assert names == ["cat", "dog"] and channels == 3
    row = train[1]
    assert tuple(row["pixel_values"].shape) == (3, 16, 16) and row["labels"] == 1


def test_missing_label_column_names_the_column(script):
    cli, _ = script.parse_args(["--image_column_name", "img"])  # label column defaults to "label"
    data = _image_rows(label_key="labels")
    with pytest.raises(ValueError, match=r"no column 'label' \(set by --label_column_name\).*img, labels"):
        script.prepare_dataset_pair(cli, data, data)


def test_missing_image_column_names_the_column(script):
    cli, _ = script.parse_args([])  # image column defaults to "image"
    with pytest.raises(ValueError, match=r"'image' \(set by --image_column_name\)"):
        script.prepare_dataset_pair(cli, _image_rows(), _image_rows())


def test_batches_are_pinned_only_where_a_gpu_can_use_them(script):
    _, args = script.parse_args([])
    assert args.dataloader_pin_memory == torch.cuda.is_available()  # no pin_memory warning on CPU
    assert script.parse_args(["--dataloader_pin_memory", "true"])[1].dataloader_pin_memory  # the user's wins
