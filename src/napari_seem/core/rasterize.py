"""Draw visual prompts into binary masks in a target frame (pure numpy).

SEEM's visual sampler takes every visual prompt as a positive and a negative binary mask
in the (padded) model frame. This module draws them, following the conventions of the
official code and of the reference fixtures:

- a click is a 3x3 blob centred on its rounded pixel (the official 3x3 dilation), whatever
  the scale;
- a scribble is its polyline stamped with a square brush of ``round(width * scale)``
  pixels, at least 1; each segment runs between the rounded vertices, one pixel per step
  along its major axis, the minor axis rounded with numpy's ``rint`` relative to the
  segment start (this reproduces the strokes of the reference fixtures exactly);
- a box is its filled rectangle (``box_mode="fill"``) or, as the official SEEM code has no
  box encoder, a click at its centre (``box_mode="center"``); the caller chooses;
- a polygon is filled (even-odd rule on pixel centres) and its outline drawn, so thin
  polygons never vanish;
- a mask is resized nearest-neighbour; one too small to survive that is splatted pixel by
  pixel instead, so a prompt never disappears silently;
- anything outside the frame is clipped; negative prompts go to the ``neg`` mask (a pixel
  may be set in both: SEEM samples the two masks independently).

Positions round half up (``floor(x + 0.5)``), so drawing into a tile at an integer offset
gives exactly the crop of drawing into the whole image (tiled == untiled).

The frame. A frame is an ``(h, w)`` pixel grid whose pixel ``(i, j)`` is centred on level-0
``((i + 0.5) / sy - 0.5 + r0, (j + 0.5) / sx - 0.5 + c0)``; level-0 coordinates map to
frame coordinates by ``to_frame``::

    frame = (level0 - offset + 0.5) * scale - 0.5

i.e. the frame is the level-0 region that starts at pixel ``offset`` ``(r0, c0)`` (a tile
or crop; its top-left pixel edge is the frame's), resized by ``scale`` ``(sy, sx)`` frame
pixels per level-0 pixel (a resized model frame). With ``scale == 1`` this is plain
``level0 - offset``; the half-pixel terms align pixel centres the way image resizers do
(``F.interpolate(..., align_corners=False)``, skimage), so prompts land on the pixels of
the resized image.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from napari_seem.core.prompts import (
    Box,
    MaskPrompt,
    ObjectPrompt,
    Points,
    Polygon,
    Scribble,
    VisualPrompt,
)

__all__ = [
    "CLICK_SIZE",
    "BoxMode",
    "from_frame",
    "rasterize_object",
    "rasterize_objects",
    "rasterize_prompts",
    "to_frame",
]

BoolMask = npt.NDArray[np.bool_]
BoxMode = Literal["fill", "center"]

# Side of the square blob a click becomes, in frame pixels (official 3x3 dilation kernel).
CLICK_SIZE = 3
# Tolerance when deciding whether a pixel centre lies on a box or polygon edge, so that
# float round-off in the frame mapping does not drop a row of pixels.
_EPS = 1e-9
# Bound on the rows x edges matrix of the polygon scanline fill (memory, not speed).
_SCANLINE_CELLS = 1 << 20


def _pair(value: Any, *, what: str, positive: bool) -> tuple[float, float]:
    """``value`` (a number or a pair) as two finite floats (> 0 when ``positive``)."""
    items = (value, value) if np.ndim(value) == 0 else tuple(value)
    if len(items) != 2:
        raise ValueError(f"{what} must be a number or a (row, col) pair; got {value!r}")
    pair = (float(items[0]), float(items[1]))
    if not all(math.isfinite(v) and (v > 0 or not positive) for v in pair):
        condition = "positive and finite" if positive else "finite"
        raise ValueError(f"{what} must be {condition}; got {value!r}")
    return pair


def _out_shape(value: Any) -> tuple[int, int]:
    items = tuple(value)
    if len(items) != 2 or not all(isinstance(v, int | np.integer) and v > 0 for v in items):
        raise ValueError(f"out_shape must be two positive integers (h, w); got {value!r}")
    return int(items[0]), int(items[1])


def to_frame(
    coords: npt.ArrayLike,
    *,
    scale: float | tuple[float, float] = 1.0,
    offset: tuple[float, float] = (0.0, 0.0),
) -> npt.NDArray[np.float64]:
    """Map level-0 ``(row, col)`` coordinates ``(N, 2)`` into a frame (module docstring).

    Returns:
        ``(N, 2)`` float64 frame ``(row, col)``, pixel centres at integers.
    """
    sy, sx = _pair(scale, what="scale", positive=True)
    r0, c0 = _pair(offset, what="offset", positive=False)
    points = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    return (points - (r0, c0) + 0.5) * (sy, sx) - 0.5


def from_frame(
    coords: npt.ArrayLike,
    *,
    scale: float | tuple[float, float] = 1.0,
    offset: tuple[float, float] = (0.0, 0.0),
) -> npt.NDArray[np.float64]:
    """Inverse of ``to_frame``: frame ``(row, col)`` ``(N, 2)`` -> level-0 ``(N, 2)`` float64."""
    sy, sx = _pair(scale, what="scale", positive=True)
    r0, c0 = _pair(offset, what="offset", positive=False)
    points = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    return (points + 0.5) / (sy, sx) - 0.5 + (r0, c0)


# --------------------------------------------------------------------------- drawing


def _sliding_any(canvas: BoolMask, size: int, axis: int) -> BoolMask:
    """``out[i] = any(canvas[i : i + size])`` along ``axis`` (length shrinks by size - 1)."""
    if size == 1:
        return canvas
    sums = np.cumsum(canvas, axis=axis, dtype=np.int32)
    zero_shape = list(sums.shape)
    zero_shape[axis] = 1
    sums = np.concatenate([np.zeros(zero_shape, np.int32), sums], axis=axis)
    upper = np.take(sums, np.arange(size, sums.shape[axis]), axis=axis)
    lower = np.take(sums, np.arange(0, sums.shape[axis] - size), axis=axis)
    return np.asarray(upper - lower > 0)


def _paint_rectangles(
    out: BoolMask, low: npt.NDArray[np.int64], high: npt.NDArray[np.int64]
) -> None:
    """Set the union of inclusive rectangles ``low[i] .. high[i]`` (frame ``(row, col)``),
    clipped to ``out``, with a 2-D difference array: O(rectangles + pixels) time and memory."""
    height, width = out.shape
    r0 = np.clip(low[:, 0], 0, height)
    c0 = np.clip(low[:, 1], 0, width)
    r1 = np.clip(high[:, 0] + 1, 0, height)
    c1 = np.clip(high[:, 1] + 1, 0, width)
    keep = (r1 > r0) & (c1 > c0)
    r0, c0, r1, c1 = r0[keep], c0[keep], r1[keep], c1[keep]
    diff = np.zeros((height + 1, width + 1), dtype=np.int64)
    np.add.at(diff, (r0, c0), 1)
    np.add.at(diff, (r0, c1), -1)
    np.add.at(diff, (r1, c0), -1)
    np.add.at(diff, (r1, c1), 1)
    out |= diff.cumsum(axis=0).cumsum(axis=1)[:height, :width] > 0


def _stamp(out: BoolMask, centres: npt.NDArray[np.int64], size: tuple[int, int]) -> None:
    """Set a ``size`` rectangle around each integer frame ``(row, col)`` centre, clipped.

    A side of ``k`` pixels spans ``centre - k // 2 .. centre + (k - 1) // 2``: centred for
    odd ``k``, one pixel further up/left for even ``k``.
    """
    if len(centres) == 0:
        return
    height, width = out.shape
    before = np.array([size[0] // 2, size[1] // 2])
    after = np.array([size[0] - 1 - before[0], size[1] - 1 - before[1]])
    low, high = centres - before, centres + after  # inclusive rectangle corners
    touches = (high[:, 0] >= 0) & (low[:, 0] < height) & (high[:, 1] >= 0) & (low[:, 1] < width)
    if not touches.any():
        return
    low, high, centres = low[touches], high[touches], centres[touches]
    if size[0] > height or size[1] > width:
        # a brush wider than the frame: paint the clipped rectangles through a difference
        # array (memory of the frame, whatever the brush width) instead of a padded canvas
        _paint_rectangles(out, low, high)
        return
    r0, c0 = max(0, int(low[:, 0].min())), max(0, int(low[:, 1].min()))
    r1, c1 = min(height, int(high[:, 0].max()) + 1), min(width, int(high[:, 1].max()) + 1)
    # Centres on a canvas that reaches `after` beyond the window's top/left and `before`
    # beyond its bottom/right, so brushes centred just outside the window still count.
    canvas = np.zeros((r1 - r0 + size[0] - 1, c1 - c0 + size[1] - 1), dtype=bool)
    local = centres - (r0 - after[0], c0 - after[1])
    inside = (local >= 0).all(axis=1) & (local < canvas.shape).all(axis=1)
    canvas[local[inside, 0], local[inside, 1]] = True
    out[r0:r1, c0:c1] |= _sliding_any(_sliding_any(canvas, size[0], 0), size[1], 1)


def _round(values: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Round half up: unlike ``rint`` it commutes with integer shifts (tiles)."""
    return np.floor(np.asarray(values, dtype=np.float64) + 0.5).astype(np.int64)


def _polyline(vertices: npt.NDArray[np.float64], *, closed: bool = False) -> npt.NDArray[np.int64]:
    """Integer pixels ``(M, 2)`` of the polyline through frame ``vertices`` ``(N, 2)``.

    Each segment joins two rounded vertices in ``max(|drow|, |dcol|)`` unit steps along
    its major axis (so the line is 8-connected), rounding the minor axis offset from the
    segment start with ``rint``.
    """
    points = _round(vertices)
    if closed:
        points = np.concatenate([points, points[:1]])
    pieces = [points[:1]]
    for start, end in pairwise(points):
        delta = end - start
        t = np.linspace(0.0, 1.0, int(np.abs(delta).max()) + 1)[:, None]
        pieces.append(start + np.rint(delta * t).astype(np.int64))
    return np.concatenate(pieces)


def _set_pixels(out: BoolMask, pixels: npt.NDArray[np.int64]) -> None:
    inside = (pixels >= 0).all(axis=1) & (pixels < out.shape).all(axis=1)
    out[pixels[inside, 0], pixels[inside, 1]] = True


def _fill_polygon(out: BoolMask, vertices: npt.NDArray[np.float64]) -> None:
    """Set pixels whose centre lies inside the polygon (even-odd rule), clipped."""
    height, width = out.shape
    rows, cols = vertices[:, 0], vertices[:, 1]
    next_rows, next_cols = np.roll(rows, -1), np.roll(cols, -1)
    first = max(0, math.ceil(float(rows.min()) - _EPS))
    last = min(height - 1, math.floor(float(rows.max()) + _EPS))
    n_edges = len(vertices)
    chunk = max(1, _SCANLINE_CELLS // n_edges)
    for start in range(first, last + 1, chunk):
        ys = np.arange(start, min(last + 1, start + chunk), dtype=np.float64)[:, None]
        # Half-open in y: a vertex shared by two edges is crossed once, a horizontal
        # edge never (the outline drawn by the caller covers boundary pixels).
        crosses = ((rows <= ys) & (ys < next_rows)) | ((next_rows <= ys) & (ys < rows))
        with np.errstate(divide="ignore", invalid="ignore"):
            xs = cols + (ys - rows) * (next_cols - cols) / (next_rows - rows)  # (R, E)
        xs = np.sort(np.where(crosses, xs, np.inf), axis=1)
        n_pairs = n_edges // 2
        valid = 2 * np.arange(n_pairs) + 1 < crosses.sum(axis=1, keepdims=True)  # (R, P)
        lefts = np.where(valid, xs[:, 0 : 2 * n_pairs : 2], 0.0)
        rights = np.where(valid, xs[:, 1 : 2 * n_pairs : 2], -1.0)
        lo = np.clip(np.ceil(lefts - _EPS), 0, width).astype(np.int64)
        hi = np.clip(np.floor(rights + _EPS), -1, width - 1).astype(np.int64)
        valid &= lo <= hi
        row_index = np.broadcast_to(np.arange(len(ys))[:, None], valid.shape)
        runs = np.zeros((len(ys), width + 1), dtype=np.int32)  # +1 at run start, -1 after end
        np.add.at(runs, (row_index[valid], lo[valid]), 1)
        np.add.at(runs, (row_index[valid], hi[valid] + 1), -1)
        out[start : start + len(ys)] |= np.cumsum(runs[:, :width], axis=1) > 0


def _fill_box(out: BoolMask, corners: npt.NDArray[np.float64]) -> None:
    """Set pixels whose centre lies in the frame box ``corners`` ``[[r0, c0], [r1, c1]]``."""
    bounds = []
    for axis in range(2):
        lo = math.ceil(float(corners[0, axis]) - _EPS)
        hi = math.floor(float(corners[1, axis]) + _EPS)
        if lo > hi:  # thinner than a pixel in this frame: keep the pixel at its centre
            lo = hi = int(_round(corners[:, axis].mean()))
        bounds.append((max(lo, 0), min(hi + 1, out.shape[axis])))
    (r0, r1), (c0, c1) = bounds
    if r0 < r1 and c0 < c1:
        out[r0:r1, c0:c1] = True


def _draw_mask(
    out: BoolMask, prompt: MaskPrompt, scale: tuple[float, float], offset: tuple[float, float]
) -> None:
    """Nearest-neighbour resample ``prompt.mask`` into the frame; splat it if that is empty."""
    height, width = out.shape
    (sy, sx), (r0, c0) = scale, offset
    mask_rows, mask_cols = prompt.mask.shape
    # The level-0 pixel nearest to frame pixel i's centre, in mask coordinates.
    src_rows = np.floor((np.arange(height) + 0.5) / sy + r0).astype(np.int64) - prompt.offset[0]
    src_cols = np.floor((np.arange(width) + 0.5) / sx + c0).astype(np.int64) - prompt.offset[1]
    rows = np.flatnonzero((src_rows >= 0) & (src_rows < mask_rows))
    cols = np.flatnonzero((src_cols >= 0) & (src_cols < mask_cols))
    if rows.size and cols.size:
        sampled = prompt.mask[np.ix_(src_rows[rows], src_cols[cols])]
        if sampled.any():
            out[np.ix_(rows, cols)] |= sampled
            return
    # Nothing sampled: the mask is smaller than a frame pixel somewhere, or outside.
    edges = np.array(
        [
            [prompt.offset[0] - 0.5, prompt.offset[1] - 0.5],
            [prompt.offset[0] + mask_rows - 0.5, prompt.offset[1] + mask_cols - 0.5],
        ]
    )
    frame_edges = to_frame(edges, scale=scale, offset=offset)
    if (frame_edges[1] < -0.5).any() or (frame_edges[0] > (height - 0.5, width - 0.5)).any():
        return
    level0 = np.argwhere(prompt.mask) + prompt.offset
    _set_pixels(out, _round(to_frame(level0, scale=scale, offset=offset)))


def rasterize_prompts(
    prompts: Iterable[VisualPrompt],
    out_shape: tuple[int, int],
    *,
    scale: float | tuple[float, float] = 1.0,
    offset: tuple[float, float] = (0.0, 0.0),
    box_mode: BoxMode = "fill",
) -> tuple[BoolMask, BoolMask]:
    """Draw visual prompts (level-0 coordinates) into positive and negative frame masks.

    Args:
        prompts: visual prompts of one object (or of a ``ReferringExample``).
        out_shape: frame ``(h, w)``.
        scale: frame pixels per level-0 pixel, a number or ``(sy, sx)``.
        offset: level-0 ``(row, col)`` of the frame origin (see ``to_frame``).
        box_mode: ``"fill"`` draws a box as its rectangle, ``"center"`` as a click at its
            centre (the official SEEM rule).

    Returns:
        ``(pos, neg)``: two ``(h, w)`` bool masks in the frame.
    """
    shape = _out_shape(out_shape)
    frame_scale = _pair(scale, what="scale", positive=True)
    frame_offset = _pair(offset, what="offset", positive=False)
    if box_mode not in ("fill", "center"):
        raise ValueError(f"box_mode must be 'fill' or 'center'; got {box_mode!r}")

    def frame(coords: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return to_frame(coords, scale=frame_scale, offset=frame_offset)

    pos, neg = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
    click = (CLICK_SIZE, CLICK_SIZE)
    for prompt in prompts:
        if isinstance(prompt, Points):
            centres = _round(frame(prompt.coords))
            _stamp(pos, centres[prompt.positive], click)
            _stamp(neg, centres[~prompt.positive], click)
        elif isinstance(prompt, Box):
            if box_mode == "center":
                _stamp(pos, _round(frame(prompt.center)), click)
            else:
                _fill_box(pos, frame([prompt.bounds()[:2], prompt.bounds()[2:]]))
        elif isinstance(prompt, Scribble):
            brush = [max(1, int(_round(prompt.width * s))) for s in frame_scale]
            line = _polyline(frame(prompt.vertices))
            _stamp(pos if prompt.positive else neg, line, (brush[0], brush[1]))
        elif isinstance(prompt, Polygon):
            target = pos if prompt.positive else neg
            vertices = frame(prompt.vertices)
            _fill_polygon(target, vertices)
            _set_pixels(target, _polyline(vertices, closed=True))
        elif isinstance(prompt, MaskPrompt):
            _draw_mask(pos if prompt.positive else neg, prompt, frame_scale, frame_offset)
        else:
            raise TypeError(f"not a visual prompt: {type(prompt).__name__}")
    return pos, neg


def rasterize_object(
    obj: ObjectPrompt,
    out_shape: tuple[int, int],
    *,
    scale: float | tuple[float, float] = 1.0,
    offset: tuple[float, float] = (0.0, 0.0),
    box_mode: BoxMode = "fill",
) -> tuple[BoolMask, BoolMask]:
    """``(pos, neg)`` ``(h, w)`` bool frame masks of one object's visual prompts.

    Arguments as in ``rasterize_prompts``; an object with only text gives two empty masks.
    """
    return rasterize_prompts(obj.visual, out_shape, scale=scale, offset=offset, box_mode=box_mode)


def rasterize_objects(
    objects: Sequence[ObjectPrompt],
    out_shape: tuple[int, int],
    *,
    scale: float | tuple[float, float] = 1.0,
    offset: tuple[float, float] = (0.0, 0.0),
    box_mode: BoxMode = "fill",
) -> tuple[BoolMask, BoolMask]:
    """``(pos, neg)``, each ``(P, h, w)`` bool: ``rasterize_object`` of every object, stacked.

    This is the ``[n_prompts, H, W]`` layout of SEEM's visual sampler (before padding).
    """
    shape = _out_shape(out_shape)
    pos = np.zeros((len(objects), *shape), dtype=bool)
    neg = np.zeros((len(objects), *shape), dtype=bool)
    for i, obj in enumerate(objects):
        pos[i], neg[i] = rasterize_object(obj, shape, scale=scale, offset=offset, box_mode=box_mode)
    return pos, neg
