"""Deprecated import path: use :mod:`napari_seem.core.hub` (kept for one release).

``napari_seem.weights`` moved to ``napari_seem.core.hub`` in the tier layout of
``docs/ARCHITECTURE.md``; every name resolves from the new module.
"""

from __future__ import annotations

import warnings
from typing import Any

import napari_seem.core.hub as _target

warnings.warn(
    "napari_seem.weights moved to napari_seem.core.hub; import it from there",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str) -> Any:
    return getattr(_target, name)


def __dir__() -> list[str]:
    return dir(_target)
