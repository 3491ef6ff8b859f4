"""Command-line arguments of the scripts: parse, check, or exit with one line that names the mistake.

``scripts/train_squad.py`` and ``scripts/train_image_classification.py`` parse with
``HfArgumentParser``. :func:`parse_or_exit` wraps that parse so that a user mistake (an unknown
name, malformed JSON in ``--lr_scheduler_kwargs``, a misspelt or out-of-range scheduler option, a
bad ``--optim_args`` value, a negative learning rate, a missing model folder) ends the script
before any model or data loads: exit status 2 and one line on stderr, no traceback::

    train_squad.py: error: --lr_scheduler_kwargs {"patiencee": 2}: autolr_gp: unknown option(s) 'patiencee' ...

:func:`exit_on_user_error` does the same for a later stage (loading the data files). The checks
themselves (:func:`check_training_arguments`) raise ``ValueError``, for callers in Python.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import math
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

import torch

from hf_autolr._validation import value_name

EXIT_STATUS = 2  # argparse's status for a usage error
USER_ERRORS = (ValueError, TypeError, OSError)
# Length of the trial scheduler when max_steps is not given: options whose validity depends on the
# run length (lrtuner's tune_every >= 3 x probe_steps) are the least strict for short runs.
TRIAL_STEPS = 100
_SET_BY_TRAINER = {"optimizer", "num_warmup_steps", "num_training_steps", "last_epoch"}


def one_line(text: Any) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


def exit_with_error(prog: str, message: Any) -> NoReturn:
    """Print ``PROG: error: MESSAGE`` as one line on stderr and exit with status 2."""
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
    raise SystemExit(EXIT_STATUS)


@contextlib.contextmanager
def exit_on_user_error(prog: str, errors: tuple[type[BaseException], ...] = USER_ERRORS) -> Iterator[None]:
    """Turn ``errors`` raised in the block into :func:`exit_with_error`.

    Example::

        with exit_on_user_error("train_squad.py"):
            raw = load_raw_datasets(data_args)   # a missing or malformed file: one line, exit 2
    """
    try:
        yield
    except errors as error:
        exit_with_error(prog, error)


def parse_or_exit(parser: Any, argv: Sequence[str], *, json_file: bool = False) -> tuple[Any, ...]:
    """``parser.parse_args_into_dataclasses(argv)`` plus :func:`check_training_arguments`, or exit.

    Argparse's own errors (unknown choices, bad types) also become one line. With ``json_file``, a
    single ``*.json`` argument is read as the arguments file (the ``run_qa.py`` convention).
    """
    parser.error = functools.partial(exit_with_error, parser.prog)  # not usage + message: one line
    argv = list(argv)
    with exit_on_user_error(parser.prog):
        if json_file and len(argv) == 1 and argv[0].endswith(".json"):
            parsed = parser.parse_json_file(json_file=os.path.abspath(argv[0]))
        else:
            check_raw_options(parser, argv)
            parsed = parser.parse_args_into_dataclasses(args=argv)
        for arguments in parsed:
            if hasattr(arguments, "lr_scheduler_type") and hasattr(arguments, "optim"):
                check_training_arguments(arguments)
    return tuple(parsed)


# -- the checks (ValueError) ----------------------------------------------------------------------
def check_raw_options(parser: Any, argv: Sequence[str]) -> None:
    """``ValueError`` naming the option for an unknown ``--lr_scheduler_type``/``--optim`` name or a
    ``{...}`` value that is not JSON (transformers parses ``--lr_scheduler_kwargs`` and the other dict
    options with ``json.loads`` and checks names in ``__post_init__``; neither error names the option)."""
    from transformers import TrainingArguments  # noqa: PLC0415
    from transformers.trainer_utils import SchedulerType  # noqa: PLC0415
    from transformers.training_args import OptimizerNames  # noqa: PLC0415

    namespace, _ = parser.parse_known_args(args=list(argv))
    for option, names in (("lr_scheduler_type", SchedulerType), ("optim", OptimizerNames)):
        value = getattr(namespace, option, None)
        if isinstance(value, str) and value not in names._value2member_map_:
            raise ValueError(f"--{option} {value}: unknown name; accepted values: {', '.join(names._value2member_map_)}")
    for option in getattr(TrainingArguments, "_VALID_DICT_FIELDS", ["lr_scheduler_kwargs"]):
        value = getattr(namespace, option, None)
        if isinstance(value, str) and value.startswith("{"):
            try:
                json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"--{option} {value}: not valid JSON ({error.msg} at character {error.pos}); "
                    """expected a JSON object such as '{"option": 2}'"""
                ) from None


def check_model_path(option: str, value: str | None) -> None:
    """``ValueError`` when ``value`` is written as a local path (``/…``, ``./…``, ``~…``) that does not exist.

    A Hub id (``org/name``) is left to ``from_pretrained``.
    """
    if value and value.startswith(("/", ".", "~")) and not os.path.exists(os.path.expanduser(value)):
        raise ValueError(f"--{option} {value}: no such folder; give a model folder or a Hub model id")


def check_training_arguments(args: Any) -> None:
    """``ValueError`` for a learning rate, scheduler or optimizer option the run would reject later.

    Example: ``TrainingArguments(lr_scheduler_type="autolr_gp", lr_scheduler_kwargs={"patience": -1})``
    → ``ValueError: --lr_scheduler_kwargs {"patience": -1}: autolr_gp: option 'patience' must be ...``.
    """
    check_learning_rate(args.learning_rate)
    check_scheduler_options(args)
    check_optimizer_options(args)


def check_learning_rate(learning_rate: Any) -> None:
    """``ValueError`` unless ``learning_rate`` is a finite number >= 0."""
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or not (
        math.isfinite(learning_rate) and learning_rate >= 0
    ):
        raise ValueError(f"--learning_rate {learning_rate!r}: must be a finite number >= 0")


def _trial_param_groups(weight_decay: float = 0.0) -> list[dict[str, Any]]:
    """One group with one zero parameter: what ``Trainer.create_optimizer`` passes, in miniature."""
    return [{"params": [torch.nn.Parameter(torch.zeros(1))], "weight_decay": weight_decay}]


def scheduler_option_names(name: str) -> list[str]:
    """The ``lr_scheduler_kwargs`` keys scheduler ``name`` accepts (ours or a transformers one)."""
    from hf_autolr.registry import available_methods, method_options  # noqa: PLC0415

    if name in available_methods():
        return sorted(method_options(name))
    from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION  # noqa: PLC0415
    from transformers.trainer_utils import SchedulerType  # noqa: PLC0415

    factory = TYPE_TO_SCHEDULER_FUNCTION.get(SchedulerType(name))
    if factory is None:
        return []
    parameters = inspect.signature(factory).parameters.values()
    return sorted(p.name for p in parameters if p.name not in _SET_BY_TRAINER and p.kind is not p.VAR_KEYWORD)


def check_scheduler_options(args: Any) -> None:
    """Build ``args.lr_scheduler_type`` with ``args.lr_scheduler_kwargs`` on a trial optimizer, as
    ``Trainer.create_scheduler`` will (``transformers.get_scheduler``): any ``ValueError`` or
    ``TypeError`` comes back as one ``ValueError`` naming the option, the value and what is accepted."""
    from transformers import get_scheduler  # noqa: PLC0415

    from hf_autolr.registry import available_methods  # noqa: PLC0415

    name = value_name(args.lr_scheduler_type)
    options = args.lr_scheduler_kwargs or {}
    if not isinstance(options, dict) or (not options and name not in available_methods()):
        return
    steps = args.max_steps if args.max_steps and args.max_steps > 0 else TRIAL_STEPS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "too short": the real run warns if it applies
            get_scheduler(name, torch.optim.SGD(_trial_param_groups(), lr=args.learning_rate), num_warmup_steps=args.get_warmup_steps(steps),
                          num_training_steps=steps, scheduler_specific_kwargs=dict(options))
    except (ValueError, TypeError) as error:
        message = str(error)
        if isinstance(error, TypeError) and "accepted" not in message:
            message += f"; accepted options: {', '.join(scheduler_option_names(name)) or 'none'}"
        raise ValueError(f"--lr_scheduler_kwargs {json.dumps(options)}: {message}") from None


def check_optimizer_options(args: Any) -> None:
    """Build our ``--optim`` (``clars``, ``lars``, ``lamb``, ``adamp``) with ``--optim_args`` on a
    trial parameter; an error comes back as one ``ValueError`` naming both options."""
    from hf_autolr.integrations.optimizer_names import is_hf_autolr_optimizer, optimizer_cls_and_kwargs  # noqa: PLC0415

    if not is_hf_autolr_optimizer(args.optim):
        return
    name = value_name(args.optim)
    try:
        cls, kwargs = optimizer_cls_and_kwargs(args)
        cls(_trial_param_groups(args.weight_decay), **kwargs)
    except (ValueError, TypeError, ImportError) as error:
        given = f" --optim_args {args.optim_args!r}" if args.optim_args else ""
        raise ValueError(f"--optim {name}{given}: {error}") from None
