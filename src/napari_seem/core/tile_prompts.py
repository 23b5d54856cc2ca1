"""Moving one object's prompts into a tile's window (pure numpy, no model).

A tile is decoded on its own image (its outer box), so the object's level-0 prompts are
re-expressed in that window's frame, origin at the window's top-left pixel:

- a prompt wholly inside the window is translated exactly (same kind, shifted
  coordinates), so a one-tile image gets exactly the prompts the whole-image predictor gets;
- clicks outside the window are dropped (a click is a point: it is in one place);
- a box partly inside is clipped to the window (its centre click and its bound then refer
  to the visible part); a mask prompt is cropped;
- a scribble or polygon partly inside is rasterised at level-0 resolution into the
  window and passed as a mask prompt of the same sign (the rasteriser clips it).

Windows are ``(r0, c0, r1, c1)`` level-0 boxes, max exclusive (``Tile.outer``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from napari_seem.core.prompts import Box, MaskPrompt, Points, Polygon, Scribble, VisualPrompt
from napari_seem.core.rasterize import rasterize_prompts
from napari_seem.core.results import ObjectMask

__all__ = [
    "crop_to_window",
    "object_in_window",
    "object_mask_in_window",
    "prompt_in_window",
    "shift_prompt",
]

Window = tuple[int, int, int, int]


def shift_prompt(prompt: VisualPrompt, dr: float, dc: float) -> VisualPrompt:
    """``prompt`` moved by ``(-dr, -dc)``: level-0 -> a frame whose origin is ``(dr, dc)``."""
    if isinstance(prompt, Points):
        return Points(prompt.coords - (dr, dc), prompt.positive)
    if isinstance(prompt, Box):
        return Box(
            prompt.row_min - dr, prompt.col_min - dc, prompt.row_max - dr, prompt.col_max - dc
        )
    if isinstance(prompt, Scribble):
        return Scribble(prompt.vertices - (dr, dc), width=prompt.width, positive=prompt.positive)
    if isinstance(prompt, Polygon):
        return Polygon(prompt.vertices - (dr, dc), positive=prompt.positive)
    if isinstance(prompt, MaskPrompt):
        offset = (prompt.offset[0] - int(dr), prompt.offset[1] - int(dc))
        return MaskPrompt(prompt.mask, offset, positive=prompt.positive)
    raise TypeError(f"not a visual prompt: {type(prompt).__name__}")


def _inside(prompt: VisualPrompt, shape: tuple[int, int]) -> bool:
    try:
        prompt.check_fits(shape)
    except ValueError:
        return False
    return True


def prompt_in_window(prompt: VisualPrompt, window: Window) -> list[VisualPrompt]:
    """The part of a level-0 ``prompt`` inside ``window``, in window coordinates.

    Returns an empty list when nothing of the prompt falls in the window; a scribble or
    polygon cut by the window may give a positive or negative :class:`MaskPrompt`.
    """
    r0, c0, r1, c1 = window
    shape = (r1 - r0, c1 - c0)
    local = shift_prompt(prompt, r0, c0)
    if _inside(local, shape):
        return [local]
    h, w = shape
    if isinstance(local, Points):
        rows, cols = local.coords[:, 0], local.coords[:, 1]
        keep = (rows >= -0.5) & (rows <= h - 0.5) & (cols >= -0.5) & (cols <= w - 0.5)
        return [Points(local.coords[keep], local.positive[keep])] if keep.any() else []
    if isinstance(local, Box):
        top, left = max(local.row_min, 0.0), max(local.col_min, 0.0)
        bottom, right = min(local.row_max, h - 1.0), min(local.col_max, w - 1.0)
        if bottom > top and right > left:
            return [Box(top, left, bottom, right)]
        if bottom >= top and right >= left:  # a one-pixel-thin sliver: paint it
            mask = np.zeros(shape, bool)
            mask[
                int(np.ceil(top)) : int(np.floor(bottom)) + 1,
                int(np.ceil(left)) : int(np.floor(right)) + 1,
            ] = True
            return [MaskPrompt.from_full(mask)] if mask.any() else []
        return []
    if isinstance(local, MaskPrompt):
        crop = crop_to_window(local.mask, local.offset, (0, 0, h, w))
        if crop is None:
            return []
        mask, offset = crop
        return [MaskPrompt(mask, offset, positive=local.positive)]
    pos, neg = rasterize_prompts([prompt], shape, offset=(float(r0), float(c0)))
    out: list[VisualPrompt] = []
    if pos.any():
        out.append(MaskPrompt.from_full(pos))
    if neg.any():
        out.append(MaskPrompt.from_full(neg, positive=False))
    return out


def object_in_window(visual: tuple[VisualPrompt, ...], window: Window) -> list[VisualPrompt]:
    """Every visual prompt of one object clipped into ``window`` (see the module docstring)."""
    return [part for prompt in visual for part in prompt_in_window(prompt, window)]


def crop_to_window(
    mask: npt.NDArray[np.bool_], offset: tuple[int, int], window: Window
) -> tuple[npt.NDArray[np.bool_], tuple[int, int]] | None:
    """The part of a ``(h, w)`` bool crop at level-0 ``offset`` inside ``window``.

    Returns:
        ``(crop, local_offset)`` tightened to its set pixels, the offset relative to the
        window's top-left; ``None`` when no set pixel falls inside.
    """
    r0, c0, r1, c1 = window
    top, left = max(offset[0], r0), max(offset[1], c0)
    bottom = min(offset[0] + mask.shape[0], r1)
    right = min(offset[1] + mask.shape[1], c1)
    if bottom <= top or right <= left:
        return None
    part = mask[top - offset[0] : bottom - offset[0], left - offset[1] : right - offset[1]]
    rows, cols = np.flatnonzero(part.any(axis=1)), np.flatnonzero(part.any(axis=0))
    if rows.size == 0:
        return None
    tight = part[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return tight, (top - r0 + int(rows[0]), left - c0 + int(cols[0]))


def object_mask_in_window(obj: ObjectMask, window: Window) -> ObjectMask | None:
    """A level-0 :class:`ObjectMask` re-expressed in ``window`` (``None`` if disjoint)."""
    crop = crop_to_window(obj.mask, obj.offset, window)
    if crop is None:
        return None
    return ObjectMask(crop[0], crop[1], score=obj.score, source=obj.source)
