"""Two classical scikit-image baselines, for contrast with SEEM on the same data.

- :class:`SeededWatershed` (interactive): a marker-controlled watershed on the image
  gradient. Positive clicks seed the object, negative clicks and the pixels on the far side
  of the Otsu threshold (eroded, so seeds stay off the edges) seed the background.
- :func:`otsu_watershed` ("everything"): Otsu foreground, split by a watershed of the
  distance transform from its local maxima; an object's score is its largest distance to
  the background (the ranking used for AP: big, compact objects first).

Both work on a grey version of the image (RGB and multi-band images are averaged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from napari_seem.train.prompts_sim import Click, stamp_click

__all__ = ["EverythingResult", "SeededWatershed", "otsu_watershed", "to_grey"]

BoolMask = npt.NDArray[np.bool_]


def to_grey(image: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``(H, W)`` or ``(H, W, C)`` -> ``(H, W)`` float64 in [0, 1] (min-max scaled)."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3:
        a = a.mean(axis=-1)
    if a.ndim != 2:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {a.shape}")
    a = np.nan_to_num(a, nan=float(np.nanmin(a)) if np.isfinite(a).any() else 0.0)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def _otsu(grey: npt.NDArray[np.float64]) -> float:
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(grey)) if grey.max() > grey.min() else float(grey.max())


class SeededWatershed:
    """Interactive baseline: call it with the clicks so far; it returns the object mask.

    Args:
        image: ``(H, W)`` or ``(H, W, C)``.
        sigma: Gaussian smoothing before the gradient, in pixels.
        background_erosion: pixels the Otsu background seeds are eroded by.
    """

    def __init__(
        self, image: npt.ArrayLike, *, sigma: float = 1.0, background_erosion: int = 2
    ) -> None:
        from skimage.filters import gaussian, sobel

        self.grey = to_grey(image)
        smooth = gaussian(self.grey, sigma=sigma)
        self.gradient = sobel(smooth)
        threshold = _otsu(smooth)
        bright = smooth > threshold
        self._seeds = {
            # object brighter than the threshold -> background seeds on the dark side, etc.
            True: ndimage.binary_erosion(~bright, iterations=background_erosion),
            False: ndimage.binary_erosion(bright, iterations=background_erosion),
        }
        self._bright = bright

    def __call__(self, clicks: Sequence[Click], previous: BoolMask | None = None) -> BoolMask:
        from skimage.segmentation import watershed

        positive = [c for c in clicks if c.positive]
        if not positive:
            return np.zeros(self.grey.shape, bool)
        object_is_bright = bool(self._bright[positive[0].row, positive[0].col])
        markers = np.where(self._seeds[object_is_bright], 2, 0).astype(np.int32)
        seeds = np.zeros(self.grey.shape, bool)
        for c in positive:
            stamp_click(seeds, c.row, c.col)
        markers[seeds] = 1
        for c in clicks:
            if not c.positive:
                blob = np.zeros(self.grey.shape, bool)
                stamp_click(blob, c.row, c.col)
                markers[blob] = 2
        region = watershed(self.gradient, markers) == 1
        # keep only the connected parts that hold a positive click
        parts, _ = ndimage.label(region)
        keep = {int(parts[c.row, c.col]) for c in positive} - {0}
        return np.isin(parts, list(keep)) if keep else region


@dataclass(frozen=True)
class EverythingResult:
    """Objects found by :func:`otsu_watershed`: ``masks`` ``(H, W)`` bool, one score each."""

    labels: npt.NDArray[np.int32]
    masks: list[BoolMask]
    scores: list[float]


def otsu_watershed(
    image: npt.ArrayLike,
    *,
    sigma: float = 1.0,
    min_distance: int = 5,
    min_area: int = 16,
    bright_objects: bool | None = None,
) -> EverythingResult:
    """Segment every object: Otsu foreground + distance-transform watershed.

    Args:
        image: ``(H, W)`` or ``(H, W, C)``.
        min_distance: smallest distance between two object centres, in pixels.
        min_area: objects smaller than this many pixels are dropped.
        bright_objects: foreground above (True) or below (False) the threshold; None: the
            side covering less of the image (objects rarely fill most of a field of view).
    """
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian
    from skimage.segmentation import watershed

    smooth = gaussian(to_grey(image), sigma=sigma)
    above = smooth > _otsu(smooth)
    if bright_objects is None:
        bright_objects = bool(above.mean() <= 0.5)
    foreground = above if bright_objects else ~above
    foreground = ndimage.binary_fill_holes(foreground)
    distance = ndimage.distance_transform_edt(foreground)
    components, _ = ndimage.label(foreground)
    peaks = peak_local_max(
        distance, min_distance=min_distance, labels=components, exclude_border=False
    )
    markers = np.zeros(distance.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-distance, markers, mask=foreground).astype(np.int32)
    masks: list[BoolMask] = []
    scores: list[float] = []
    out = np.zeros_like(labels)
    objects = ndimage.find_objects(labels)
    for index, where in enumerate(objects, start=1):
        if where is None:
            continue
        crop = labels[where] == index
        if crop.sum() < min_area:
            continue
        full = np.zeros(labels.shape, bool)
        full[where] = crop
        masks.append(full)
        scores.append(float(distance[where][crop].max()))
        out[full] = len(masks)
    return EverythingResult(out, masks, scores)
