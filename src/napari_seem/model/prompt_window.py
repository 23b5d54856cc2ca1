"""Local decoding windows for visual prompts (``SeemConfig.prompt_window``).

A model trained on fixed-size crops (seem-lite: 256 model pixels) never saw two lookalike
objects farther apart than a crop; decoded against a whole slide, a click on one nucleus can
light up every nucleus. Decoding each prompt against a window of the encoded features around
it, the size the model was trained on, gives it the context it learned and makes the cost
of a click independent of the image size. Outside the window the mask logits are
``OUTSIDE_LOGIT`` (background).

Windows are in the padded model frame, aligned to 32 pixels so every feature level (strides
4, 8, 16, 32) is cut at whole cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from napari_seem.model.seem import ImageFeatures

__all__ = [
    "OUTSIDE_LOGIT",
    "Window",
    "crop_features",
    "nearest_window",
    "prompt_window",
    "tile_windows",
]

#: Mask logit given to every cell outside a prompt's window.
OUTSIDE_LOGIT = -20.0
_ALIGN = 32


@dataclass(frozen=True)
class Window:
    """``[top, bottom) x [left, right)`` in padded model pixels (multiples of 32)."""

    top: int
    left: int
    bottom: int
    right: int

    def cells(self, stride: int) -> tuple[slice, slice]:
        """The window's rows and columns on a feature map of ``stride``."""
        return (
            slice(self.top // stride, self.bottom // stride),
            slice(self.left // stride, self.right // stride),
        )


def _span(lo: int, hi: int, size: int, limit: int) -> tuple[int, int]:
    """An aligned ``[start, start + side)`` of at least ``size`` covering ``[lo, hi)``."""
    side = max(size, -(-(hi - lo + size // 2) // _ALIGN) * _ALIGN)
    if side >= limit:
        return 0, limit
    centre = (lo + hi) / 2
    start = round((centre - side / 2) / _ALIGN) * _ALIGN
    start = min(max(start, 0), limit - side)
    return start, start + side


def prompt_window(
    prompt: npt.NDArray[np.bool_], padded_hw: tuple[int, int], size: int
) -> Window | None:
    """The window of one prompt.

    Args:
        prompt: ``(H_pad, W_pad)`` bool, every pixel the prompt touches (positive and
            negative marks, and the previous answer when there is memory), padded frame.
        padded_hw: the padded model frame.
        size: the trained window side (model pixels, a multiple of 32).

    Returns:
        None when the window would be the whole frame (decode globally) or the prompt is
        empty; otherwise at least ``size`` per side, grown (aligned) to hold the prompt with
        a margin of ``size / 4`` on each side.
    """
    rows = np.flatnonzero(prompt.any(1))
    cols = np.flatnonzero(prompt.any(0))
    if not len(rows):
        return None
    h, w = padded_hw
    top, bottom = _span(int(rows[0]), int(rows[-1]) + 1, size, h)
    left, right = _span(int(cols[0]), int(cols[-1]) + 1, size, w)
    if (top, left, bottom, right) == (0, 0, h, w):
        return None
    return Window(top, left, bottom, right)


def crop_features(features: ImageFeatures, window: Window) -> ImageFeatures:
    """The encoded features inside ``window`` (maps at strides 4 and 32, 16, 8)."""
    ms = features.multi_scale_features
    strides = (32, 16, 8)

    def cut(t: torch.Tensor, stride: int) -> torch.Tensor:
        r, c = window.cells(stride)
        return t[..., r, c]

    return ImageFeatures(
        cut(features.mask_features, 4),
        (cut(ms[0], strides[0]), cut(ms[1], strides[1]), cut(ms[2], strides[2])),
        (window.bottom - window.top, window.right - window.left),
    )


def tile_windows(padded_hw: tuple[int, int], size: int) -> list[Window]:
    """Windows of side ``size`` (clipped to the frame) at a stride of ``size / 2`` that cover
    the padded frame; the last row / column of windows ends at the frame's edge."""
    h, w = padded_hw

    def starts(n: int) -> list[int]:
        if n <= size:
            return [0]
        out = list(range(0, n - size + 1, size // 2))
        if out[-1] != n - size:
            out.append(n - size)
        return out

    return [Window(r, c, min(r + size, h), min(c + size, w)) for r in starts(h) for c in starts(w)]


def nearest_window(windows: list[Window], row: float, col: float) -> int:
    """Index of the window whose centre is nearest (Chebyshev) to model pixel ``(row, col)``:
    the window in which that pixel has the most context."""
    centres = np.array([((w.top + w.bottom) / 2, (w.left + w.right) / 2) for w in windows])
    return int(np.argmin(np.abs(centres - [row, col]).max(1)))


def owner_cells(windows: list[Window], cells_hw: tuple[int, int], stride: int = 4) -> np.ndarray:
    """``(h, w)`` int: for every cell of a stride-``stride`` map, its :func:`nearest_window`."""
    h, w = cells_hw
    rows = (np.arange(h) + 0.5) * stride
    cols = (np.arange(w) + 0.5) * stride
    best = np.full((h, w), np.inf)
    owner = np.zeros((h, w), np.int64)
    for k, win in enumerate(windows):
        dr = np.abs(rows - (win.top + win.bottom) / 2)[:, None]
        dc = np.abs(cols - (win.left + win.right) / 2)[None, :]
        dist = np.maximum(dr, dc)
        closer = dist < best
        best[closer] = dist[closer]
        owner[closer] = k
    return owner
