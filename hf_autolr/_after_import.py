"""Run a function right after a module is first imported: a one-shot import hook.

``import hf_autolr`` uses it to register with transformers only once transformers is imported,
and ``python -m hf_autolr.run`` to give ``evaluate.load`` its offline fallback only once
``evaluate`` is. A module already imported gets the function at once. Example::

    after_import("transformers.trainer", lambda module: patch_trainer(module.Trainer))
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Callable
from typing import Any

_PENDING: dict[str, list[Callable[[Any], None]]] = {}


class _RunAfter(importlib.abc.Loader):
    """Delegates to the real loader, then calls the functions waiting for the module."""

    def __init__(self, loader: Any, then: list[Callable[[Any], None]]) -> None:
        self.loader, self.then = loader, then

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.loader.exec_module(module)
        module.__loader__ = self.loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self.loader
        for function in self.then:
            function(sys.modules.get(module.__name__, module))


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader the other finders give for a module we wait for."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in _PENDING:
            return None
        spec = None
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None  # let the import proceed (or fail) as it would without us
        spec.loader = _RunAfter(spec.loader, _PENDING.pop(fullname))
        if not _PENDING:
            sys.meta_path.remove(self)
        return spec


def after_import(name: str, function: Callable[[Any], None]) -> None:
    """``function(module)`` now if module ``name`` is imported, else right after it first is."""
    module = sys.modules.get(name)
    if module is not None:
        function(module)
        return
    _PENDING.setdefault(name, []).append(function)
    if not any(isinstance(finder, _AfterImportFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterImportFinder())
