"""Image classification helpers for ``scripts/train_image_classification.py``.

- :func:`digits_datasets`: the offline default, scikit-learn's bundled 8×8 digits upsampled to
  ``image_size`` (one channel, normalised), as ``datasets.Dataset`` s with ``pixel_values`` and
  ``labels`` (no download, no torchvision).
- :func:`prepare_image_dataset`: a Hub-style dataset with an image column and a label column →
  the same two columns, through a transform applied on access; a missing column gives one
  ``ValueError`` naming it and the columns there are.
- :func:`build_model`: ``AutoModelForImageClassification`` from a checkpoint, or from a small
  ``resnet`` / ``vit`` / ``convnext`` config.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import datasets
import torch

MODEL_TYPES = ("resnet", "vit", "convnext")


# -- data -----------------------------------------------------------------------------------------
def digits_datasets(image_size: int = 32, test_fraction: float = 0.2, seed: int = 0) -> tuple[datasets.Dataset, datasets.Dataset]:
    """scikit-learn's digits as ``(train, test)``: ``pixel_values`` [1, s, s] float, ``labels`` int."""
    from sklearn.datasets import load_digits  # noqa: PLC0415 - only for the offline default

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [N, 1, 8, 8] in [0, 1]
    if image_size != images.shape[-1]:
        images = torch.nn.functional.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    images = (images - 0.5) / 0.5
    labels = torch.tensor(digits.target)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    num_test = round(test_fraction * len(labels))
    names = [str(i) for i in range(10)]
    features = datasets.Features(
        {
            "pixel_values": datasets.Array3D(shape=(1, image_size, image_size), dtype="float32"),
            "labels": datasets.ClassLabel(names=names),
        }
    )

    def subset(index: torch.Tensor) -> datasets.Dataset:
        data = {"pixel_values": images[index].numpy(), "labels": labels[index].tolist()}
        return datasets.Dataset.from_dict(data, features=features).with_format("torch")

    return subset(order[num_test:]), subset(order[:num_test])


def check_image_columns(dataset: datasets.Dataset, image_column: str, label_column: str) -> None:
    """One ``ValueError`` naming every missing column and listing the ones there are."""
    missing = [(flag, name) for flag, name in (("--image_column_name", image_column), ("--label_column_name", label_column)) if name not in dataset.column_names]
    if missing:
        what = ", ".join(f"{name!r} (set by {flag})" for flag, name in missing)
        raise ValueError(f"the dataset has no column {what}; its columns are: {', '.join(dataset.column_names)}")


def label_names(dataset: datasets.Dataset, label_column: str) -> list[str]:
    """Class names: the ``ClassLabel`` names, else the sorted distinct label values."""
    feature = dataset.features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    return [str(v) for v in sorted(set(dataset[label_column]))]


def simple_image_transform(image_size: int, num_channels: int = 3) -> Callable[[Any], torch.Tensor]:
    """PIL image → ``[C, s, s]`` tensor in [-1, 1] (resize, grey or RGB); no torchvision needed."""
    import numpy as np  # noqa: PLC0415

    def transform(image: Any) -> torch.Tensor:
        image = image.convert("L" if num_channels == 1 else "RGB").resize((image_size, image_size))
        array = torch.tensor(np.asarray(image, dtype=np.float32) / 255.0)
        array = array.unsqueeze(0) if array.ndim == 2 else array.permute(2, 0, 1)
        return (array - 0.5) / 0.5

    return transform


def prepare_image_dataset(
    dataset: datasets.Dataset,
    image_column: str,
    label_column: str,
    transform: Callable[[Any], torch.Tensor],
    names: Sequence[str] | None = None,
) -> datasets.Dataset:
    """``dataset`` with ``pixel_values`` (``transform(image)``) and integer ``labels``, on access."""
    check_image_columns(dataset, image_column, label_column)
    is_class_label = isinstance(dataset.features[label_column], datasets.ClassLabel)
    index = {name: i for i, name in enumerate(names or label_names(dataset, label_column))}

    def to_model_inputs(batch: dict[str, list[Any]]) -> dict[str, Any]:
        labels = batch[label_column] if is_class_label else [index[str(v)] for v in batch[label_column]]
        return {"pixel_values": [transform(image) for image in batch[image_column]], "labels": labels}

    keep = [image_column, label_column]
    dataset = dataset.remove_columns([c for c in dataset.column_names if c not in keep])
    return dataset.with_transform(to_model_inputs)


# -- model ----------------------------------------------------------------------------------------
def small_config(model_type: str, num_labels: int, num_channels: int, image_size: int, **options: Any):
    """A small ``resnet`` / ``vit`` / ``convnext`` config; ``options`` override its fields."""
    from transformers import ConvNextConfig, ResNetConfig, ViTConfig  # noqa: PLC0415

    if model_type == "resnet":
        defaults = dict(embedding_size=16, hidden_sizes=[16, 32, 64], depths=[1, 1, 1], layer_type="basic")
        cls = ResNetConfig
    elif model_type == "vit":
        defaults = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, patch_size=4, image_size=image_size)
        cls = ViTConfig
    elif model_type == "convnext":
        defaults = dict(hidden_sizes=[16, 32, 64], depths=[1, 1, 1], patch_size=2, num_stages=3)
        cls = ConvNextConfig
    else:
        raise ValueError(f"unknown --model_type {model_type!r}; accepted values: {', '.join(MODEL_TYPES)}")
    defaults.update({k: v for k, v in options.items() if v is not None})
    id2label = {i: str(i) for i in range(num_labels)}
    return cls(num_channels=num_channels, num_labels=num_labels, id2label=id2label, label2id={v: k for k, v in id2label.items()}, **defaults)


def build_model(
    model_name_or_path: str | None,
    model_type: str,
    names: Sequence[str],
    num_channels: int,
    image_size: int,
    **options: Any,
):
    """``AutoModelForImageClassification``: from a checkpoint (new head for ``names``) or a small config."""
    from transformers import AutoModelForImageClassification  # noqa: PLC0415

    id2label = dict(enumerate(names))
    label2id = {name: i for i, name in id2label.items()}
    if model_name_or_path:
        return AutoModelForImageClassification.from_pretrained(
            model_name_or_path, num_labels=len(names), id2label=id2label, label2id=label2id, ignore_mismatched_sizes=True
        )
    config = small_config(model_type, len(names), num_channels, image_size, **options)
    config.id2label, config.label2id = id2label, label2id
    return AutoModelForImageClassification.from_config(config)


def accuracy(eval_prediction: Any) -> dict[str, float]:
    """``compute_metrics`` for the Trainer: top-1 accuracy."""
    logits, labels = eval_prediction.predictions, eval_prediction.label_ids
    logits = logits[0] if isinstance(logits, tuple) else logits
    return {"accuracy": float((logits.argmax(-1) == labels).mean())}
