"""napari-seem: SEEM promptable segmentation for napari and Jupyter.

``import napari_seem`` is cheap: it imports neither torch nor Qt. The prompt and result
types (numpy only) are re-exported here; everything that needs torch lives in submodules
that are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari_seem.core.prompts import (
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
from napari_seem.core.results import ObjectMask, SegmentationResult
from napari_seem.core.version import __version__

if TYPE_CHECKING:
    from napari_seem.api import fine_tune, segment, segment_everything


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
    "fine_tune",
    "segment",
    "segment_everything",
]

_API = ("fine_tune", "segment", "segment_everything")


def __getattr__(name: str) -> Any:
    # the scripting API builds engines (torch) on first use: import it only when asked for
    if name in _API:
        from napari_seem import api

        return getattr(api, name)
    raise AttributeError(f"module 'napari_seem' has no attribute {name!r}")
