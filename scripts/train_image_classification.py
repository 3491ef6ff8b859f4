"""Image classification with an hf_autolr schedule: an HF image model, the Trainer, a model card.

Offline by default: a small ResNet (from config) on scikit-learn's digits, upsampled to 32×32,
with ``autolr_gp``; it prints the held-out accuracy, saves ``lr_schedule.png`` and writes the
model card (``README.md``) in ``--output_dir``. Every ``TrainingArguments`` option works
(``--lr_scheduler_type``, ``--lr_scheduler_kwargs``, ``--optim``, ``--per_device_train_batch_size``,
``--gradient_accumulation_steps``, ``--push_to_hub``, ...).

    python scripts/train_image_classification.py                                  # digits, autolr_gp
    python scripts/train_image_classification.py --per_device_train_batch_size 512 --num_train_epochs 60
    python scripts/train_image_classification.py --lr_scheduler_type adascale \\
        --per_device_train_batch_size 32 --gradient_accumulation_steps 8 --max_steps 400 --optim sgd --learning_rate 0.05
    python scripts/train_image_classification.py --optim clars --learning_rate 0.1 --per_device_train_batch_size 512
    python scripts/train_image_classification.py --model_type vit --image_size 32
    python scripts/train_image_classification.py --model_name_or_path microsoft/resnet-18 \\
        --dataset_name beans --image_column_name image --label_column_name labels --push_to_hub
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import hf_autolr  # noqa: F401 - registers our lr_scheduler_type / optim names before TrainingArguments

import torch  # noqa: E402
from transformers import HfArgumentParser, Trainer, TrainingArguments  # noqa: E402

from hf_autolr import vision  # noqa: E402
from hf_autolr.integrations import AutoLRCallback  # noqa: E402
from hf_autolr.integrations.cli import check_model_path, exit_on_user_error, parse_or_exit  # noqa: E402
from hf_autolr.integrations.model_card import wrap_create_model_card  # noqa: E402
from hf_autolr.plotting import plot_schedule  # noqa: E402

# Defaults for this script; anything on the command line wins (argparse keeps the last value).
DEFAULT_ARGV = [
    "--output_dir", "outputs/image_classification",
    "--lr_scheduler_type", "autolr_gp",
    "--learning_rate", "1e-3",
    "--num_train_epochs", "10",
    "--per_device_train_batch_size", "64",
    "--per_device_eval_batch_size", "256",
    "--logging_steps", "20",
    "--save_strategy", "no",
    "--report_to", "none",
    "--dataloader_num_workers", "0",
    "--dataloader_pin_memory", str(torch.cuda.is_available()),  # pinning without a GPU only warns
    "--seed", "0",
]  # fmt: skip


@dataclass
class VisionArguments:
    """Model and data options (everything else is ``TrainingArguments``)."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "Hub checkpoint or local path; else --model_type from config"})
    model_type: str = field(default="resnet", metadata={"help": "resnet | vit | convnext (from a small config)", "choices": list(vision.MODEL_TYPES)})
    image_size: int = field(default=32, metadata={"help": "input height = width"})
    hidden_sizes: str | None = field(default=None, metadata={"help": "comma-separated stage widths (resnet/convnext), e.g. 16,32,64"})
    depths: str | None = field(default=None, metadata={"help": "comma-separated blocks per stage (resnet/convnext), e.g. 1,1,1"})
    embedding_size: int | None = field(default=None, metadata={"help": "resnet stem width"})
    hidden_size: int | None = field(default=None, metadata={"help": "vit width"})
    num_hidden_layers: int | None = field(default=None, metadata={"help": "vit depth"})
    patch_size: int | None = field(default=None, metadata={"help": "vit/convnext patch size"})
    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset with an image and a label column; default: digits (offline)"})
    dataset_config_name: str | None = field(default=None, metadata={"help": "the dataset's configuration"})
    image_column_name: str = field(default="image", metadata={"help": "image column of --dataset_name"})
    label_column_name: str = field(default="label", metadata={"help": "label column of --dataset_name"})
    train_split: str = field(default="train", metadata={"help": "training split of --dataset_name"})
    eval_split: str | None = field(default=None, metadata={"help": "held-out split; default: 20 percent of --train_split"})
    max_train_samples: int | None = field(default=None, metadata={"help": "truncate the training set"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "truncate the held-out set"})

    def __post_init__(self) -> None:
        check_model_path("model_name_or_path", self.model_name_or_path)
        if self.image_size < 1:
            raise ValueError(f"--image_size {self.image_size}: must be a positive integer")
        for option in ("hidden_sizes", "depths"):
            text = getattr(self, option)
            if text is not None and not all(part.strip().isdigit() and int(part) > 0 for part in text.split(",")):
                raise ValueError(f"--{option} {text}: expected comma-separated positive integers, e.g. 16,32,64")


def parse_args(argv: list[str] | None = None) -> tuple[VisionArguments, TrainingArguments]:
    """Parse ``DEFAULT_ARGV + argv`` (``sys.argv[1:]`` when None); a user mistake prints one line
    on stderr and exits with status 2, before any model or data loads."""
    argv = sys.argv[1:] if argv is None else argv
    parser = HfArgumentParser((VisionArguments, TrainingArguments))
    return parse_or_exit(parser, DEFAULT_ARGV + list(argv))


def load_data(cli: VisionArguments, num_channels: int = 3, image_processor=None):
    """``(train, eval, label names, channels)``: digits offline by default, else the Hub dataset."""
    if cli.dataset_name is None:
        train, test = vision.digits_datasets(cli.image_size, seed=0)
        return _truncate(train, cli.max_train_samples), _truncate(test, cli.max_eval_samples), [str(i) for i in range(10)], 1
    import datasets  # noqa: PLC0415

    raw = datasets.load_dataset(cli.dataset_name, cli.dataset_config_name)
    train = raw[cli.train_split]
    vision.check_image_columns(train, cli.image_column_name, cli.label_column_name)
    if cli.eval_split:
        test = raw[cli.eval_split]
    else:
        split = train.train_test_split(test_size=0.2, seed=0)
        train, test = split["train"], split["test"]
    return prepare_dataset_pair(cli, train, test, num_channels, image_processor)


def prepare_dataset_pair(cli: VisionArguments, train, test, num_channels: int = 3, image_processor=None):
    """Image/label columns → ``pixel_values``/``labels`` for both splits (one error per missing column)."""
    vision.check_image_columns(train, cli.image_column_name, cli.label_column_name)
    names = vision.label_names(train, cli.label_column_name)
    if image_processor is not None:
        transform = lambda image: image_processor(image.convert("RGB"), return_tensors="pt")["pixel_values"][0]  # noqa: E731
    else:
        transform = vision.simple_image_transform(cli.image_size, num_channels)
    prepare = lambda ds, n: vision.prepare_image_dataset(  # noqa: E731
        _truncate(ds, n), cli.image_column_name, cli.label_column_name, transform, names
    )
    return prepare(train, cli.max_train_samples), prepare(test, cli.max_eval_samples), names, num_channels


def _truncate(dataset, limit: int | None):
    return dataset if limit is None else dataset.select(range(min(limit, len(dataset))))


def _ints(text: str | None) -> list[int] | None:
    return None if text is None else [int(x) for x in text.split(",")]


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Train, evaluate, plot and write the card; return the evaluation metrics."""
    cli, args = parse_args(argv)
    torch.manual_seed(args.seed)
    processor = None
    if cli.model_name_or_path and cli.dataset_name:
        from transformers import AutoImageProcessor  # noqa: PLC0415

        processor = AutoImageProcessor.from_pretrained(cli.model_name_or_path)
    with exit_on_user_error(os.path.basename(__file__)):  # e.g. a dataset without the named columns
        train, test, names, channels = load_data(cli, image_processor=processor)
    model = vision.build_model(
        cli.model_name_or_path,
        cli.model_type,
        names,
        channels,
        cli.image_size,
        hidden_sizes=_ints(cli.hidden_sizes),
        depths=_ints(cli.depths),
        embedding_size=cli.embedding_size,
        hidden_size=cli.hidden_size,
        num_hidden_layers=cli.num_hidden_layers,
        patch_size=cli.patch_size,
    )
    args.remove_unused_columns = False  # with_transform datasets need their raw columns
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=test, compute_metrics=vision.accuracy)
    wrap_create_model_card(trainer)  # a true card (base model, dataset) whatever the schedule; no token saved
    trainer.train()
    metrics = trainer.evaluate()
    print(f"\n{args.lr_scheduler_type.value if hasattr(args.lr_scheduler_type, 'value') else args.lr_scheduler_type}: "
          f"held-out accuracy {metrics['eval_accuracy']:.4f} on {len(test)} images")

    callback = next((c for c in trainer.callback_handler.callbacks if isinstance(c, AutoLRCallback)), None)
    if callback is not None and callback.history["step"] and trainer.is_world_process_zero():
        path = plot_schedule(callback.history, trainer.lr_scheduler, os.path.join(args.output_dir, "lr_schedule.png"))
        print(f"plot: {path}")
    card = dict(dataset=cli.dataset_name or "scikit-learn digits", finetuned_from=cli.model_name_or_path,
                tasks="image-classification")
    if cli.dataset_name:
        card.update(dataset_tags=cli.dataset_name, dataset_args=cli.dataset_config_name)
    if args.push_to_hub:
        trainer.push_to_hub(**card)  # writes the card, then uploads
    else:
        trainer.save_model()
        trainer.create_model_card(**card)
    print(f"model card: {os.path.join(args.output_dir, 'README.md')}")
    return metrics


if __name__ == "__main__":
    main()
