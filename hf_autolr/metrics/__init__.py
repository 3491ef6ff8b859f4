"""Offline copies of ``evaluate``'s Hub metrics ``squad``, ``squad_v2`` and ``accuracy``.

``python -m hf_autolr.run`` falls back to them when ``evaluate.load`` cannot reach the Hub
(:func:`offline_metric` says which copy stands in for a name). Each is an ``evaluate`` module
folder, loaded with ``evaluate.load(<folder>, <config>)``; the SQuAD one scores with
:mod:`hf_autolr.qa.metric`. Example::

    folder, config = offline_metric("evaluate-metric/squad_v2")   # (…/qa/squad_metric, "squad_v2")
    metric = evaluate.load(str(folder), config)
"""

from __future__ import annotations

from pathlib import Path

from hf_autolr.qa.metric import SQUAD_METRIC_DIR

ACCURACY_METRIC_DIR = Path(__file__).resolve().parent / "accuracy"
_HUB_PREFIX = "evaluate-metric/"

# Hub metric name -> (offline module folder, its config for that name; None: the caller's).
OFFLINE_METRICS: dict[str, tuple[Path, str | None]] = {
    "squad": (SQUAD_METRIC_DIR, "squad"),
    "squad_v2": (SQUAD_METRIC_DIR, "squad_v2"),
    "accuracy": (ACCURACY_METRIC_DIR, None),
}


def offline_metric(path: str) -> tuple[Path, str | None] | None:
    """The offline ``(folder, config)`` standing in for Hub metric ``path``, or ``None``."""
    name = str(path).removeprefix(_HUB_PREFIX)
    return OFFLINE_METRICS.get(name)
