"""Jupyter entry points: ``SeemWidget`` (the canvas) and ``SeemApp`` (canvas + controls).

>>> from napari_seem.jupyter import SeemApp
>>> app = SeemApp(image, vocabulary=["nucleus"])  # doctest: +SKIP
>>> app  # doctest: +SKIP

Needs the ``jupyter`` extra (``pip install "napari-seem[jupyter]"``): anywidget and
ipywidgets. The browser code ships inside the package; nothing is loaded from a CDN.
"""

from __future__ import annotations

from napari_seem._jupyter.app import SeemApp
from napari_seem._jupyter.widget import SeemWidget

__all__ = ["SeemApp", "SeemWidget"]
