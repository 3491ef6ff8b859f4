"""The model card records the schedule: offline push_to_hub, create_model_card alone, templates."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import transformers.trainer
from huggingface_hub import ModelCard
from transformers import Trainer, TrainingArguments

import hf_autolr  # noqa: F401 - registers the names
from hf_autolr import vision
from hf_autolr.integrations import AutoLRTrainer
from hf_autolr.integrations import model_card as mc

FAKE_TOKEN = "hf_FAKEtokenDoNotLeak0123456789"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits():
    train, test = vision.digits_datasets(image_size=16, seed=0)
    return train.select(range(256)), test.select(range(64))


def tiny_resnet():
    torch.manual_seed(0)
    return vision.build_model(None, "resnet", [str(i) for i in range(10)], 1, 16)


def args_for(output_dir, **overrides):
    defaults = dict(
        output_dir=str(output_dir), use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True,
        per_device_train_batch_size=32, num_train_epochs=4, learning_rate=1e-3, seed=0,
        lr_scheduler_type="autolr_gp", dataloader_num_workers=0, logging_steps=4,
    )  # fmt: skip
    defaults.update(overrides)
    return TrainingArguments(**defaults)


class FakeHubApi:
    """Stands in for ``HfApi``: records create_repo and snapshots the uploaded folder."""

    def __init__(self):
        self.repos, self.uploads = [], []

    def create_repo(self, repo_id, **kwargs):
        self.repos.append((repo_id, kwargs))
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and not p.name.startswith("_")}
        self.uploads.append({"kwargs": kwargs, "files": files})
        return "https://huggingface.co/fake/commit"


def test_offline_push_uploads_card_with_schedule_and_plot(tmp_path, digits, monkeypatch, capsys, caplog):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    fake = FakeHubApi()
    monkeypatch.setattr(transformers.trainer, "hf_api", lambda *a, **k: fake)
    args = args_for(tmp_path / "out", hub_model_id="someone/autolr-test", hub_token=FAKE_TOKEN,
                    lr_scheduler_kwargs={"max_warmup_fraction": 0.3, "decay_type": "linear"})  # fmt: skip
    model = tiny_resnet()
    trainer = Trainer(model=model, args=args, train_dataset=digits[0], eval_dataset=digits[1], compute_metrics=vision.accuracy)
    with caplog.at_level(logging.INFO):
        trainer.train()
        trainer.evaluate()
        trainer.push_to_hub()
    scheduler = trainer.lr_scheduler
    assert scheduler.switch_step >= 0  # the 30% cap forces a decision within the run

    assert [repo for repo, _ in fake.repos] == ["someone/autolr-test"]
    (upload,) = fake.uploads
    assert upload["kwargs"]["repo_id"] == "someone/autolr-test"
    assert {"README.md", "config.json", "model.safetensors", "lr_schedule.png"} <= set(upload["files"])
    assert upload["files"]["lr_schedule.png"].startswith(b"\x89PNG")
    text = upload["files"]["README.md"].decode()
    assert "`autolr_gp`" in text and "](lr_schedule.png)" in text
    assert "switch_step" in text and scheduler.switch_reason in text
    assert "max_warmup_fraction" in text and "eval_accuracy" in text

    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert {"hf_autolr", "autolr_gp", "generated_from_trainer"} <= set(card.data.tags)
    summary = card.data["hf_autolr"]
    assert summary["method"] == "autolr_gp"
    assert summary["options"] == {"max_warmup_fraction": 0.3, "decay_type": "linear"}
    decisions = summary["decisions"]
    assert decisions["switch_step"] == scheduler.switch_step
    assert decisions["switch_reason"] == scheduler.switch_reason
    assert decisions["switch_lr"] == pytest.approx(scheduler.switch_factor * 1e-3)
    assert summary["metrics"]["eval_accuracy"] == trainer.state.log_history[-1]["eval_accuracy"]
    assert {"hf_autolr", "autolr_gp"} <= set(model.model_tags)  # for a later model.push_to_hub

    for name, content in upload["files"].items():  # training_args.bin included
        assert FAKE_TOKEN.encode() not in content, name
    assert trainer.args.hub_token == FAKE_TOKEN  # the live arguments keep it
    captured = capsys.readouterr()
    for where in (text, captured.out, captured.err, caplog.text):
        assert FAKE_TOKEN not in where


def test_create_model_card_alone_records_adascale_and_is_idempotent(tmp_path, digits, monkeypatch):
    template = tmp_path / "my_card.md"
    template.write_text("## Custom: $method\n\n$decisions\n\n$plot\n")
    monkeypatch.setenv(mc.TEMPLATE_ENV, str(template))
    args = args_for(tmp_path / "out", lr_scheduler_type="adascale", gradient_accumulation_steps=2, max_steps=6,
                    per_device_train_batch_size=16, optim="sgd", learning_rate=0.05)  # fmt: skip
    trainer = AutoLRTrainer(model=tiny_resnet(), args=args, train_dataset=digits[0])
    trainer.train()
    trainer.create_model_card()
    trainer.create_model_card()  # a second card replaces the first, with one schedule section
    scheduler = trainer.lr_scheduler
    path = tmp_path / "out" / "README.md"
    text = path.read_text()
    assert text.count("## Custom: adascale") == 1 and text.count("<!-- hf_autolr:start -->") == 1
    assert (tmp_path / "out" / "lr_schedule.png").exists()
    decisions = ModelCard.load(path).data["hf_autolr"]["decisions"]
    assert decisions["scale"] == scheduler.scale == 2
    assert decisions["gain"] == pytest.approx(scheduler.gain)
    assert decisions["progress"] == pytest.approx(scheduler.progress)
    assert 1.0 <= decisions["gain"] <= 2.0  # r ∈ [1, S]


def test_card_untouched_without_our_scheduler(tmp_path, digits):
    trainer = Trainer(model=tiny_resnet(), args=args_for(tmp_path, lr_scheduler_type="linear", max_steps=2), train_dataset=digits[0])
    trainer.train()
    trainer.create_model_card()
    card = ModelCard.load(tmp_path / "README.md")
    assert "hf_autolr" not in (card.data.tags or []) and card.data.get("hf_autolr") is None
    assert "hf_autolr:start" not in card.text and not (tmp_path / "lr_schedule.png").exists()


def test_options_are_plain_and_secrets_redacted():
    args = type("Args", (), {"lr_scheduler_kwargs": '{"patience": 2, "hub_token": "x", "ratio": NaN}'})()
    assert mc.scheduler_options(args) == {"patience": 2, "hub_token": "<redacted>", "ratio": None}


def test_final_metrics_keep_last_values_and_skip_diagnostics():
    history = [{"loss": 2.0, "autolr_gp/phase": 0.0, "step": 5}, {"loss": 1.0, "step": 10}, {"eval_accuracy": 0.9, "step": 10}]
    assert mc.final_metrics(history, 10) == {"loss": 1.0, "eval_accuracy": 0.9, "global_step": 10}


def test_packaged_template_is_the_documented_copy():
    assert (REPO / "model_cards" / "autolr_card.md").read_text() == mc.DEFAULT_TEMPLATE.read_text()


def _short_run(tmp_path, model, name="out", **overrides):
    args = args_for(tmp_path / name, **{"max_steps": 2, **overrides})
    trainer = Trainer(model=model, args=args, train_dataset=DIGITS_SMALL())
    trainer.train()
    return trainer


def DIGITS_SMALL():  # noqa: N802 - a tiny fixed training set
    train, _ = vision.digits_datasets(image_size=16, seed=0)
    return train.select(range(64))


def test_card_names_the_real_base_model_and_dataset(tmp_path):
    trainer = _short_run(tmp_path, tiny_resnet())  # built from a config: trained from scratch
    trainer.create_model_card(dataset="digits-test")
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert "This model was trained from scratch on the digits-test dataset." in card.text
    assert "[](https://huggingface.co/)" not in card.text and card.data.get("base_model") is None

    folder = tmp_path / "my-resnet"  # a pretrained local folder, with its own card and licence
    tiny_resnet().save_pretrained(folder)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# my resnet\n")
    from transformers import AutoModelForImageClassification

    trainer = _short_run(tmp_path, AutoModelForImageClassification.from_pretrained(folder), name="tuned")
    trainer.create_model_card()  # transformers alone: "trained from scratch on the None dataset"
    card = ModelCard.load(tmp_path / "tuned" / "README.md")
    assert "This model is a fine-tuned version of the local model `my-resnet` on an unknown dataset." in card.text
    assert "huggingface.co/" not in card.text.split("## Model description")[0]
    assert card.data.get("base_model") is None and card.data.license == "mit"
    trainer.create_model_card(finetuned_from="someone/resnet-base", dataset="digits-test")
    card = ModelCard.load(tmp_path / "tuned" / "README.md")
    assert ("This model is a fine-tuned version of [someone/resnet-base](https://huggingface.co/someone/resnet-base) "
            "on the digits-test dataset.") in card.text
    assert card.data.base_model == "someone/resnet-base"


def test_hub_token_never_reaches_checkpoints_saved_args_or_logs(tmp_path, capsys, caplog):
    trainer = _short_run(tmp_path, tiny_resnet(), max_steps=4, save_strategy="steps", save_steps=2,
                         hub_token=FAKE_TOKEN, logging_steps=1)
    with caplog.at_level(logging.INFO):
        trainer.save_model()
        trainer.create_model_card()
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert {"checkpoint-2", "checkpoint-4"} <= {p.parent.name for p in files if p.name == "training_args.bin"}
    for path in files:
        assert FAKE_TOKEN.encode() not in path.read_bytes(), path
    saved = torch.load(tmp_path / "out" / "checkpoint-2" / "training_args.bin", weights_only=False)
    assert saved.hub_token is None and saved.lr_scheduler_type == "autolr_gp"
    assert trainer.args.hub_token == FAKE_TOKEN and f"{trainer.args.hub_token}" == FAKE_TOKEN  # still usable
    captured = capsys.readouterr()
    assert FAKE_TOKEN not in captured.out + captured.err + caplog.text
