"""Extractive question answering (SQuAD-style) building blocks for ``scripts/train_squad.py``.

- :mod:`hf_autolr.qa.data` — SQuAD JSON / flat JSON / JSONL → ``datasets.Dataset``; splits by article.
- :mod:`hf_autolr.qa.embedded` — the embedded synthetic default dataset (generated from a seed).
- :mod:`hf_autolr.qa.features` — tokenised windows with answer labels / offsets (``run_qa.py`` recipe).
- :mod:`hf_autolr.qa.postprocess` — logits → answer strings (n-best, max answer length, SQuAD 2.0 null).
- :mod:`hf_autolr.qa.metric` — official SQuAD v1.1 / v2.0 EM and F1; ``load_squad_metric()`` for ``evaluate``.
- :mod:`hf_autolr.qa.trainer` — ``QuestionAnsweringTrainer`` (post-processing and scoring on the main process).
- :mod:`hf_autolr.qa.arguments`, :mod:`hf_autolr.qa.pipeline` — the script's arguments and data preparation.

Submodules are imported on demand; ``import hf_autolr.qa`` itself is free.
"""
