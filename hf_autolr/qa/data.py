"""Extractive-QA examples as a ``datasets.Dataset``: SQuAD JSON files, flat records, splits.

Every loader returns the column layout of the Hub's ``squad``/``squad_v2`` datasets:
``id, title, context, question, answers{text: list[str], answer_start: list[int]}``. An
unanswerable question (SQuAD 2.0) has empty answer lists.

Accepted files:

* the original nested SQuAD layout ``{"data": [{"title", "paragraphs": [{"context", "qas":
  [{"id", "question", "answers": [{"text", "answer_start"}], "is_impossible"?}]}]}]}``;
* flat records, one per question, as a JSON list, as ``{"data": [records]}`` (what
  ``run_qa.py``'s ``field="data"`` reads) or as JSON Lines (``.jsonl``). ``title`` is optional;
  ``answers`` is ``{"text": [...], "answer_start": [...]}`` or a list of ``{"text", "answer_start"}``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets

RECORD_COLUMNS = ("id", "title", "context", "question", "answers")
REQUIRED_COLUMNS = ("id", "context", "question", "answers")

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "title": datasets.Value("string"),
        "context": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answers": {
            "text": datasets.List(datasets.Value("string")),
            "answer_start": datasets.List(datasets.Value("int32")),
        },
    }
)

_LAYOUT_HINT = (
    "expected the SQuAD layout {'data': [{'title', 'paragraphs': [{'context', 'qas': [...]}]}]} "
    "or flat records with columns id, context, question, answers{text, answer_start}"
)


def _answers_columns(answers: Any, where: str) -> dict[str, list]:
    """``answers`` as ``{"text": [...], "answer_start": [...]}`` from either accepted spelling."""
    if isinstance(answers, Mapping):
        missing = [k for k in ("text", "answer_start") if k not in answers]
        if missing:
            raise ValueError(f"{where}: 'answers' is missing {', '.join(map(repr, missing))}; {_LAYOUT_HINT}")
        texts, starts = list(answers["text"]), list(answers["answer_start"])
    elif isinstance(answers, list):
        bad = [a for a in answers if not (isinstance(a, Mapping) and "text" in a and "answer_start" in a)]
        if bad:
            raise ValueError(f"{where}: each answer needs 'text' and 'answer_start', got {bad[0]!r}")
        texts = [a["text"] for a in answers]
        starts = [a["answer_start"] for a in answers]
    else:
        raise ValueError(f"{where}: 'answers' must be a dict or a list, got {type(answers).__name__}")
    if len(texts) != len(starts):
        raise ValueError(f"{where}: 'answers' has {len(texts)} texts but {len(starts)} answer_start values")
    return {"text": [str(t) for t in texts], "answer_start": [int(s) for s in starts]}


def records_from_squad_json(data: Mapping[str, Any], source: str = "SQuAD JSON") -> list[dict[str, Any]]:
    """Flatten the nested SQuAD layout (``data[].paragraphs[].qas[]``) into one record per question."""
    records = []
    for a, article in enumerate(data["data"]):
        title = str(article.get("title", ""))
        for p, paragraph in enumerate(article.get("paragraphs", [])):
            if "context" not in paragraph or "qas" not in paragraph:
                raise ValueError(f"{source}: data[{a}].paragraphs[{p}] needs 'context' and 'qas'; {_LAYOUT_HINT}")
            for q, qa in enumerate(paragraph["qas"]):
                where = f"{source}: article {a} ({title!r}) paragraph {p} question {q} (id {qa.get('id')!r})"
                missing = [k for k in ("id", "question") if k not in qa]
                if "answers" not in qa and not qa.get("is_impossible"):
                    missing.append("answers")
                if missing:
                    raise ValueError(
                        f"{where} is missing {', '.join(map(repr, missing))}; each question needs 'id', "
                        "'question' and 'answers': [{'text', 'answer_start'}] (or 'is_impossible': true, SQuAD 2.0)"
                    )
                answers = [] if qa.get("is_impossible") else qa["answers"]
                records.append(
                    {
                        "id": str(qa["id"]),
                        "title": title,
                        "context": paragraph["context"],
                        "question": qa["question"],
                        "answers": _answers_columns(answers, where),
                    }
                )
    return records


def dataset_from_records(records: Sequence[Mapping[str, Any]], source: str = "records") -> datasets.Dataset:
    """Flat question records → ``Dataset``; one ``ValueError`` naming every missing column."""
    for i, record in enumerate(records):
        missing = [c for c in REQUIRED_COLUMNS if c not in record]
        if missing:
            raise ValueError(
                f"{source}: record {i} (id {record.get('id')!r}) is missing column(s) {', '.join(map(repr, missing))}; "
                f"extractive QA needs columns {', '.join(REQUIRED_COLUMNS)} (title optional)"
            )
    rows = [
        {
            "id": str(r["id"]),
            "title": str(r.get("title", "") or ""),
            "context": r["context"],
            "question": r["question"],
            "answers": _answers_columns(r["answers"], f"{source}: record {r['id']!r}"),
        }
        for r in records
    ]
    return datasets.Dataset.from_list(rows, features=FEATURES)


def _is_nested_squad(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and isinstance(obj.get("data"), list)
        and all(isinstance(a, Mapping) and "paragraphs" in a for a in obj["data"])
        and len(obj["data"]) > 0
    )


def load_squad_file(path: str | Path) -> datasets.Dataset:
    """Load a SQuAD JSON (nested or flat) or JSON Lines file as a ``Dataset`` (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such QA data file")
    text = path.read_text(encoding="utf-8")
    source = str(path)
    if path.suffix == ".jsonl":
        try:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise ValueError(f"{source} is not JSON Lines ({err}); {_LAYOUT_HINT}") from None
    else:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source} is not a JSON file ({err}); {_LAYOUT_HINT}") from None
        if _is_nested_squad(obj):
            return datasets.Dataset.from_list(records_from_squad_json(obj, source), features=FEATURES)
        records = obj["data"] if isinstance(obj, Mapping) and isinstance(obj.get("data"), list) else obj
    if not isinstance(records, list) or not records or not all(isinstance(r, Mapping) for r in records):
        raise ValueError(f"{source} is not SQuAD JSON: {_LAYOUT_HINT}")
    return dataset_from_records(records, source)


def check_qa_columns(dataset: datasets.Dataset, source: str = "dataset") -> None:
    """Raise one ``ValueError`` naming the columns extractive QA needs that ``dataset`` lacks."""
    missing = [c for c in REQUIRED_COLUMNS if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{source}: missing column(s) {', '.join(map(repr, missing))}; extractive QA needs columns "
            f"{', '.join(REQUIRED_COLUMNS)}, found {', '.join(dataset.column_names)}"
        )
    if "answers" in dataset.features:
        answers = dataset.features["answers"]
        answers = getattr(answers, "feature", answers)  # Sequence({...}) in older dataset scripts
        absent = [k for k in ("text", "answer_start") if not isinstance(answers, dict) or k not in answers]
        if absent:
            raise ValueError(f"{source}: column 'answers' lacks {', '.join(map(repr, absent))}")


def answerable_only(dataset: datasets.Dataset) -> datasets.Dataset:
    """Drop the questions without a gold answer (SQuAD 2.0 → v1.1-style data)."""
    return dataset.filter(lambda answers: len(answers["text"]) > 0, input_columns="answers")


def split_by_title(
    dataset: datasets.Dataset,
    validation_titles: Iterable[str] | None = None,
    validation_fraction: float | None = None,
    seed: int = 0,
) -> datasets.DatasetDict:
    """Split into ``train``/``validation`` by article title, so no paragraph is in both.

    Give the validation articles by name, or a fraction of the articles drawn with ``seed``
    (at least one article on each side).
    """
    titles = list(dict.fromkeys(dataset["title"]))
    if validation_titles is not None:
        chosen = set(validation_titles)
        unknown = sorted(chosen - set(titles))
        if unknown:
            raise ValueError(f"unknown validation title(s) {unknown}; titles present: {titles}")
    elif validation_fraction is not None:
        if not 0.0 < validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
        if len(titles) < 2:
            raise ValueError(f"splitting by article needs at least 2 titles, found {len(titles)}")
        count = min(len(titles) - 1, max(1, round(validation_fraction * len(titles))))
        chosen = set(random.Random(seed).sample(titles, count))
    else:
        raise ValueError("give validation_titles or validation_fraction")
    is_validation = [t in chosen for t in dataset["title"]]
    return datasets.DatasetDict(
        train=dataset.select([i for i, v in enumerate(is_validation) if not v]),
        validation=dataset.select([i for i, v in enumerate(is_validation) if v]),
    )
