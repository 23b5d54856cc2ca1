"""Fixtures shared by the engine and server tests (``tests/engine``, ``tests/remote``).

Their ``conftest.py`` files import them, so every test module there can ask for ``model`` and
``image``; a module that defines a fixture of the same name uses its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from napari_seem.datasets.synthetic import synthetic_nuclei

if TYPE_CHECKING:
    from napari_seem.model.seem import SeemModel

__all__ = ["SHAPE", "image", "model"]

#: ``(H, W)`` of the shared nuclei ``image``.
SHAPE = (200, 300)


@pytest.fixture(scope="module")
def model() -> SeemModel:
    """The tiny random-weight FocalNet SEEM (seed 0), one per test module."""
    from napari_seem.model.build import build_seem  # torch: only when a test asks for it

    return build_seem("seem-tiny-focal", seed=0)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """``(200, 300)`` uint8 grey synthetic nuclei (12 objects, seed 1)."""
    return synthetic_nuclei(SHAPE, n_objects=12, seed=1).image
