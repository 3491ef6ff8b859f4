"""Make our method names valid ``lr_scheduler_type`` values in transformers.

transformers has no scheduler registry: ``SchedulerType`` is a closed ``str`` enum checked by
``TrainingArguments``, ``HfArgumentParser`` (argparse ``choices``) and ``get_scheduler``, which
then looks the member up in ``TYPE_TO_SCHEDULER_FUNCTION``. We add one enum member and one
factory per name. Registration is idempotent, never touches an upstream value, and raises
``RegistrationError`` if the internals moved (``registration`` turns that into one warning).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hf_autolr.integrations.registration import RegistrationError
from hf_autolr.registry import available_methods, build_scheduler

def _add_enum_member(enum_cls: type, value: str) -> None:
    """Append ``value`` to a ``str`` enum in place (Python 3.10-3.13 enum internals)."""
    if value in enum_cls._value2member_map_:
        return
    member = str.__new__(enum_cls, value)
    member._name_ = value.upper()
    member._value_ = value
    member._sort_order_ = len(enum_cls._member_names_)
    member.__objclass__ = enum_cls
    enum_cls._member_map_[member._name_] = member
    enum_cls._value2member_map_[value] = member
    enum_cls._member_names_.append(member._name_)


def register_with_transformers(names: list[str] | None = None) -> list[str]:
    """Register ``names`` (default: every hf_autolr method) as transformers scheduler types.

    Returns the names registered. Safe to call any number of times, in every process, before
    ``TrainingArguments`` / ``HfArgumentParser`` are built or ``training_args.bin`` is unpickled.
    """
    try:
        from transformers import optimization, trainer_utils  # noqa: PLC0415 - integration only

        enum_cls = trainer_utils.SchedulerType
        table = optimization.TYPE_TO_SCHEDULER_FUNCTION
        for attr in ("_value2member_map_", "_member_map_", "_member_names_"):
            if not hasattr(enum_cls, attr):
                raise RegistrationError(f"SchedulerType has no {attr}")
    except (ImportError, AttributeError) as err:
        raise RegistrationError(str(err)) from err

    names = available_methods() if names is None else list(names)
    for name in names:
        existing = enum_cls._value2member_map_.get(name)
        if existing is not None and not getattr(table.get(existing), "_hf_autolr", False):
            if existing in table:  # an upstream scheduler of the same name: never overwrite it
                raise RegistrationError(f"transformers already defines lr_scheduler_type {name!r}")
        _add_enum_member(enum_cls, name)
        table[enum_cls(name)] = scheduler_factory(name)
    return names


def scheduler_factory(name: str) -> Callable[..., Any]:
    """The ``TYPE_TO_SCHEDULER_FUNCTION`` entry for ``name``: :func:`build_scheduler` (which warns
    once when the run is too short for the method to decide anything)."""

    def factory(optimizer: Any, num_warmup_steps: int | None = None, num_training_steps: int | None = None,
                **options: Any) -> Any:
        return build_scheduler(name, optimizer, num_warmup_steps, num_training_steps, **options)

    factory.__name__ = f"build_{name}"
    factory._hf_autolr = True  # type: ignore[attr-defined]
    return factory
