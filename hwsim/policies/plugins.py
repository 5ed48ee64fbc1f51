"""Loading a user's policy function named `module:function` or `path/file.py:function`."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType


class PluginError(ValueError):
    """A policy named `where:function` that cannot be loaded (the message says why)."""


def load_module(where: str) -> ModuleType:
    """Import `where`: a module name, or a .py file path (relative to the working directory).
    Raises ImportError, OSError or SyntaxError."""
    if not where.endswith(".py"):
        return importlib.import_module(where)
    spec = importlib.util.spec_from_file_location(Path(where).stem, where)
    if spec is None or not Path(where).is_file():
        raise FileNotFoundError(where)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_function(name: str) -> Callable:
    """The function `name` = `module:function` or `path/file.py:function` names; raises PluginError.
    (Importing may also register it, under `name`, in a policy registry.)"""
    where, function = name.rsplit(":", 1)
    try:
        module = load_module(where)
    except (ImportError, OSError, SyntaxError) as err:
        raise PluginError(f"cannot load {where!r}: {err}") from None
    found = getattr(module, function, None)
    if not callable(found):
        raise PluginError(f"{where!r} has no function {function!r}")
    return found


def resolve(
    name: str, registry: dict, what: str, error: type[Exception], register: Callable[[str, Callable], None] | None = None
) -> Callable:
    """What `registry` holds as `name`, or the function `name` = `file.py:function` names, registered
    under `name` from then on (by `register(name, function)` if given); raises `error` naming `what`."""
    if name in registry:
        return registry[name]
    if ":" not in name:
        raise error(f"no {what} named {name!r}; known: {', '.join(registry)} (or 'file.py:function')")
    try:
        found = load_function(name)
    except PluginError as err:
        raise error(f"{what} {name!r}: {err}") from None
    if name not in registry:  # the module may have registered itself under this name
        if register is None:
            registry[name] = found
        else:
            register(name, found)
    return registry[name]
