"""Tokenised features for extractive QA, following transformers' ``run_qa.py`` recipe.

A (question, context) pair is tokenised with ``truncation="only_second"`` so only the context is
cut; a context longer than ``max_seq_length`` becomes several overlapping windows ("features",
``doc_stride`` tokens of overlap) and ``overflow_to_sample_mapping`` maps each window back to its
example. ``sequence_ids()`` tells which tokens belong to the context.

* Training features carry ``start_positions``/``end_positions``: the first and last token of the
  first gold answer when it lies wholly inside the window's context, else the CLS token (the
  SQuAD 2.0 convention for "no answer here", also used for unanswerable questions).
* Validation features carry ``example_id`` and an ``offset_mapping`` whose non-context entries
  are ``None``, which is what :func:`hf_autolr.qa.postprocess.postprocess_qa_predictions` needs.

Works with any fast tokenizer; when it pads on the left (XLNet-style) the pair is (context,
question) instead, as in ``run_qa.py``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import datasets


def _check_lengths(tokenizer: Any, max_seq_length: int, doc_stride: int) -> None:
    if max_seq_length <= 0 or doc_stride < 0:
        raise ValueError(f"max_seq_length must be > 0 and doc_stride >= 0, got {max_seq_length}, {doc_stride}")
    if doc_stride >= max_seq_length:
        raise ValueError(
            f"doc_stride ({doc_stride}) must be smaller than max_seq_length ({max_seq_length}); "
            "it is the overlap between windows of one context (run_qa uses 128 with 384)"
        )
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("extractive-QA features need a fast tokenizer (offsets and overflow mapping)")


def _check_room(tokenizer: Any, questions: list[str], max_seq_length: int, doc_stride: int) -> None:
    """The tokenizer aborts the process (a Rust panic) when a window has no room beyond the stride."""
    lengths = [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
    longest = max(lengths, default=0)
    room = max_seq_length - longest - tokenizer.num_special_tokens_to_add(pair=True)
    if room <= doc_stride:
        raise ValueError(
            f"a question of {longest} tokens leaves {room} context tokens per window with "
            f"max_seq_length={max_seq_length}, but doc_stride={doc_stride} needs more: raise "
            "max_seq_length or lower doc_stride"
        )


def _tokenize(examples: dict[str, list], tokenizer: Any, max_seq_length: int, doc_stride: int, pad: bool):
    _check_lengths(tokenizer, max_seq_length, doc_stride)
    questions = [q.lstrip() for q in examples["question"]]  # leading spaces waste window tokens
    pad_on_right = tokenizer.padding_side == "right"
    first, second = (questions, examples["context"]) if pad_on_right else (examples["context"], questions)
    _check_room(tokenizer, questions, max_seq_length, doc_stride)
    encoded = tokenizer(
        first,
        second,
        truncation="only_second" if pad_on_right else "only_first",
        max_length=max_seq_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length" if pad else False,
    )
    return encoded, (1 if pad_on_right else 0)


def _cls_index(input_ids: list[int], tokenizer: Any) -> int:
    cls_id = tokenizer.cls_token_id
    return input_ids.index(cls_id) if cls_id is not None and cls_id in input_ids else 0


def _context_bounds(sequence_ids: list[int | None], context_id: int) -> tuple[int, int]:
    """First and last token index of the context in one window."""
    indices = [i for i, s in enumerate(sequence_ids) if s == context_id]
    return indices[0], indices[-1]


def answer_token_span(
    offsets: list[tuple[int, int]], sequence_ids: list[int | None], context_id: int, start_char: int, end_char: int
) -> tuple[int, int] | None:
    """Token indices of the answer ``[start_char, end_char)`` in one window, or ``None`` if not inside it."""
    first, last = _context_bounds(sequence_ids, context_id)
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return None
    start = first
    while start + 1 <= last and offsets[start + 1][0] <= start_char:
        start += 1
    end = last
    while end - 1 >= first and offsets[end - 1][1] >= end_char:
        end -= 1
    return start, end


def prepare_train_features(
    examples: dict[str, list], tokenizer: Any, max_seq_length: int = 384, doc_stride: int = 128, pad_to_max_length: bool = True
) -> dict[str, list]:
    """Batched ``Dataset.map`` function: windows with answer start/end token labels (CLS if absent)."""
    encoded, context_id = _tokenize(examples, tokenizer, max_seq_length, doc_stride, pad_to_max_length)
    sample_mapping = encoded.pop("overflow_to_sample_mapping")
    offset_mapping = encoded.pop("offset_mapping")
    encoded["start_positions"], encoded["end_positions"] = [], []
    for i, offsets in enumerate(offset_mapping):
        cls = _cls_index(encoded["input_ids"][i], tokenizer)
        answers = examples["answers"][sample_mapping[i]]
        span = None
        if answers["answer_start"]:
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            span = answer_token_span(offsets, encoded.sequence_ids(i), context_id, start_char, end_char)
        start, end = span if span is not None else (cls, cls)
        encoded["start_positions"].append(start)
        encoded["end_positions"].append(end)
    return encoded


def prepare_validation_features(
    examples: dict[str, list], tokenizer: Any, max_seq_length: int = 384, doc_stride: int = 128, pad_to_max_length: bool = True
) -> dict[str, list]:
    """Batched ``Dataset.map`` function: windows with ``example_id`` and context-only offsets."""
    encoded, context_id = _tokenize(examples, tokenizer, max_seq_length, doc_stride, pad_to_max_length)
    sample_mapping = encoded.pop("overflow_to_sample_mapping")
    encoded["example_id"] = []
    encoded["cls_position"] = []
    for i in range(len(encoded["input_ids"])):
        sequence_ids = encoded.sequence_ids(i)
        encoded["example_id"].append(examples["id"][sample_mapping[i]])
        encoded["cls_position"].append(_cls_index(encoded["input_ids"][i], tokenizer))
        encoded["offset_mapping"][i] = [
            tuple(o) if sequence_ids[k] == context_id else None for k, o in enumerate(encoded["offset_mapping"][i])
        ]
    return encoded


def tokenize_train_dataset(
    examples: datasets.Dataset, tokenizer: Any, max_seq_length: int = 384, doc_stride: int = 128,
    pad_to_max_length: bool = True, num_proc: int | None = None,
) -> datasets.Dataset:
    """Map :func:`prepare_train_features` over a QA dataset (its original columns are dropped)."""
    fn = partial(prepare_train_features, tokenizer=tokenizer, max_seq_length=max_seq_length,
                 doc_stride=doc_stride, pad_to_max_length=pad_to_max_length)
    return examples.map(fn, batched=True, remove_columns=examples.column_names, num_proc=num_proc,
                        desc="Tokenizing train examples")


def tokenize_validation_dataset(
    examples: datasets.Dataset, tokenizer: Any, max_seq_length: int = 384, doc_stride: int = 128,
    pad_to_max_length: bool = True, num_proc: int | None = None,
) -> datasets.Dataset:
    """Map :func:`prepare_validation_features` over a QA dataset (its original columns are dropped)."""
    fn = partial(prepare_validation_features, tokenizer=tokenizer, max_seq_length=max_seq_length,
                 doc_stride=doc_stride, pad_to_max_length=pad_to_max_length)
    return examples.map(fn, batched=True, remove_columns=examples.column_names, num_proc=num_proc,
                        desc="Tokenizing validation examples")
