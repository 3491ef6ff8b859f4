"""SQuAD v1.1 / v2.0 exact match and F1 as an offline ``evaluate`` metric.

Load it with ``evaluate.load("<path to this folder>")`` (config ``"squad"``, the default, or
``"squad_v2"``) or with ``hf_autolr.qa.metric.load_squad_metric()``. It takes the inputs of the
Hub's ``squad``/``squad_v2`` metrics and delegates the scoring to ``hf_autolr.qa.metric``, so it
needs no network. ``evaluate`` scans this file's imports, so keep one import per line.
"""

import datasets
import evaluate

from hf_autolr.qa.metric import compute_squad_metrics

_DESCRIPTION = """Exact match and token-overlap F1 of extractive-QA answers (official SQuAD scoring:
lower-case, no punctuation, no articles, collapsed whitespace; maximum over the gold answers;
mean x100). The squad_v2 config also scores unanswerable questions: an empty prediction matches
an empty answer list."""

_CITATION = """Rajpurkar, Zhang, Lopyrev and Liang, SQuAD: 100,000+ Questions for Machine
Comprehension of Text, EMNLP 2016 (arXiv:1606.05250). Rajpurkar, Jia and Liang, Know What You
Don't Know: Unanswerable Questions for SQuAD, ACL 2018 (arXiv:1806.03822)."""

_INPUTS = """predictions: list of {"id": str, "prediction_text": str} (squad_v2: also
"no_answer_probability": float). references: list of {"id": str, "answers": {"text": list[str],
"answer_start": list[int]}}. squad_v2 also accepts no_answer_threshold (default 1.0).
Returns {"exact_match", "f1"} (squad) or {"exact", "f1", "total", "HasAns_*", "NoAns_*",
"best_exact", "best_f1", ...} (squad_v2)."""

_ANSWERS = {
    "text": datasets.Sequence(datasets.Value("string")),
    "answer_start": datasets.Sequence(datasets.Value("int32")),
}


class SquadMetric(evaluate.Metric):
    """SQuAD v1.1 (config ``squad``) or v2.0 (config ``squad_v2``) EM/F1, computed offline."""

    def _info(self):
        if self.config_name not in ("default", "squad", "squad_v2"):
            raise ValueError(f"config_name must be 'squad' or 'squad_v2', got {self.config_name!r}")
        prediction = {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")}
        if self.config_name == "squad_v2":
            prediction["no_answer_probability"] = datasets.Value("float32")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": prediction, "references": {"id": datasets.Value("string"), "answers": _ANSWERS}}
            ),
        )

    def _compute(self, predictions, references, no_answer_threshold=1.0):
        return compute_squad_metrics(
            predictions,
            references,
            version_2_with_negative=self.config_name == "squad_v2",
            no_answer_threshold=no_answer_threshold,
        )
