"""A ``Trainer`` whose evaluation scores extractive-QA answers (EM/F1) instead of raw logits.

Like transformers' ``examples/pytorch/question-answering/trainer_qa.py``: the evaluation loop
only collects start/end logits (gathered from all processes); the main process turns them into
answer strings (:func:`~hf_autolr.qa.postprocess.postprocess_qa_predictions`) and scores them
(:func:`~hf_autolr.qa.metric.compute_squad_metrics`); the scores are then broadcast so every
process logs the same ``eval_f1`` (a scheduler or early stopping keyed on it sees it on all
ranks). :class:`QuestionAnsweringMixin` can be combined with another ``Trainer`` subclass.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from transformers import Trainer
from transformers.trainer_utils import PredictionOutput, speed_metrics

from hf_autolr.qa.metric import compute_squad_metrics
from hf_autolr.qa.postprocess import postprocess_qa_predictions, references_from_examples


@dataclass
class QAPostProcessing:
    """How logits become answers (defaults of ``run_qa.py``)."""

    version_2_with_negative: bool = False
    n_best_size: int = 20
    max_answer_length: int = 30
    null_score_diff_threshold: float = 0.0


class QuestionAnsweringMixin:
    """Adds QA post-processing and SQuAD scoring to ``evaluate``/``predict`` of a ``Trainer``.

    Extra constructor arguments: ``eval_examples`` (the untokenised examples of ``eval_dataset``:
    ``id``, ``context``, ``answers``) and ``qa_postprocessing`` (a :class:`QAPostProcessing`).
    ``eval_dataset`` must be the validation *features* (``example_id``, ``offset_mapping``).
    After an evaluation, ``last_qa_predictions`` holds the answers on the main process.
    """

    def __init__(self, *args: Any, eval_examples: Any = None, qa_postprocessing: QAPostProcessing | None = None,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.eval_examples = eval_examples
        self.qa_postprocessing = qa_postprocessing or QAPostProcessing()
        self.last_qa_predictions: list[dict[str, Any]] | None = None

    def _qa_predict_and_score(
        self, features: Any, examples: Any, ignore_keys: list[str] | None, prefix: str, description: str
    ) -> tuple[dict[str, float], list[dict[str, Any]] | None]:
        if features is None or examples is None:
            raise ValueError(f"QA {description.lower()} needs both the features dataset and the examples dataset")
        missing = [c for c in ("example_id", "offset_mapping") if c not in features.column_names]
        if missing:
            raise ValueError(
                f"QA {description.lower()} features lack column(s) {', '.join(map(repr, missing))}; "
                "build them with hf_autolr.qa.features.prepare_validation_features"
            )
        start_time = time.time()
        dataloader = self.get_eval_dataloader(features) if prefix == "eval" else self.get_test_dataloader(features)
        compute_metrics, self.compute_metrics = self.compute_metrics, None  # we score answers, not logits
        try:
            output = self.evaluation_loop(
                dataloader, description=description, prediction_loss_only=False,
                ignore_keys=ignore_keys, metric_key_prefix=prefix,
            )
        finally:
            self.compute_metrics = compute_metrics

        predictions, scores = None, None
        if self.is_world_process_zero():
            options = self.qa_postprocessing
            predictions = postprocess_qa_predictions(
                examples, features, output.predictions,
                version_2_with_negative=options.version_2_with_negative, n_best_size=options.n_best_size,
                max_answer_length=options.max_answer_length,
                null_score_diff_threshold=options.null_score_diff_threshold,
            )
            if "answers" in examples.column_names:
                scores = compute_squad_metrics(
                    predictions, references_from_examples(examples), options.version_2_with_negative
                )
        if self.args.world_size > 1:
            from accelerate.utils import broadcast_object_list

            scores = broadcast_object_list([scores], from_process=0)[0]

        metrics = {k: v for k, v in output.metrics.items()}
        metrics.update({f"{prefix}_{k}": v for k, v in (scores or {}).items()})
        total_batch_size = self.args.eval_batch_size * self.args.world_size
        metrics.update(speed_metrics(prefix, start_time, num_samples=output.num_samples,
                                     num_steps=math.ceil(output.num_samples / total_batch_size)))
        return metrics, predictions

    def evaluate(self, eval_dataset: Any = None, eval_examples: Any = None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        """Predict answers for ``eval_examples`` and return ``eval_exact_match``/``eval_f1`` (v2: ``eval_exact``…)."""
        features = self.eval_dataset if eval_dataset is None else eval_dataset
        examples = self.eval_examples if eval_examples is None else eval_examples
        metrics, predictions = self._qa_predict_and_score(features, examples, ignore_keys, metric_key_prefix,
                                                          "Evaluation")
        self.last_qa_predictions = predictions
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def predict(self, test_dataset: Any, test_examples: Any = None, ignore_keys: list[str] | None = None,
                metric_key_prefix: str = "test") -> PredictionOutput:
        """Answers for ``test_examples`` (main process; ``None`` elsewhere) with scores if they have answers."""
        metrics, predictions = self._qa_predict_and_score(test_dataset, test_examples, ignore_keys,
                                                          metric_key_prefix, "Prediction")
        self.control = self.callback_handler.on_predict(self.args, self.state, self.control, metrics)
        return PredictionOutput(predictions=predictions, label_ids=None, metrics=metrics)


class QuestionAnsweringTrainer(QuestionAnsweringMixin, Trainer):
    """``Trainer`` with SQuAD-style evaluation (see :class:`QuestionAnsweringMixin`)."""
