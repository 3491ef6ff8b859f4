"""Make ``clars``, ``lars``, ``lamb`` and ``adamp`` valid ``optim`` values in transformers.

transformers has no optimizer registry (as for schedulers, ``transformers_names``): ``OptimizerNames``
is a closed ``str`` enum checked by ``TrainingArguments.__post_init__`` and by ``HfArgumentParser``
(argparse ``choices``), and the staticmethod ``Trainer.get_optimizer_cls_and_kwargs(args, model)``
maps the name to ``(class, kwargs)``. ``Trainer.create_optimizer`` then builds
``cls(param_groups, **kwargs)`` with two groups, the weights at ``args.weight_decay`` and the biases /
norm-layer weights at 0 (``get_decay_parameter_names``), so ``weight_decay`` never goes in ``kwargs``.

``register_optimizer_names()`` adds one enum member per name (same recipe as the scheduler names);
``registration`` wraps the staticmethod: our names give our classes, every other name goes to
transformers unchanged. Both are idempotent. A name transformers already defines is left to
transformers, with a warning (upstream wins). Without registration the route still works:
``Trainer(..., optimizer_cls_and_kwargs=optimizer_cls_and_kwargs(args, "lamb"))``.

The keyword arguments (:func:`optimizer_cls_and_kwargs`): ``lr = args.learning_rate``; the defaults of
``hf_autolr.optim.factory``; for LAMB and AdamP ``betas = (adam_beta1, adam_beta2)`` and
``eps = adam_epsilon``, as the Trainer does for every Adam-type optimizer; then ``args.optim_args``
(``"trust_coefficient=0.01,momentum=0.95"``, or ``beta1=`` / ``beta2=``), each value converted to the
type of the constructor argument's default. Unknown keys, ``lr`` and ``weight_decay`` (set them with
``learning_rate`` / ``weight_decay``) raise one ``ValueError`` listing the accepted keys.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

from hf_autolr._validation import check_choice, value_name
from hf_autolr.optim.factory import available_optimizers, get_optimizer_cls

_MARK = "_hf_autolr"
_ADAM_TYPE = ("lamb", "adamp")
_SET_ELSEWHERE = {"self", "params", "lr", "weight_decay"}


def is_hf_autolr_optimizer(optim: Any) -> bool:
    """Whether ``optim`` (a name or an ``OptimizerNames`` member) is one of ours, as registered."""
    from transformers.training_args import OptimizerNames  # noqa: PLC0415 - integration only

    member = OptimizerNames._value2member_map_.get(value_name(optim))
    return member is not None and getattr(member, _MARK, False)


_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _is_flag(default: Any, annotation: Any) -> bool:
    """A bool option, or one that is ``None`` by default and typed ``bool | None``."""
    kind = str(annotation)
    return isinstance(default, bool) or (default is None and "bool" in kind and "int" not in kind and "float" not in kind)


def _parse_value(key: str, raw: str, default: Any, annotation: Any = "") -> Any:
    """``raw`` converted to the type of ``default`` (and ``annotation``, for a ``None`` default)."""
    lowered = raw.lower()
    if _is_flag(default, annotation):
        if default is None and lowered == "none":
            return None
        if lowered in _WORDS:
            return _WORDS[lowered]
        accepted = "true, false or none" if default is None else "true or false"
    elif isinstance(default, (int, float)):
        try:
            return int(raw) if isinstance(default, int) else float(raw)
        except ValueError:
            accepted = "an integer" if isinstance(default, int) else "a number"
    elif default is None:
        if lowered in ("none", "true", "false"):
            return None if lowered == "none" else lowered == "true"
        try:
            return float(raw)
        except ValueError:
            accepted = "a number, true, false or none"
    else:
        return raw
    raise ValueError(f"optim_args: {key}={raw!r} is not valid; accepted: {accepted}")


def parse_optim_args(text: str | None, cls: type) -> dict[str, Any]:
    """``"k=v,k=v"`` -> constructor keyword arguments of ``cls``, typed by their defaults (``betas`` as
    ``beta1`` / ``beta2``, left for the caller to merge)."""
    if not text:
        return {}
    signature = inspect.signature(cls.__init__).parameters
    options = {
        key: p
        for key, p in signature.items()
        if key not in _SET_ELSEWHERE and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    accepted = {key: p.default for key, p in options.items()}
    betas = accepted.pop("betas", None)
    if betas is not None:
        accepted.update(beta1=float(betas[0]), beta2=float(betas[1]))
    out: dict[str, Any] = {}
    for item in text.replace(" ", "").split(","):
        if not item:
            continue
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"optim_args: expected key=value pairs separated by commas, got {item!r}")
        check_choice(f"optim_args for {cls.__name__}", "key", key, accepted)
        out[key] = _parse_value(key, raw, accepted[key], getattr(options.get(key), "annotation", ""))
    return out


def optimizer_cls_and_kwargs(args: Any, name: str | None = None) -> tuple[type, dict[str, Any]]:
    """``(class, kwargs)`` for our optimizer ``name`` (default ``args.optim``) from ``TrainingArguments``:
    what ``Trainer.get_optimizer_cls_and_kwargs`` returns for our names, and what
    ``Trainer(optimizer_cls_and_kwargs=...)`` takes. ``weight_decay`` comes from the param groups."""
    name = value_name(args.optim if name is None else name)
    check_choice("hf_autolr optimizer", "optim", name, available_optimizers())
    cls, kwargs = get_optimizer_cls(name)
    kwargs["lr"] = args.learning_rate
    if name in _ADAM_TYPE:
        kwargs.update(betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)
    extra = parse_optim_args(getattr(args, "optim_args", None), cls)
    if "beta1" in extra or "beta2" in extra:  # beta1= alone keeps the configured beta2
        beta1, beta2 = kwargs["betas"]
        kwargs["betas"] = (extra.pop("beta1", beta1), extra.pop("beta2", beta2))
    kwargs.update(extra)
    return cls, kwargs


def _add_members(names: list[str]) -> list[str]:
    from transformers.training_args import OptimizerNames  # noqa: PLC0415

    from hf_autolr.integrations.transformers_names import _add_enum_member  # noqa: PLC0415

    registered = []
    for name in names:
        existing = OptimizerNames._value2member_map_.get(name)
        if existing is not None and not getattr(existing, _MARK, False):
            warnings.warn(
                f"hf_autolr: transformers already defines optim={name!r}; its own optimizer is used, not "
                f"hf_autolr's (pass optimizer_cls_and_kwargs=optimizer_cls_and_kwargs(args, {name!r}) for ours)",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        _add_enum_member(OptimizerNames, name)
        setattr(OptimizerNames._value2member_map_[name], _MARK, True)
        registered.append(name)
    return registered


def register_optimizer_names(names: list[str] | None = None) -> list[str]:
    """Register ``names`` (default: ``clars``, ``lars``, ``lamb``, ``adamp``) as ``TrainingArguments.optim``
    values. Idempotent; returns the names that are ours; ``RegistrationError`` if ``OptimizerNames``
    moved. ``import hf_autolr`` does it (with the ``Trainer`` wrappers, ``registration``)."""
    from hf_autolr.integrations.registration import RegistrationError  # noqa: PLC0415

    names = available_optimizers() if names is None else list(names)
    for name in names:
        check_choice("register_optimizer_names", "name", name, available_optimizers())
    from transformers.training_args import OptimizerNames  # noqa: PLC0415

    missing = [a for a in ("_value2member_map_", "_member_map_", "_member_names_") if not hasattr(OptimizerNames, a)]
    if missing:
        raise RegistrationError(f"OptimizerNames lacks {missing}")
    return _add_members(names)
