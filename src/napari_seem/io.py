"""Deprecated import path: use :mod:`napari_seem.core.io` (kept for one release).

``napari_seem.io`` moved to ``napari_seem.core.io`` in the tier layout of
``docs/ARCHITECTURE.md``; every name resolves from the new module.
"""

from __future__ import annotations

import warnings
from typing import Any

import napari_seem.core.io as _target

warnings.warn(
    "napari_seem.io moved to napari_seem.core.io; import it from there",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str) -> Any:
    return getattr(_target, name)


def __dir__() -> list[str]:
    return dir(_target)
