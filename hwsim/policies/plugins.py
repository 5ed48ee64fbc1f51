"""Loading a user's policy function named `module:function` or `path/file.py:function`."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType


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
