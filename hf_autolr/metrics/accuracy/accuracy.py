"""Accuracy as an offline ``evaluate`` metric, with the inputs and output of the Hub's ``accuracy``.

``evaluate.load("<path to this folder>")`` (config ``"default"``, or ``"multilabel"`` where each
prediction and reference is a list of labels and only an exact match counts). Accuracy is the
share of predictions equal to their reference (Metz, "Basic principles of ROC analysis", 1978,
for the terms), optionally weighted by ``sample_weight``; ``normalize=False`` gives the weighted
count instead. ``evaluate`` scans this file's imports, so keep one import per line.
"""

import datasets
import evaluate
import numpy

_DESCRIPTION = """Accuracy: the proportion of correct predictions among all predictions,
(TP + TN) / (TP + TN + FP + FN) for two classes."""

_INPUTS = """predictions: list of int (multilabel: list of lists of int). references: the same.
normalize (bool, default True): the share of correct predictions; False: their (weighted) count.
sample_weight (list of float, optional): one weight per prediction.
Returns {"accuracy": float}."""


class Accuracy(evaluate.Metric):
    """The share (or count) of predictions equal to their reference."""

    def _info(self):
        if self.config_name not in ("default", "multilabel"):
            raise ValueError(f"config_name must be 'default' or 'multilabel', got {self.config_name!r}")
        label = datasets.Value("int32")
        if self.config_name == "multilabel":
            label = datasets.Sequence(label)
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": label, "references": label}),
        )

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        if self.config_name == "multilabel":
            correct = numpy.array([list(p) == list(r) for p, r in zip(predictions, references)], dtype=float)
        else:
            correct = (numpy.asarray(predictions) == numpy.asarray(references)).astype(float)
        weights = numpy.ones_like(correct) if sample_weight is None else numpy.asarray(sample_weight, dtype=float)
        total = float((correct * weights).sum())
        return {"accuracy": total / float(weights.sum()) if normalize else total}
