"""SQuAD exact-match and F1, written from the description of the official scorers.

SQuAD v1.1 (Rajpurkar et al., EMNLP 2016, arXiv:1606.05250) and v2.0 (Rajpurkar, Jia and Liang,
ACL 2018, arXiv:1806.03822) score an answer string against every gold answer of its question:

* both strings are normalised — lower-cased, punctuation removed, the articles a/an/the removed,
  whitespace collapsed;
* exact match (EM) is 1 when the normalised strings are equal;
* F1 is the harmonic mean of precision and recall of the normalised tokens (a multiset overlap);
* a question's score is the maximum over its gold answers; the reported number is the mean ×100.

A question with no gold answer (SQuAD 2.0 "unanswerable") is scored against the empty string, and
an empty token list only matches another empty one (EM = F1 = 1 for an empty prediction, 0
otherwise). This v2.0 rule is used in both versions, so a v1 evaluation of data that contains
unanswerable questions scores them instead of failing.

Inputs follow the Hugging Face ``evaluate`` convention: predictions are
``{"id", "prediction_text"}`` (plus ``"no_answer_probability"`` for v2) and references are
``{"id", "answers": {"text": [...], "answer_start": [...]}}``. Questions without a prediction
score 0; predictions for unknown ids are ignored.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, ground_truth: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def f1_score(prediction: str, ground_truth: str) -> float:
    """Token-overlap F1 of the normalised strings (1.0 for two empty answers)."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(ground_truth).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _gold_texts(reference: Mapping[str, Any]) -> list[str]:
    texts = [t for t in reference["answers"]["text"] if normalize_answer(t)]
    return texts or [""]


def _per_question(
    predictions: Iterable[Mapping[str, Any]], references: Iterable[Mapping[str, Any]]
) -> tuple[list[str], dict[str, float], dict[str, float], dict[str, bool], dict[str, float]]:
    """Raw EM/F1 per reference id (0 for a missing prediction), answerability and no-answer probs."""
    predicted = {p["id"]: p for p in predictions}
    ids: list[str] = []
    exact: dict[str, float] = {}
    f1: dict[str, float] = {}
    has_answer: dict[str, bool] = {}
    na_prob: dict[str, float] = {}
    for ref in references:
        qid = ref["id"]
        golds = _gold_texts(ref)
        ids.append(qid)
        has_answer[qid] = golds != [""]
        pred = predicted.get(qid)
        if pred is None:
            exact[qid] = f1[qid] = 0.0
            na_prob[qid] = 0.0
            continue
        text = pred["prediction_text"]
        exact[qid] = max(exact_match_score(text, g) for g in golds)
        f1[qid] = max(f1_score(text, g) for g in golds)
        na_prob[qid] = float(pred.get("no_answer_probability", 0.0) or 0.0)
    return ids, exact, f1, has_answer, na_prob


def _mean100(values: Sequence[float]) -> float:
    return 100.0 * sum(values) / len(values) if values else 0.0


def squad_v1(
    predictions: Iterable[Mapping[str, Any]], references: Iterable[Mapping[str, Any]]
) -> dict[str, float]:
    """SQuAD v1.1 scores: ``{"exact_match": EM×100, "f1": F1×100}``."""
    ids, exact, f1, _, _ = _per_question(predictions, references)
    return {"exact_match": _mean100([exact[i] for i in ids]), "f1": _mean100([f1[i] for i in ids])}


def _best_threshold(
    ids: list[str], scores: dict[str, float], na_prob: dict[str, float], has_answer: dict[str, bool]
) -> tuple[float, float]:
    """Best total score (×100) and its threshold when every answer with ``na_prob > t`` is dropped.

    Starting from "everything predicted empty" (the score of the unanswerable questions), the
    questions are visited in increasing no-answer probability; keeping the prediction of question
    ``q`` changes the total by ``score[q]`` minus what the empty answer would have scored.
    """
    current = best = float(sum(not has_answer[i] for i in ids))
    best_threshold = 0.0
    for qid in sorted(ids, key=lambda i: na_prob[i]):
        current += scores[qid] - float(not has_answer[qid])
        if current > best:
            best, best_threshold = current, na_prob[qid]
    return 100.0 * best / len(ids) if ids else 0.0, best_threshold


def squad_v2(
    predictions: Iterable[Mapping[str, Any]],
    references: Iterable[Mapping[str, Any]],
    no_answer_threshold: float = 1.0,
) -> dict[str, float]:
    """SQuAD v2.0 scores in the official script's layout.

    ``exact``/``f1``/``total`` over all questions, the same on the ``HasAns_``/``NoAns_`` subsets
    (where present), and ``best_exact``/``best_f1`` with the no-answer probability threshold that
    maximises them. A prediction whose ``no_answer_probability`` exceeds ``no_answer_threshold``
    counts as the empty answer (the default 1.0 keeps every prediction as given).
    """
    ids, exact_raw, f1_raw, has_answer, na_prob = _per_question(predictions, references)

    def thresholded(raw: dict[str, float]) -> dict[str, float]:
        return {
            i: float(not has_answer[i]) if na_prob[i] > no_answer_threshold else raw[i] for i in ids
        }

    exact, f1 = thresholded(exact_raw), thresholded(f1_raw)
    result: dict[str, float] = {
        "exact": _mean100([exact[i] for i in ids]),
        "f1": _mean100([f1[i] for i in ids]),
        "total": len(ids),
    }
    for prefix, subset in (
        ("HasAns", [i for i in ids if has_answer[i]]),
        ("NoAns", [i for i in ids if not has_answer[i]]),
    ):
        if subset:
            result[f"{prefix}_exact"] = _mean100([exact[i] for i in subset])
            result[f"{prefix}_f1"] = _mean100([f1[i] for i in subset])
            result[f"{prefix}_total"] = len(subset)
    result["best_exact"], result["best_exact_thresh"] = _best_threshold(ids, exact_raw, na_prob, has_answer)
    result["best_f1"], result["best_f1_thresh"] = _best_threshold(ids, f1_raw, na_prob, has_answer)
    return result


def compute_squad_metrics(
    predictions: Iterable[Mapping[str, Any]],
    references: Iterable[Mapping[str, Any]],
    version_2_with_negative: bool = False,
    no_answer_threshold: float = 1.0,
) -> dict[str, float]:
    """:func:`squad_v2` when ``version_2_with_negative`` else :func:`squad_v1`."""
    if version_2_with_negative:
        return squad_v2(predictions, references, no_answer_threshold=no_answer_threshold)
    return squad_v1(predictions, references)


SQUAD_METRIC_DIR = Path(__file__).resolve().parent / "squad_metric"


def load_squad_metric(version_2_with_negative: bool = False, **load_kwargs: Any) -> Any:
    """The offline ``evaluate`` metric in ``squad_metric/`` (``evaluate.load`` of that folder).

    Config ``"squad_v2"`` when ``version_2_with_negative`` else ``"squad"``. Imports ``evaluate``
    (several seconds) only when called.
    """
    import evaluate

    config = "squad_v2" if version_2_with_negative else "squad"
    return evaluate.load(str(SQUAD_METRIC_DIR), config, **load_kwargs)
