"""napari-seem: SEEM promptable segmentation for napari and Jupyter.

``import napari_seem`` is cheap: it imports neither torch nor Qt. The prompt and result
types (numpy only) are re-exported here; everything that needs torch lives in submodules
that are imported on first use.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from napari_seem.prompts import (
    Box,
    MaskPrompt,
    ObjectPrompt,
    Points,
    Polygon,
    PromptError,
    PromptSet,
    ReferringExample,
    Scribble,
    TextPrompt,
)
from napari_seem.results import ObjectMask, SegmentationResult

try:
    __version__ = version("napari-seem")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = [
    "Box",
    "MaskPrompt",
    "ObjectMask",
    "ObjectPrompt",
    "Points",
    "Polygon",
    "PromptError",
    "PromptSet",
    "ReferringExample",
    "Scribble",
    "SegmentationResult",
    "TextPrompt",
    "__version__",
]
