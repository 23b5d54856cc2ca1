"""Deprecated import path: use :mod:`napari_seem.core.export` (kept for one release).

``napari_seem.export`` moved to ``napari_seem.core.export`` in the tier layout of
``docs/ARCHITECTURE.md``; every name resolves from the new module.
"""

from __future__ import annotations

import warnings
from typing import Any

import napari_seem.core.export as _target

warnings.warn(
    "napari_seem.export moved to napari_seem.core.export; import it from there",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str) -> Any:
    return getattr(_target, name)


def __dir__() -> list[str]:
    return dir(_target)
