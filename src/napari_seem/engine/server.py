"""Deprecated import path: use :mod:`napari_seem.remote.server` (kept for one release).

``napari_seem.engine.server`` moved to ``napari_seem.remote.server`` in the tier layout of
``docs/ARCHITECTURE.md``; every name resolves from the new module.
"""

from napari_seem.core.compat import moved

__getattr__, __dir__ = moved(__name__, "napari_seem.remote.server")
