"""Deprecated import path: use :mod:`napari_seem.predict.predictor` (kept for one release).

``napari_seem.predictor`` moved to ``napari_seem.predict.predictor`` in the tier layout of
``docs/ARCHITECTURE.md``; every name resolves from the new module.
"""

from __future__ import annotations

import warnings
from typing import Any

import napari_seem.predict.predictor as _target

warnings.warn(
    "napari_seem.predictor moved to napari_seem.predict.predictor; import it from there",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str) -> Any:
    return getattr(_target, name)


def __dir__() -> list[str]:
    return dir(_target)
