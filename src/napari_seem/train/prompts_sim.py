"""Simulated visual prompts for training and evaluation (pure numpy).

Every function works on boolean masks in one pixel frame (the padded model frame during
training, level-0 pixels during evaluation) and returns boolean prompt masks of the same
shape, drawn the way :mod:`napari_seem.core.rasterize` draws the user's prompts: a click is a
3 x 3 blob, a scribble a 3-pixel-wide stroke, a polygon its filled outline, a box its centre
click (SEEM has no box encoder; the predictor does the same), a mask prompt the mask itself
with a ragged border.

The official interactive protocol (SEEM_SPEC "Memory and rounds") is :func:`first_click`
(deepest interior point) and :func:`next_click` (the maximum of the distance transform of
the larger error region; a false negative gives a positive click, a false positive a
negative one).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import ndimage

__all__ = [
    "PROMPT_KINDS",
    "Click",
    "PromptKind",
    "first_click",
    "next_click",
    "simulate_prompt",
    "stamp_click",
]

PromptKind = Literal["click", "scribble", "polygon", "box", "mask"]
PROMPT_KINDS: tuple[PromptKind, ...] = ("click", "scribble", "polygon", "box", "mask")
BoolMask = npt.NDArray[np.bool_]
_CLICK = 1  # half size of the 3 x 3 click blob


class Click(NamedTuple):
    """One simulated click at pixel ``(row, col)``; ``positive`` False = a negative click."""

    row: int
    col: int
    positive: bool


def stamp_click(out: BoolMask, row: int, col: int) -> None:
    """Set the 3 x 3 blob around ``(row, col)`` in ``out`` (clipped at the border)."""
    h, w = out.shape
    out[
        max(row - _CLICK, 0) : min(row + _CLICK + 1, h),
        max(col - _CLICK, 0) : min(col + _CLICK + 1, w),
    ] = True


def _deepest(region: BoolMask) -> tuple[int, int, float]:
    """``(row, col, distance)`` of the pixel farthest from the region's border (first in
    raster order on ties); distance 0 for an empty region."""
    if not region.any():
        return 0, 0, 0.0
    dist = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    flat = int(np.argmax(dist))
    row, col = divmod(flat, region.shape[1])
    return row, col, float(dist[row, col])


def first_click(target: BoolMask) -> Click:
    """The protocol's first click: the deepest interior point of ``target`` ``(H, W)``."""
    if not target.any():
        raise ValueError("the target mask is empty: there is nothing to click on")
    row, col, _ = _deepest(target)
    return Click(row, col, True)


def next_click(prediction: BoolMask, target: BoolMask) -> Click | None:
    """The protocol's next click, or None when the prediction equals the target.

    The error regions are ``target & ~prediction`` (false negatives) and
    ``prediction & ~target`` (false positives); the click goes to the maximum of the
    distance transform of the region whose maximum is larger (positive for a false
    negative, negative for a false positive).
    """
    fn_row, fn_col, fn_dist = _deepest(target & ~prediction)
    fp_row, fp_col, fp_dist = _deepest(prediction & ~target)
    if fn_dist == 0 and fp_dist == 0:
        return None
    if fn_dist >= fp_dist:
        return Click(fn_row, fn_col, True)
    return Click(fp_row, fp_col, False)


def _random_interior(target: BoolMask, rng: np.random.Generator) -> tuple[int, int]:
    """A random pixel of ``target`` away from its border when possible."""
    inner = ndimage.binary_erosion(target, iterations=2)
    rows, cols = np.nonzero(inner if inner.any() else target)
    i = int(rng.integers(len(rows)))
    return int(rows[i]), int(cols[i])


def _draw_line(out: BoolMask, points: npt.NDArray[np.float64], width: int) -> None:
    h, w = out.shape
    for (r0, c0), (r1, c1) in pairwise(points):
        n = int(max(abs(r1 - r0), abs(c1 - c0))) + 1
        rr = np.rint(np.linspace(r0, r1, n)).astype(int)
        cc = np.rint(np.linspace(c0, c1, n)).astype(int)
        half = width // 2
        for dr in range(-half, width - half):
            for dc in range(-half, width - half):
                r, c = np.clip(rr + dr, 0, h - 1), np.clip(cc + dc, 0, w - 1)
                out[r, c] = True


def _scribble(target: BoolMask, rng: np.random.Generator) -> BoolMask:
    """A stroke through the object: a random walk between interior points, kept inside."""
    out = np.zeros_like(target)
    inner = ndimage.binary_erosion(target, iterations=1)
    region = inner if inner.sum() >= 9 else target
    rows, cols = np.nonzero(region)
    picks = rng.integers(len(rows), size=int(rng.integers(2, 5)))
    points = np.stack([rows[picks], cols[picks]], axis=1).astype(np.float64)
    _draw_line(out, points, width=3)
    out &= target
    if not out.any():
        stamp_click(out, *_random_interior(target, rng))
        out &= target | ~target.any()
    return out


def _polygon(target: BoolMask, rng: np.random.Generator) -> BoolMask:
    """A hand-drawn-like polygon: the object's outline, jittered and filled."""
    from skimage.draw import polygon as fill_polygon

    rows, cols = np.nonzero(target)
    cy, cx = rows.mean(), cols.mean()
    angles = np.arctan2(rows - cy, cols - cx)
    radii = np.hypot(rows - cy, cols - cx)
    n = int(rng.integers(6, 13))
    bins = np.linspace(-np.pi, np.pi, n + 1)
    verts = []
    for a0, a1 in pairwise(bins):
        sel = (angles >= a0) & (angles < a1)
        r = float(radii[sel].max()) if sel.any() else 0.0
        r *= rng.uniform(0.85, 1.1)
        a = (a0 + a1) / 2
        verts.append((cy + r * np.sin(a), cx + r * np.cos(a)))
    v = np.array(verts)
    out = np.zeros_like(target)
    rr, cc = fill_polygon(v[:, 0], v[:, 1], shape=target.shape)
    out[rr, cc] = True
    if not out.any():
        out |= target
    return out


def _box_centre(target: BoolMask) -> BoolMask:
    rows, cols = np.nonzero(target)
    out = np.zeros_like(target)
    r = round((int(rows.min()) + int(rows.max())) / 2)
    c = round((int(cols.min()) + int(cols.max())) / 2)
    stamp_click(out, r, c)
    return out


def _rough_mask(target: BoolMask, rng: np.random.Generator) -> BoolMask:
    """The mask with a ragged border: eroded or dilated by 0-2 pixels, with holes."""
    steps = int(rng.integers(-2, 3))
    if steps > 0:
        out = ndimage.binary_dilation(target, iterations=steps)
    elif steps < 0:
        out = ndimage.binary_erosion(target, iterations=-steps)
        if not out.any():
            out = target.copy()
    else:
        out = target.copy()
    holes = rng.random(target.shape) < 0.05
    out = out & ~holes
    return out if out.any() else target.copy()


def simulate_prompt(target: BoolMask, kind: PromptKind, rng: np.random.Generator) -> BoolMask:
    """A positive prompt mask of ``kind`` for the object ``target`` (``(H, W)`` bool).

    ``"click"`` is a random interior click (training); the protocol's deterministic first
    click is :func:`first_click`.
    """
    if not target.any():
        raise ValueError("the target mask is empty: there is nothing to prompt")
    if kind == "click":
        out = np.zeros_like(target)
        stamp_click(out, *_random_interior(target, rng))
        return out
    if kind == "scribble":
        return _scribble(target, rng)
    if kind == "polygon":
        return _polygon(target, rng)
    if kind == "box":
        return _box_centre(target)
    if kind == "mask":
        return _rough_mask(target, rng)
    raise ValueError(f"unknown prompt kind {kind!r}; choose from {PROMPT_KINDS}")
