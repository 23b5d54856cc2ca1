"""The widget's Python-side state, free of ipywidgets: committed labels, undo, views.

Frames: level-0 ``(row, col)`` pixels of one image plane. The browser never holds level-0
arrays of a large image: it gets an *overview* (every ``step``-th pixel of the plane) and
*views* (a crop of the plane subsampled to the canvas size), both as raw bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_seem.app.labels import ZARR_LABELS_ABOVE, LabelStore
from napari_seem.core.io import ImageSource
from napari_seem.core.prompts import (
    Box,
    ObjectPrompt,
    Points,
    PromptError,
    Scribble,
    TextPrompt,
    VisualPrompt,
)

__all__ = [
    "ZARR_LABELS_ABOVE",
    "LabelStore",
    "View",
    "prompt_from_json",
    "prompt_to_json",
    "read_view",
    "rgba_bytes",
    "subsampled_mask",
]

#: Longest side of a preview mask sent to the browser (bigger masks are subsampled).
PREVIEW_SIDE = 1024


# ----------------------------------------------------------------------------- prompts


def prompt_from_json(item: dict[str, Any]) -> VisualPrompt:
    """One prompt drawn in the browser -> a visual prompt (level-0 ``(row, col)``).

    Forms: ``{"kind": "point", "row", "col", "positive"}``, ``{"kind": "box", "row0",
    "col0", "row1", "col1"}``, ``{"kind": "scribble", "coords": [[row, col], ...],
    "positive"}``.
    """
    if not isinstance(item, dict):
        raise PromptError(f"a browser prompt must be a dict; got {type(item).__name__}")
    kind = item.get("kind")
    try:
        if kind == "point":
            return Points.click(
                float(item["row"]), float(item["col"]), positive=bool(item.get("positive", True))
            )
        if kind == "box":
            return Box.from_corners(
                (float(item["row0"]), float(item["col0"])),
                (float(item["row1"]), float(item["col1"])),
            )
        if kind == "scribble":
            return Scribble(
                np.asarray(item["coords"], dtype=float),
                positive=bool(item.get("positive", True)),
            )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, PromptError):
            raise
        raise PromptError(f"malformed browser prompt {item!r}: {exc}") from None
    raise PromptError(f"unknown browser prompt kind {kind!r}; expected point, box or scribble")


def prompt_to_json(prompt: VisualPrompt) -> list[dict[str, Any]]:
    """A visual prompt as browser prompt dicts (``Points`` give one dict per click)."""
    if isinstance(prompt, Points):
        return [
            {"kind": "point", "row": float(r), "col": float(c), "positive": bool(p)}
            for (r, c), p in zip(prompt.coords, prompt.positive, strict=True)
        ]
    if isinstance(prompt, Box):
        return [
            {
                "kind": "box",
                "row0": prompt.row_min,
                "col0": prompt.col_min,
                "row1": prompt.row_max,
                "col1": prompt.col_max,
            }
        ]
    if isinstance(prompt, Scribble):
        return [
            {
                "kind": "scribble",
                "coords": prompt.vertices.tolist(),
                "positive": bool(prompt.positive),
            }
        ]
    raise PromptError(f"{type(prompt).__name__} prompts cannot be drawn in the widget")


def object_prompt(items: Sequence[dict[str, Any]], text: str) -> ObjectPrompt | None:
    """The current object's prompt from the browser's prompt list (None when empty).

    Clicks merge into one ``Points`` prompt (the order of clicks is kept).
    """
    visual = [prompt_from_json(item) for item in items]
    if not visual:
        return None
    clicks = [p for p in visual if isinstance(p, Points)]
    others = [p for p in visual if not isinstance(p, Points)]
    merged: list[VisualPrompt] = []
    if clicks:
        merged.append(
            Points(
                np.concatenate([p.coords for p in clicks]),
                np.concatenate([p.positive for p in clicks]),
            )
        )
    phrase = TextPrompt(text) if text.strip() else None
    return ObjectPrompt((*merged, *others), phrase)


# ----------------------------------------------------------------------------- pixels


def rgba_bytes(rgb: npt.NDArray[np.uint8]) -> bytes:
    """``(h, w, 3)`` uint8 -> raw ``(h, w, 4)`` RGBA bytes (opaque), row-major."""
    h, w = rgb.shape[:2]
    out = np.empty((h, w, 4), np.uint8)
    out[..., :3] = rgb
    out[..., 3] = 255
    return out.tobytes()


def subsampled_mask(
    mask: npt.NDArray[np.bool_], max_side: int = PREVIEW_SIDE
) -> tuple[npt.NDArray[np.uint8], int]:
    """A mask crop reduced to at most ``max_side`` pixels per side by max-pooling.

    Returns ``(mask_u8, step)``: pixel ``(i, j)`` is 1 when any level-0 pixel of the block
    ``[i*step, (i+1)*step) x [j*step, (j+1)*step)`` is in the mask (thin objects stay
    visible).
    """
    h, w = mask.shape
    step = max(1, math.ceil(max(h, w) / max_side))
    if step == 1:
        return mask.astype(np.uint8), 1
    hp, wp = math.ceil(h / step) * step, math.ceil(w / step) * step
    padded = np.zeros((hp, wp), bool)
    padded[:h, :w] = mask
    pooled = padded.reshape(hp // step, step, wp // step, step).any(axis=(1, 3))
    return np.asarray(pooled, dtype=np.uint8), step


@dataclass(frozen=True)
class View:
    """A crop of the plane as the browser shows it.

    Attributes:
        box: level-0 ``(row0, col0, row1, col1)`` it covers (max exclusive); ``row0`` and
            ``col0`` are multiples of ``step``.
        step: level-0 pixels per view pixel.
        rgb: ``(h, w, 3)`` uint8, pixel ``(i, j)`` = level-0 ``(row0 + i*step, col0 + j*step)``.
    """

    box: tuple[int, int, int, int]
    step: int
    rgb: npt.NDArray[np.uint8]


def read_view(
    source: ImageSource,
    plane: Sequence[int],
    box: Sequence[float],
    size: Sequence[int],
) -> View:
    """The crop ``box`` (level-0, clipped to the image) subsampled to fit ``size`` ``(h, w)``.

    Reads the coarsest pyramid level whose pixels are still at least as fine as the step.
    """
    height, width = source.spatial_shape
    r0, c0, r1, c1 = (float(v) for v in box)
    vh, vw = (max(1, int(v)) for v in size)
    r0, c0 = max(0, math.floor(r0)), max(0, math.floor(c0))
    r1, c1 = min(height, math.ceil(r1)), min(width, math.ceil(c1))
    if r1 <= r0 or c1 <= c0:
        raise ValueError(f"the view box {tuple(box)} misses the image of {height} x {width}")
    step = max(1, math.ceil(max((r1 - r0) / vh, (c1 - c0) / vw)))
    r0, c0 = r0 // step * step, c0 // step * step
    level = source.level_for_step(step)
    fy, fx = source.level_factors(level)
    rgb = source.read_rgb(r0, c0, r1, c1, plane=plane, level=level)
    rgb = rgb[:: int(step // fy), :: int(step // fx)]
    rows, cols = math.ceil((r1 - r0) / step), math.ceil((c1 - c0) / step)
    rgb = np.ascontiguousarray(rgb[:rows, :cols])
    return View((r0, c0, r1, c1), step, rgb)
