"""Record the learning-rate schedule in the model card the Trainer writes (and pushes).

``Trainer.create_model_card()`` (also called by ``Trainer.push_to_hub()``) overwrites
``output_dir/README.md`` with transformers' card. When the trainer ran one of our schedulers,
:func:`wrap_create_model_card` (installed on the trainer instance by ``AutoLRCallback.set_trainer``,
so an unmodified ``Trainer`` and ``AutoLRTrainer`` alike get it) then:

- adds the tags ``hf_autolr`` and the method name (``autolr_gp``, ...) to the card metadata and to
  the model (``model.add_model_tags``, for a later ``model.push_to_hub``);
- stores a plain summary in ``card.data["hf_autolr"]``: method, its ``description`` and
  ``summary()``, options (``lr_scheduler_kwargs``), ``decisions()``, ``diagnostics()`` and final
  metrics (all from the method itself, so a new method needs no edit here);
- saves ``lr_schedule.png`` (LR and loss per optimizer step, :func:`hf_autolr.plotting.plot_schedule`)
  in ``output_dir`` and appends a section rendered from a Markdown template that links to it.

The template is ``hf_autolr/integrations/model_card_template.md`` (shipped with the package; the
repository keeps an identical copy in ``model_cards/autolr_card.md`` to start from). Use your own
with ``add_schedule_to_card(trainer, template=path)`` or the environment variable
``HF_AUTOLR_CARD_TEMPLATE``; it is a :class:`string.Template` with ``$method``, ``$description``,
``$summary``, ``$version``, ``$base_lr``, ``$options``, ``$decisions``, ``$metrics`` and ``$plot``.

The wrapper also makes the card's first sentence true (:func:`state_base_model`): the base
model is linked only when it is a Hub id; a model built from a config says "trained from scratch"
and a local folder is named without a link (transformers writes "trained from scratch" for any
local folder, and an empty link ``[](https://huggingface.co/)`` for a config-built model). The
licence of a local base model folder is taken from its own card, so no Hub request is made.

Nothing secret reaches the card: only the scheduler's options, its decisions and the training
logs are written, and any option whose name looks like a credential is redacted. ``hub_token``
is kept out of every ``training_args.bin`` (checkpoints, ``save_model``, the copy ``push_to_hub``
uploads): transformers pickles the whole ``TrainingArguments`` there, so the wrapper replaces
the live token by :class:`LocalToken`, the same string, which pickles as ``None``.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import string
from pathlib import Path
from typing import Any

from hf_autolr.schedulers.base import FeedbackScheduler

logger = logging.getLogger(__name__)

PLOT_NAME = "lr_schedule.png"
TEMPLATE_ENV = "HF_AUTOLR_CARD_TEMPLATE"
DEFAULT_TEMPLATE = Path(__file__).with_name("model_card_template.md")
TAG = "hf_autolr"
_START, _END = "<!-- hf_autolr:start -->", "<!-- hf_autolr:end -->"
_CARD_WRAPPED = "_hf_autolr_card_wrapped"
_NOT_METRICS = ("step", "total_flos", "learning_rate", "grad_norm")
_SECRET_WORDS = ("token", "secret", "password", "api_key", "apikey", "credential")



# -- what goes into the card ----------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """JSON/YAML-safe copy: non-finite floats become None, tuples lists, unknown objects strings."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "item"):  # a 0-d tensor or numpy scalar
        return _plain(value.item())
    return str(value)


def _redact(options: dict[str, Any]) -> dict[str, Any]:
    return {
        key: "<redacted>" if any(word in str(key).lower() for word in _SECRET_WORDS) else value
        for key, value in options.items()
    }


def scheduler_options(args: Any) -> dict[str, Any]:
    """``args.lr_scheduler_kwargs`` as a plain dict (a JSON string is parsed), secrets redacted."""
    options = getattr(args, "lr_scheduler_kwargs", None) or {}
    if isinstance(options, str):
        options = json.loads(options) if options.strip() else {}
    return _plain(_redact(dict(options)))


def scheduler_decisions(scheduler: FeedbackScheduler, history: dict[str, list[float]] | None = None) -> dict[str, Any]:
    """What ``scheduler`` decided (its ``decisions()``), with the peak and final LR of ``history``."""
    lrs = list((history or {}).get("lr") or [])
    out: dict[str, Any] = {"peak_lr": max(lrs), "final_lr": lrs[-1]} if lrs else {}
    out.update(scheduler.decisions())
    return _plain(out)


def final_metrics(log_history: list[dict[str, Any]], global_step: int | None = None) -> dict[str, Any]:
    """The last value of each metric in ``state.log_history``.

    Left out: diagnostics (``a/b`` keys, in ``diagnostics``), speeds and runtimes, and per-step
    quantities (``learning_rate``, ``grad_norm``; the final LR is in the decisions).
    """
    metrics: dict[str, Any] = {}
    for entry in log_history or []:
        for key, value in entry.items():
            if "/" in key or key in _NOT_METRICS or key.endswith(("_runtime", "_per_second")) or not isinstance(value, (int, float)):
                continue
            metrics[key] = value
    if global_step is not None:
        metrics["global_step"] = global_step
    return _plain(metrics)


def schedule_summary(trainer: Any) -> dict[str, Any] | None:
    """``card.data["hf_autolr"]`` for a trainer that ran one of our schedulers, else ``None``."""
    scheduler = _feedback_scheduler(getattr(trainer, "lr_scheduler", None))
    if scheduler is None:
        return None
    from hf_autolr import __version__  # noqa: PLC0415 - avoid a cycle at import

    history = training_history(trainer)
    state = getattr(trainer, "state", None)
    return {
        "method": scheduler.name,
        "description": scheduler.description,
        "summary": scheduler.summary(),
        "version": __version__,
        "learning_rate": _plain(float(scheduler.base_lrs[0])) if scheduler.base_lrs else None,
        "options": scheduler_options(trainer.args),
        "decisions": scheduler_decisions(scheduler, history),
        "diagnostics": _plain(scheduler.diagnostics()),
        "metrics": final_metrics(getattr(state, "log_history", []), getattr(state, "global_step", None)),
    }


def training_history(trainer: Any) -> dict[str, list[float]]:
    """The per-step ``{"step", "lr", "loss"}`` kept by the trainer's :class:`AutoLRCallback`."""
    from hf_autolr.integrations.trainer import AutoLRCallback  # noqa: PLC0415 - trainer.py imports us

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, AutoLRCallback):
            return callback.history
    return {"step": [], "lr": [], "loss": []}


def autolr_tags(scheduler: Any) -> list[str]:
    """``["hf_autolr", <method>]`` for one of our schedulers, else ``[]``."""
    scheduler = _feedback_scheduler(scheduler)
    return [] if scheduler is None else [TAG, scheduler.name]


# -- rendering ------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value) or "none"
    return str(value)


def _table(rows: dict[str, Any], empty: str, header: tuple[str, str] = ("", "")) -> str:
    if not rows:
        return empty
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| `{key}` | {_fmt(value)} |" for key, value in rows.items()]
    return "\n".join(lines)


def render_schedule_section(summary: dict[str, Any], plot: str | None, template: str | Path | None = None) -> str:
    """The card section for ``summary`` (see :func:`schedule_summary`), from the template."""
    path = Path(template or os.environ.get(TEMPLATE_ENV) or DEFAULT_TEMPLATE)
    text = path.read_text(encoding="utf-8")
    method = summary["method"]
    values = {
        "method": method,
        "description": summary.get("description") or "a feedback-driven learning-rate schedule.",
        "summary": summary.get("summary") or "",
        "version": summary.get("version", ""),
        "base_lr": _fmt(summary.get("learning_rate")),
        "options": _table(summary["options"], "Defaults (no `lr_scheduler_kwargs`).", ("option", "value")),
        "decisions": _table(summary["decisions"], "Nothing recorded.", ("decision", "value")),
        "metrics": _table(summary["metrics"], "No metrics were logged.", ("metric", "value")),
        "plot": f"![Learning rate and training loss per optimizer step]({plot})" if plot else "No plot (no steps recorded).",
    }
    section = string.Template(text).safe_substitute(values).strip()
    if _START not in section:
        section = f"{_START}\n{section}\n{_END}"
    return section


def _replace_section(text: str, section: str) -> str:
    start, end = text.find(_START), text.find(_END)
    if start >= 0 and end > start:
        return text[:start].rstrip() + "\n\n" + section + text[end + len(_END) :]
    return text.rstrip() + "\n\n" + section + "\n"


# -- the card -------------------------------------------------------------------------------------
def add_schedule_to_card(trainer: Any, template: str | Path | None = None, plot: bool = True) -> Path | None:
    """Add the schedule to ``output_dir/README.md`` written by ``create_model_card``; return its path.

    Does nothing (returns ``None``) when the trainer ran none of our schedulers, on processes
    other than the main one, or when there is no card yet.
    """
    summary = schedule_summary(trainer)
    card_path = Path(trainer.args.output_dir) / "README.md"
    if summary is None or not trainer.is_world_process_zero() or not card_path.exists():
        return None
    from huggingface_hub import ModelCard  # noqa: PLC0415

    plot_name = None
    history = training_history(trainer)
    if plot and history["step"]:
        try:
            from hf_autolr.plotting import plot_schedule  # noqa: PLC0415

            plot_schedule(history, trainer.lr_scheduler, card_path.parent / PLOT_NAME)
            plot_name = PLOT_NAME
        except ImportError as error:  # matplotlib missing: the card still gets the numbers
            logger.warning("hf_autolr: no %s in the model card (%s)", PLOT_NAME, error)
    card = ModelCard.load(card_path)
    card.data.tags = _merge_tags(card.data.tags, [TAG, summary["method"]])
    card.data[TAG] = summary
    card.text = _replace_section(card.text, render_schedule_section(summary, plot_name, template))
    card.save(card_path)
    return card_path


def _merge_tags(tags: Any, extra: list[str]) -> list[str]:
    tags = [tags] if isinstance(tags, str) else list(tags or [])
    return tags + [tag for tag in extra if tag not in tags]


def wrap_create_model_card(trainer: Any) -> None:
    """Make ``trainer.create_model_card`` (and so ``push_to_hub``) true and record our schedule.

    Wraps the method on the instance (once), so it works for an unmodified ``Trainer`` and for
    subclasses that override ``create_model_card`` (the wrapper calls theirs first), and keeps
    ``hub_token`` out of saved arguments. Also tags the model (``add_model_tags``) once it is known
    that one of our schedulers runs. The scripts call it on their trainer, whatever the schedule.
    """
    if not getattr(trainer, _CARD_WRAPPED, False):
        _wrap_card_writer(trainer)
        protect_hub_token(trainer.args)
    tags = autolr_tags(getattr(trainer, "lr_scheduler", None))
    model = getattr(trainer, "model", None)
    if tags and hasattr(model, "add_model_tags"):
        model.add_model_tags(tags)


def _wrap_card_writer(trainer: Any) -> None:
    original = trainer.create_model_card

    @functools.wraps(original)
    def create_model_card(*args: Any, **kwargs: Any) -> None:
        tags = autolr_tags(getattr(trainer, "lr_scheduler", None))
        if tags:
            kwargs["tags"] = _merge_tags(kwargs.get("tags"), tags)
        loaded_from = getattr(getattr(trainer.model, "config", None), "_name_or_path", "") or ""
        base = kwargs.get("finetuned_from") or loaded_from
        if hub_model_id(base) is None:
            kwargs.pop("finetuned_from", None)  # else transformers writes a link and base_model for a path
        if kwargs.get("license") is None and os.path.isdir(loaded_from):
            kwargs["license"] = local_license(loaded_from)
        original(*args, **kwargs)
        if trainer.is_world_process_zero():  # the process that wrote the card
            state_base_model(Path(trainer.args.output_dir) / "README.md", base)
        if tags:
            add_schedule_to_card(trainer)

    trainer.create_model_card = create_model_card
    setattr(trainer, _CARD_WRAPPED, True)


class LocalToken(str):
    """A token that is its string everywhere in the process but pickles as ``None``.

    ``torch.save(args)`` (``training_args.bin``) then stores no token; copies keep it.
    Example: ``args.hub_token = LocalToken(args.hub_token)``.
    """

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return type(None), ()

    def __copy__(self) -> LocalToken:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> LocalToken:
        return self


def protect_hub_token(args: Any) -> None:
    """Make ``args.hub_token`` a :class:`LocalToken`, so no saved ``training_args.bin`` holds it."""
    token = getattr(args, "hub_token", None)
    if isinstance(token, str) and token and not isinstance(token, LocalToken):
        args.hub_token = LocalToken(token)


# -- the base model -------------------------------------------------------------------------------
_ORIGIN = re.compile(r"^This model (?:was trained from scratch|is a fine-tuned version of .*?) on (?P<data>.*)$", re.M)


def hub_model_id(name: str | None) -> str | None:
    """``name`` if it reads as a Hub model id (``org/name``) and is no local path, else ``None``."""
    if not name or os.path.exists(name):
        return None
    from huggingface_hub.utils import HFValidationError, validate_repo_id  # noqa: PLC0415

    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def local_license(folder: str) -> str | None:
    """The ``license`` in the metadata of ``folder/README.md``, if there is one."""
    card = Path(folder) / "README.md"
    if not card.is_file():
        return None
    from huggingface_hub import ModelCard  # noqa: PLC0415

    try:
        return ModelCard.load(card).data.get("license")
    except Exception:  # noqa: BLE001 - a card we cannot parse has no licence for us
        return None


def origin_phrase(base: str | None) -> str:
    """``is a fine-tuned version of [id](https://huggingface.co/id)``, of a local model, or from scratch."""
    hub = hub_model_id(base)
    if hub:
        return f"is a fine-tuned version of [{hub}](https://huggingface.co/{hub})"
    if base:
        return f"is a fine-tuned version of the local model `{Path(base).name}`"
    return "was trained from scratch"


def state_base_model(card_path: Path, base: str | None) -> None:
    """Rewrite the card's "This model ... on ... dataset." sentence with :func:`origin_phrase`.

    An in-memory dataset's missing name ("the None dataset") becomes "an unknown dataset".
    """
    if not card_path.is_file():
        return
    from huggingface_hub import ModelCard  # noqa: PLC0415

    card = ModelCard.load(card_path)
    match = _ORIGIN.search(card.text)
    if match is None:
        return
    data = "an unknown dataset." if match["data"].strip() == "the None dataset." else match["data"]
    card.text = card.text[: match.start()] + f"This model {origin_phrase(base)} on {data}" + card.text[match.end() :]
    card.save(card_path)


def _feedback_scheduler(scheduler: Any) -> FeedbackScheduler | None:
    return scheduler if isinstance(scheduler, FeedbackScheduler) else None
