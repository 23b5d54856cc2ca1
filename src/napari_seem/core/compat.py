"""Old import paths that keep working for one release (see ``docs/ARCHITECTURE.md``).

A deprecated module is three lines: its docstring, and
``__getattr__, __dir__ = moved(__name__, "napari_seem.new.home")``. Importing it warns once
(``DeprecationWarning``) and every name resolves from the new module.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["moved"]


def moved(old: str, new: str) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Import ``new``, warn that ``old`` moved there, and return the ``old`` module's
    ``(__getattr__, __dir__)`` pair that forwards every name to ``new``."""
    target = importlib.import_module(new)
    # stacklevel 3: past this function and the old module, at the importing statement
    warnings.warn(f"{old} moved to {new}; import it from there", DeprecationWarning, stacklevel=3)

    def getattr_(name: str) -> Any:
        return getattr(target, name)

    def dir_() -> list[str]:
        return dir(target)

    return getattr_, dir_
