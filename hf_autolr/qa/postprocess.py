"""Start/end logits of the features → one answer string per example (``run_qa.py`` conventions).

For every example, each of its features proposes the ``n_best_size`` highest start and end
logits among its context tokens (non-``None`` offsets; ``run_qa.py`` takes them among all tokens
and then drops non-context ones, which can leave an undertrained model with no candidate at
all); a (start, end) pair is a candidate when ``end >= start`` and the span has at most
``max_answer_length`` tokens. Its score is
``start_logit + end_logit`` and its text is the context slice between the character offsets.
The best-scoring candidate over all features is the prediction.

SQuAD 2.0 (``version_2_with_negative``): the null score of an example is the lowest
``start + end`` logit at the CLS token over its features; the prediction is the empty string when
``null_score - best_score > null_score_diff_threshold``. ``no_answer_probability`` is the softmax
weight of the null score among the null score and the n-best candidate scores.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

import numpy as np


def _logits_pair(predictions: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(predictions, tuple | list) and len(predictions) >= 2:
        start, end = predictions[0], predictions[1]
    else:
        raise ValueError("predictions must be a (start_logits, end_logits) pair")
    return np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)


def best_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    offsets: Sequence[Sequence[int] | None],
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> list[tuple[float, int, int]]:
    """Valid ``(score, start_char, end_char)`` candidates of one feature, best first.

    Only context positions (non-``None`` offsets) are candidates; logit positions beyond
    ``offsets`` (padding added when features of different lengths were concatenated) are ignored.
    """
    context = np.flatnonzero([o is not None for o in offsets])
    if context.size == 0:
        return []
    start_order = context[np.argsort(start_logits[context], kind="stable")[::-1][:n_best_size]]
    end_order = context[np.argsort(end_logits[context], kind="stable")[::-1][:n_best_size]]
    candidates = []
    for s in start_order:
        for e in end_order:
            if e < s or e - s + 1 > max_answer_length:
                continue
            candidates.append((float(start_logits[s] + end_logits[e]), int(offsets[s][0]), int(offsets[e][1])))
    candidates.sort(key=lambda c: c[0], reverse=True)
    return candidates[:n_best_size]


def postprocess_qa_predictions(
    examples: Any,
    features: Any,
    predictions: Any,
    version_2_with_negative: bool = False,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    null_score_diff_threshold: float = 0.0,
) -> list[dict[str, Any]]:
    """One ``{"id", "prediction_text"}`` (+ ``"no_answer_probability"`` for v2) per example.

    ``examples`` has ``id`` and ``context``; ``features`` has ``example_id`` and ``offset_mapping``
    (and optionally ``cls_position``, default 0) as made by ``prepare_validation_features``;
    ``predictions`` is ``(start_logits, end_logits)`` with one row per feature.
    """
    start_all, end_all = _logits_pair(predictions)
    if len(start_all) != len(features):
        raise ValueError(f"got logits for {len(start_all)} features but {len(features)} features")
    feature_ids = features["example_id"]
    offset_mappings = features["offset_mapping"]
    cls_positions = features["cls_position"] if "cls_position" in features.column_names else [0] * len(features)
    by_example: dict[str, list[int]] = collections.defaultdict(list)
    for index, example_id in enumerate(feature_ids):
        by_example[example_id].append(index)

    results = []
    for example_id, context in zip(examples["id"], examples["context"]):
        candidates: list[tuple[float, int, int]] = []
        null_score = None
        for f in by_example.get(example_id, []):
            cls = cls_positions[f]
            feature_null = float(start_all[f][cls] + end_all[f][cls])
            null_score = feature_null if null_score is None else min(null_score, feature_null)
            candidates.extend(
                best_spans(start_all[f], end_all[f], offset_mappings[f], n_best_size, max_answer_length)
            )
        candidates.sort(key=lambda c: c[0], reverse=True)
        candidates = candidates[:n_best_size]
        text = context[candidates[0][1]:candidates[0][2]] if candidates else ""
        prediction: dict[str, Any] = {"id": example_id, "prediction_text": text}
        if version_2_with_negative:
            null = -np.inf if null_score is None else null_score
            if not candidates or null - candidates[0][0] > null_score_diff_threshold:
                prediction["prediction_text"] = ""
            scores = np.array([null] + [c[0] for c in candidates])
            if np.isfinite(scores).any():
                weights = np.exp(scores - scores[np.isfinite(scores)].max())
                prediction["no_answer_probability"] = float(weights[0] / weights.sum())
            else:
                prediction["no_answer_probability"] = 1.0
        results.append(prediction)
    return results


def references_from_examples(examples: Any) -> list[dict[str, Any]]:
    """``[{"id", "answers"}]`` in the layout the SQuAD metrics expect."""
    return [{"id": i, "answers": a} for i, a in zip(examples["id"], examples["answers"])]
