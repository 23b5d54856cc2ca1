"""Click-constrained refinement of an interactive answer (numpy + scipy + scikit-image).

The model's answer to an object's prompts is a probability map. A small model (seem-lite)
does not act on negative clicks reliably: a negative click on a neighbour that the answer
merged with the object barely changes the map. The clicks themselves are hard facts, so the
answer is made to obey them after decoding:

1. **Support.** The candidate region is where the model says "object" (probability >= 0.5),
   plus every positive mark (a positive click is always inside the answer).
2. **Seeded split.** When negative clicks fall in or next to that region, the region is
   split by a marker-controlled watershed: positive marks seed the object, negative marks
   seed "not the object", and the flooding is steered by an elevation that is high where
   two touching objects meet: low model probability, a narrow neck of the region (the
   distance transform of the region has a saddle there), and image edges. The pixels
   flooded from the negative seeds leave the answer, so a negative click on a merged
   neighbour removes the whole neighbour (up to the neck between the two), not just the
   clicked pixels.
3. **Connected to the clicks.** Only the parts of the result that hold a positive mark are
   kept; holes inside them are filled unless a negative mark is in the hole (a coin or a
   nucleus with a textured centre is one object, not a ring); negative marks are cleared
   (a negative click is always outside the answer).

A positive click in a missed part of the object (outside the model's answer) is handled
before this step by the caller: it adds the model's own answer to that click alone to the
probability map (:func:`merge_click_answers`), so the support grows there.

All arrays are one level-0 crop: ``(h, w)`` in ``(row, col)`` pixels of the image, the same
crop for every argument.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

__all__ = ["RefineSettings", "merge_click_answers", "refine_answer"]

BoolMask = npt.NDArray[np.bool_]
FloatMap = npt.NDArray[np.float32]


@dataclass(frozen=True)
class RefineSettings:
    """Weights of the watershed elevation (each term is scaled to [0, 1]).

    Chosen on synthetic touching pairs and BBBC007 *training* images (never the held-out
    ones).

    Attributes:
        probability: weight of ``1 - p`` (the model's own doubt).
        neck: weight of ``1 - d / d_max``, ``d`` the distance to the region's border
            (high at the border and at narrow necks between touching objects).
        edges: weight of the image's gradient magnitude (Sobel of a slightly smoothed
            grey image); ignored without an image.
        reach: negative marks up to this many pixels outside the support still split it
            (a click just beside the answer means "not this side").
        reach_fraction: ... or up to this fraction of the answer's diameter, if more (0: off;
            0.25 lost NoC@85 on BBBC007 training images, whose labels merge touching nuclei).
        fill_holes: fill the answer's holes that hold no negative mark.
    """

    probability: float = 0.4
    neck: float = 0.4
    edges: float = 0.2
    reach: int = 2
    reach_fraction: float = 0.0
    fill_holes: bool = True


def merge_click_answers(prob: FloatMap, extra: list[FloatMap]) -> FloatMap:
    """The pixelwise maximum of the object's probability map and the model's answers to
    single positive clicks (each ``(h, w)`` float32 in [0, 1], same crop)."""
    out = prob.copy()
    for other in extra:
        np.maximum(out, other, out=out)
    return out


def _scaled(values: npt.NDArray[np.floating], where: BoolMask) -> FloatMap:
    """``values`` scaled to [0, 1] by its range inside ``where`` (zeros if flat)."""
    inside = values[where]
    if not inside.size:
        return np.zeros(values.shape, np.float32)
    lo, hi = float(inside.min()), float(inside.max())
    if hi <= lo:
        return np.zeros(values.shape, np.float32)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _elevation(
    prob: FloatMap, support: BoolMask, grey: FloatMap | None, settings: RefineSettings
) -> FloatMap:
    """The watershed's ``(h, w)`` float32 elevation over ``support`` (see the module)."""
    depth = ndimage.distance_transform_edt(np.pad(support, 1))[1:-1, 1:-1]
    elev = settings.probability * (1.0 - prob) + settings.neck * (1.0 - _scaled(depth, support))
    if grey is not None and settings.edges > 0:
        from skimage.filters import sobel

        grad = sobel(ndimage.gaussian_filter(grey.astype(np.float32), 1.0))
        elev = elev + settings.edges * _scaled(grad, support)
    return elev.astype(np.float32)


def _filled(mask: BoolMask, negative: BoolMask) -> BoolMask:
    """``mask`` with its holes filled, except holes that hold a negative mark; when that
    would more than double the answer (an answer that is a mesh of membranes encloses whole
    cells), only holes of at most a quarter of the answer's area are filled."""
    holes = ndimage.binary_fill_holes(mask) & ~mask
    if not holes.any():
        return mask
    parts, n = ndimage.label(holes)
    keep = np.ones(n + 1, bool)
    keep[0] = False
    keep[np.unique(parts[negative & holes])] = False
    area = np.bincount(parts.ravel(), minlength=n + 1)
    if area[keep].sum() > mask.sum():
        keep &= area <= 0.25 * mask.sum()
    return mask | keep[parts]


def _parts_with(mask: BoolMask, marks: BoolMask) -> BoolMask:
    """The connected parts of ``mask`` that hold a pixel of ``marks``."""
    parts, _ = ndimage.label(mask)
    keep = np.unique(parts[marks & mask])
    return np.isin(parts, keep[keep > 0])


def refine_answer(
    prob: FloatMap,
    positive: BoolMask,
    negative: BoolMask,
    *,
    grey: FloatMap | None = None,
    settings: RefineSettings | None = None,
) -> BoolMask:
    """The object's answer, made to obey its clicks (see the module docstring).

    Args:
        prob: ``(h, w)`` float32 object probability in [0, 1], level-0 crop.
        positive: ``(h, w)`` bool positive marks (click blobs, scribbles) in the crop.
        negative: ``(h, w)`` bool negative marks in the crop.
        grey: ``(h, w)`` float32 image intensity in [0, 1] (edges), or None.
        settings: elevation weights (default :class:`RefineSettings`).

    Returns:
        ``(h, w)`` bool: holds every positive mark, no negative mark, and only parts that
        are connected to a positive mark.
    """
    settings = settings or RefineSettings()
    if prob.shape != positive.shape or prob.shape != negative.shape:
        raise ValueError(
            f"prob {prob.shape}, positive {positive.shape} and negative {negative.shape} "
            "must be one crop"
        )
    positive = positive & ~negative  # a pixel marked both ways stays out
    support = prob >= 0.5
    if not positive.any():
        return np.zeros(prob.shape, bool)
    if settings.fill_holes:  # a click in a hole of the answer (a ring) is on the object
        support = _filled(support, negative)
    support = support | positive
    diameter = 2.0 * np.sqrt(float(support.sum()) / np.pi)
    reach = max(settings.reach, round(settings.reach_fraction * diameter))
    near = ndimage.binary_dilation(support, iterations=reach) if reach else support
    seeds_out = negative & near
    if not seeds_out.any():
        answer = _parts_with(support, positive)
        return _filled(answer, negative) if settings.fill_holes else answer
    from skimage.segmentation import watershed

    region = near  # a negative click beside the answer floods into it from the rim
    markers = np.zeros(prob.shape, np.int32)
    markers[seeds_out] = 2
    markers[positive] = 1
    elev = _elevation(prob, region, grey, settings)
    flooded = watershed(elev, markers, mask=region)
    answer = _parts_with(((flooded == 1) & support & ~negative) | positive, positive)
    return _filled(answer, negative) & ~negative if settings.fill_holes else answer
