"""Jupyter tests run the reduced random model unless NAPARI_SEEM_VARIANT says otherwise."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("anywidget")
pytest.importorskip("ipywidgets")

os.environ.setdefault("NAPARI_SEEM_VARIANT", "seem-tiny-focal")
