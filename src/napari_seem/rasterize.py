"""Deprecated import path: use :mod:`napari_seem.core.rasterize` (kept for one release).

``napari_seem.rasterize`` moved to ``napari_seem.core.rasterize`` in the tier layout of
``docs/ARCHITECTURE.md``; every name resolves from the new module.
"""

from __future__ import annotations

import warnings
from typing import Any

import napari_seem.core.rasterize as _target

warnings.warn(
    "napari_seem.rasterize moved to napari_seem.core.rasterize; import it from there",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str) -> Any:
    return getattr(_target, name)


def __dir__() -> list[str]:
    return dir(_target)
