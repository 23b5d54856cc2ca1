"""Choosing the encoding scale per prompt: the object's size is found, not assumed.

A model trained on crops (seem-lite) answers well only when the object spans a certain range
of model pixels (measured for the shipped weights on synthetic nuclei of training seeds:
1-click IoU 0.85-0.91 from ~44 to ~176 model pixels across, 0.26 at 22, 0.83 at 264 where
it no longer fits the 256-pixel window). An image encoded at one fixed scale therefore fails
on small and on large objects. Here the scale is chosen per object:

1. **Size prior.** Before decoding, the object's diameter is estimated in level-0 pixels:
   a scale-space blob estimate at the first positive click, every round (so one object
   keeps one view; :attr:`ScaleSettings.from_previous` sizes later rounds by the previous
   answer instead) (:func:`blob_diameter`: the scale of the strongest
   scale-normalised Laplacian-of-Gaussian response at that point; a disc of radius ``r``
   answers most strongly at ``sigma = r / sqrt(2)``).
2. **View.** If the estimate puts the object inside the model's comfortable band at the
   current encoding's scale, the current encoding answers. Otherwise a *view* is encoded:
   a crop of the image around the prompts, resized so the object spans
   :attr:`ScaleSettings.target_in` or ``target_out`` model pixels (:func:`view_box`,
   :func:`view_scale`). Large objects get a zoomed-out view of the whole neighbourhood
   (never cut by the window); small ones a zoomed-in crop.
3. **Check.** The answer's own size is checked against the band (and whether it reaches
   the edge of what was decoded); one more view is decoded when it is far off
   (:func:`needs_second_pass`).

Everything here is numpy on level-0 ``(row, col)`` pixels; the predictor does the encoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

__all__ = [
    "BLOB_CALIBRATION",
    "ScaleSettings",
    "blob_diameter",
    "equivalent_diameter",
    "grey_pyramid",
    "needs_second_pass",
    "quantize_scale",
    "view_box",
    "view_scale",
]

Box = tuple[int, int, int, int]
BoolMask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class ScaleSettings:
    """Object sizes in model pixels (the encoded frame) that the model answers well.

    Chosen on synthetic scenes and BBBC007 *training* images (1-click IoU): zooming in to
    80 pixels lost context on BBBC007's small nuclei, so small objects are brought to
    ``target_in`` and large ones to ``target_out``.

    Attributes:
        target_in: the diameter a zoom-in view makes a small object (model pixels).
        target_out: the diameter a zoom-out view makes a large object (model pixels).
        low, high: keep the current encoding while the object's estimated diameter is
            within ``[low, high]`` model pixels there.
        smallest, largest: clamp of the level-0 diameter estimate (pixels); None: the
            image's short side.
        max_upscale: a view enlarges the image at most this much (level 0 -> model).
        window: side of the view in model pixels (the trained crop).
        from_previous: size later rounds by the previous answer (else every round by the
            blob estimate at the first positive click, so one object keeps one view).
    """

    target_in: float = 48.0
    target_out: float = 140.0
    low: float = 32.0
    high: float = 260.0
    smallest: float = 4.0
    largest: float | None = None
    max_upscale: float = 12.0
    window: int = 256
    from_previous: bool = False


def equivalent_diameter(mask: BoolMask) -> float:
    """Diameter of the disc with the area of ``mask`` (pixels)."""
    return 2.0 * math.sqrt(float(mask.sum()) / math.pi)


def _local_patch(grey: npt.NDArray[np.floating], row: int, col: int, half: int) -> np.ndarray:
    """The ``(2 half + 1)`` square around ``(row, col)``, edge pixels repeated outside."""
    h, w = grey.shape
    rows = np.clip(np.arange(row - half, row + half + 1), 0, h - 1)
    cols = np.clip(np.arange(col - half, col + half + 1), 0, w - 1)
    return np.asarray(grey[np.ix_(rows, cols)], np.float32)


def grey_pyramid(grey: npt.NDArray[np.floating], levels: int = 12) -> list[np.ndarray]:
    """``grey`` ``(H, W)`` and its 2x block means (level ``k`` is ``2**k`` times smaller),
    down to a few pixels: what :func:`blob_diameter` reads (compute once per image)."""
    out = [np.asarray(grey, np.float32)]
    while len(out) < levels and min(out[-1].shape) >= 8:
        a = out[-1]
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        out.append(a[:h, :w].reshape(h // 2, 2, w // 2, 2).mean((1, 3)))
    return out


#: ``blob_diameter`` reads ``2 sqrt(2) sigma`` of the strongest response; on nuclei,
#: cells and tissue of training seeds that is ~0.8 of the equivalent diameter (median):
#: the estimate is divided by it.
BLOB_CALIBRATION = 0.8


def blob_diameter(
    pyramid: list[np.ndarray],
    row: float,
    col: float,
    *,
    smallest: float = 4.0,
    largest: float | None = None,
    per_octave: int = 4,
) -> float:
    """Scale-space estimate of the diameter (level-0 pixels) of the blob at ``(row, col)``.

    For each ``sigma`` on a geometric ladder the scale-normalised Laplacian of Gaussian
    ``sigma^2 * LoG`` is evaluated at the point on a ``+-4 sigma`` patch of the pyramid
    level where ``sigma`` is 2-4 samples (every ``sigma`` costs the same); the strongest
    response of the point's polarity (bright object on dark: negative) gives
    ``d = 2 sqrt(2) sigma / BLOB_CALIBRATION``.

    Args:
        pyramid: :func:`grey_pyramid` of the ``(H, W)`` image intensity.
        row, col: the click, level-0 pixels.
        smallest, largest: diameters searched (``largest`` None: the short side).
    """
    h, w = pyramid[0].shape
    largest = float(largest or min(h, w))
    lo_sigma = max(smallest / (2 * math.sqrt(2)), 0.7)
    hi_sigma = max(largest / (2 * math.sqrt(2)), lo_sigma)
    n = max(math.ceil(math.log2(hi_sigma / lo_sigma) * per_octave) + 1, 1)
    sigmas = lo_sigma * 2.0 ** (np.arange(n) / per_octave)
    responses = np.zeros(n)
    for k, sigma in enumerate(sigmas):
        level = min(max(math.floor(math.log2(sigma / 2)), 0), len(pyramid) - 1)
        step = 2**level
        s = sigma / step
        half = math.ceil(4 * s)
        patch = _local_patch(pyramid[level], int(row // step), int(col // step), half)
        lap = ndimage.gaussian_laplace(patch, s, mode="nearest")
        responses[k] = float(lap[half, half]) * s * s
    strongest = int(np.argmax(np.abs(responses)))
    sign = np.sign(responses[strongest]) or -1.0
    best = int(np.argmax(responses * sign))
    return float(2 * math.sqrt(2) * sigmas[best] / BLOB_CALIBRATION)


def view_scale(diameter: float, current: float, settings: ScaleSettings) -> float | None:
    """The level-0 -> model scale to decode an object of ``diameter`` (level-0 pixels) at,
    or None when the encoding at scale ``current`` already suits it."""
    model_d = diameter * current
    if settings.low <= model_d <= settings.high:
        return None
    target = settings.target_in if model_d < settings.low else settings.target_out
    return quantize_scale(min(target / max(diameter, 1e-6), settings.max_upscale))


def quantize_scale(scale: float) -> float:
    """``scale`` rounded to a quarter octave (so nearby estimates share one view)."""
    return float(2.0 ** (round(math.log2(scale) * 4) / 4))


def view_box(
    centre: tuple[float, float],
    extent: Box | None,
    scale: float,
    image_hw: tuple[int, int],
    window: int,
) -> Box:
    """The level-0 box ``(r0, c0, r1, c1)`` of a view at ``scale``.

    At least ``window`` model pixels per side (the trained context), centred on ``centre``
    and grown to hold ``extent`` (the prompts and the previous answer) with a quarter of a
    window to spare; inside the image where the image is larger than that, else reaching
    beyond it on both sides (the view pads the image: a large object keeps background
    around it). Corners are snapped to an eighth of the side so clicks on one object share
    a view.
    """
    h, w = image_hw
    side = window / scale

    def span(lo_need: float, hi_need: float, mid: float, limit: int) -> tuple[int, int]:
        need = max(side, (hi_need - lo_need) + side / 2)
        size = math.ceil(need)
        snap = max(int(side // 8), 1)
        start = round((mid - size / 2) / snap) * snap
        if size <= limit:
            start = min(max(start, 0), limit - size)
        else:
            start = max(min(start, 0), limit - size)
        return start, start + size

    r, c = centre
    if extent is None:
        extent = (int(r), int(c), int(r) + 1, int(c) + 1)
    r0, c0, r1, c1 = extent
    top, bottom = span(r0, r1, (r0 + r1) / 2, h)
    left, right = span(c0, c1, (c0 + c1) / 2, w)
    return top, left, bottom, right


def needs_second_pass(
    answer: BoolMask,
    decoded: BoolMask,
    image_edge: BoolMask,
    scale: float,
    settings: ScaleSettings,
) -> float | None:
    """A better level-0 diameter for the object, or None when the answer is fine.

    Only answers that were cut by the edge of what was decoded, or that are larger than
    ``high``, ask for another view: a too-small answer is as often a model miss as a
    small object (zooming in on those lost 1-click IoU on BBBC007 training images).

    Args:
        answer: ``(h, w)`` bool answer in a level-0 crop.
        decoded: ``(h, w)`` bool, where the model decoded (its window) in that crop.
        image_edge: ``(h, w)`` bool, the crop's pixels on the image border (an object may
            touch those).
        scale: the level-0 -> model scale the answer was decoded at.
    """
    if not answer.any():
        return None
    inner_edge = decoded & ~ndimage.binary_erosion(decoded, border_value=0) & ~image_edge
    diameter = equivalent_diameter(answer)
    if (answer & inner_edge).any():
        rows, cols = np.nonzero(answer)
        span = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
        return float(2.0 * max(span, diameter))  # cut by the window: at least twice as big
    return diameter if diameter * scale > settings.high else None
