"""Deprecated import path: use :mod:`napari_seem.core.hub` (kept for one release).

``napari_seem.weights`` moved to ``napari_seem.core.hub`` in the tier layout of
``docs/ARCHITECTURE.md``; every name resolves from the new module.
"""

from napari_seem.core.compat import moved

__getattr__, __dir__ = moved(__name__, "napari_seem.core.hub")
