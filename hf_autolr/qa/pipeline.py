"""The data side of ``scripts/train_squad.py``: raw examples in, model-ready features out."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import datasets

from hf_autolr.qa.arguments import DataTrainingArguments, ModelArguments
from hf_autolr.qa.data import answerable_only, check_qa_columns, load_squad_file
from hf_autolr.qa.embedded import make_embedded_squad
from hf_autolr.qa.features import tokenize_train_dataset, tokenize_validation_dataset

logger = logging.getLogger(__name__)


def load_raw_datasets(data_args: DataTrainingArguments, model_args: ModelArguments | None = None) -> datasets.DatasetDict:
    """``train``/``validation`` examples from the Hub, from files, or the embedded dataset."""
    if data_args.dataset_name:
        raw = datasets.load_dataset(
            data_args.dataset_name,
            data_args.dataset_config_name,
            cache_dir=getattr(model_args, "cache_dir", None),
            token=getattr(model_args, "token", None),
        )
    elif data_args.train_file or data_args.validation_file:
        raw = datasets.DatasetDict()
        if data_args.train_file:
            raw["train"] = load_squad_file(data_args.train_file)
        if data_args.validation_file:
            raw["validation"] = load_squad_file(data_args.validation_file)
    else:
        raw = make_embedded_squad(
            seed=data_args.embedded_seed, unanswerable_fraction=data_args.embedded_unanswerable_fraction
        )
    for split, dataset in raw.items():
        check_qa_columns(dataset, f"{data_args.dataset_name or 'data'} split {split!r}")
    return raw


def _limit(dataset: datasets.Dataset, limit: int | None) -> datasets.Dataset:
    return dataset if limit is None else dataset.select(range(min(limit, len(dataset))))


def _answerable_unless_v2(dataset: datasets.Dataset, split: str, data_args: DataTrainingArguments) -> datasets.Dataset:
    if data_args.version_2_with_negative:
        return dataset
    kept = answerable_only(dataset)
    if len(kept) < len(dataset):
        logger.warning(
            "%s: dropped %d unanswerable questions (pass --version_2_with_negative to keep them)",
            split, len(dataset) - len(kept),
        )
    return kept


@dataclass
class QADatasets:
    """Training features, evaluation examples and their features (``None`` when not needed)."""

    train_features: datasets.Dataset | None
    eval_examples: datasets.Dataset | None
    eval_features: datasets.Dataset | None


def prepare_qa_datasets(
    raw: datasets.DatasetDict, tokenizer: Any, data_args: DataTrainingArguments, training_args: Any
) -> QADatasets:
    """Select, filter and tokenise the splits that ``do_train``/``do_eval`` need.

    Tokenisation runs first on the main process (``main_process_first``), like ``run_qa.py``.
    """
    train_features = eval_examples = eval_features = None
    options = dict(tokenizer=tokenizer, max_seq_length=data_args.max_seq_length, doc_stride=data_args.doc_stride,
                   pad_to_max_length=data_args.pad_to_max_length, num_proc=data_args.preprocessing_num_workers)
    if training_args.do_train:
        if "train" not in raw:
            raise ValueError("--do_train needs training data: --train_file or a --dataset_name with a 'train' split")
        train_examples = _limit(_answerable_unless_v2(raw["train"], "train", data_args), data_args.max_train_samples)
        with training_args.main_process_first(desc="train dataset tokenisation"):
            train_features = tokenize_train_dataset(train_examples, **options)
    if training_args.do_eval:
        if "validation" not in raw:
            raise ValueError(
                "--do_eval needs validation data: --validation_file or a --dataset_name with a 'validation' split"
            )
        eval_examples = _limit(_answerable_unless_v2(raw["validation"], "validation", data_args),
                               data_args.max_eval_samples)
        with training_args.main_process_first(desc="validation dataset tokenisation"):
            eval_features = tokenize_validation_dataset(eval_examples, **options)
    return QADatasets(train_features, eval_examples, eval_features)
