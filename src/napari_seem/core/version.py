"""The installed package's version (``0.0.0+unknown`` in a source tree without installation)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("napari-seem")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
