"""Exact instance maps: tidy, relabel, measure.

Every map here is ``(H, W)`` int32 in pixel (row, col) coordinates, 0 = background and
``1..N`` one id per object. The generators paint objects first and then call :func:`tidy`, which
guarantees the invariants the training code relies on: every id is one 4-connected component,
ids are consecutive, and no id is left without pixels.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

__all__ = [
    "boundary_mask",
    "equivalent_diameters",
    "relabel_consecutive",
    "tidy",
    "touching_pairs",
]

_FOUR = ndimage.generate_binary_structure(2, 1)


def relabel_consecutive(
    labels: np.ndarray, classes: Mapping[int, str]
) -> tuple[np.ndarray, dict[int, str]]:
    """Renumber the ids present in ``labels`` as ``1..N`` in increasing order of the old id.

    Args:
        labels: ``(H, W)`` integer instance map, 0 = background.
        classes: old id -> class name (ids absent from ``labels`` are dropped).

    Returns:
        ``(H, W)`` int32 map with ids ``1..N`` and the new id -> class name mapping.
    """
    present = np.unique(labels)
    present = present[present > 0]
    lut = np.zeros(int(labels.max(initial=0)) + 1, np.int32)
    lut[present] = np.arange(1, len(present) + 1, dtype=np.int32)
    out = lut[labels]
    new_classes = {int(lut[old]): classes[int(old)] for old in present}
    return out.astype(np.int32, copy=False), new_classes


def _components(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4-connected components of equal, non-zero value.

    Returns ``comp`` (H, W) int32 component ids (0 = background), ``owner[k]`` the label value of
    component ``k`` and ``size[k]`` its pixel count (index 0 is background).
    """
    from skimage.measure import label as cc_label

    comp = cc_label(labels, background=0, connectivity=1).astype(np.int32)
    n = int(comp.max(initial=0))
    owner = np.zeros(n + 1, np.int64)
    owner[comp.ravel()] = labels.ravel()
    owner[0] = 0
    size = np.bincount(comp.ravel(), minlength=n + 1)
    return comp, owner, size


def _main_components(owner: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Boolean per component: is it the largest component of its label value?"""
    order = np.lexsort((size, owner))  # by owner, then by size ascending
    last = np.ones(len(order), bool)
    last[:-1] = owner[order[:-1]] != owner[order[1:]]
    keep = np.zeros(len(owner), bool)
    keep[order[last]] = True
    keep[0] = False
    return keep


def tidy(
    labels: np.ndarray,
    classes: Mapping[int, str],
    *,
    min_size: int = 1,
    split: bool = False,
) -> tuple[np.ndarray, dict[int, str]]:
    """Make a painted map exact: one connected component per id, consecutive ids.

    Args:
        labels: ``(H, W)`` integer map as painted (an id may be in several pieces).
        classes: painted id -> class name.
        min_size: pieces smaller than this many pixels are not kept as objects of their own.
        split: ``True``: every connected piece becomes its own object of the same class (land
            cover: a field cut by a road is two fields). ``False``: an id keeps its largest piece;
            other pieces join the object they touch most closely (an occluded sliver of a nucleus
            belongs to the nucleus on top), or become background when they touch nothing.
            Small pieces (under ``min_size``) join the nearest object in both modes.

    Returns:
        ``(H, W)`` int32 map with ids ``1..N`` and id -> class name.
    """
    labels = np.asarray(labels).astype(np.int64)
    classes = dict(classes)
    for _ in range(4):
        comp, owner, size = _components(labels)
        if split:
            keep = size >= min_size
            keep[0] = False
        else:
            keep = _main_components(owner, size) & (size >= min_size)
        stray = ~keep[comp] & (comp > 0)
        if not stray.any():
            break
        # give stray pieces to the nearest kept object; a stray piece far from any object
        # (no kept pixel within 2 px) becomes background.
        kept_mask = keep[comp]
        if not kept_mask.any():
            labels[:] = 0
            break
        dist, (ir, ic) = ndimage.distance_transform_edt(~kept_mask, return_indices=True)
        nearest = labels[ir, ic]
        new = labels.copy()
        close = stray & (dist <= 1.5)
        new[close] = nearest[close]
        new[stray & ~close] = 0
        if split:
            # a big stray piece that touches nothing stays an object of its own
            pieces = stray & ~close & (size[comp] >= min_size)
            new[pieces] = labels[pieces]
        labels = new
    comp, owner, size = _components(labels)
    if split:
        out_classes = {int(k): classes[int(owner[k])] for k in range(1, len(owner))}
        return relabel_consecutive(comp, out_classes)
    keep = _main_components(owner, size)
    labels = np.where(keep[comp], labels, 0)
    return relabel_consecutive(labels, classes)


def boundary_mask(labels: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: pixels whose id differs from one of their 4 neighbours (inner borders of
    every object, both sides of a shared border)."""
    lab = np.asarray(labels)
    edge = np.zeros(lab.shape, bool)
    dv = lab[1:, :] != lab[:-1, :]
    dh = lab[:, 1:] != lab[:, :-1]
    edge[1:, :] |= dv
    edge[:-1, :] |= dv
    edge[:, 1:] |= dh
    edge[:, :-1] |= dh
    return edge & (lab > 0)


def touching_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    """Pairs ``(a, b)``, ``a < b``, of distinct non-zero ids that are 4-neighbours somewhere."""
    lab = np.asarray(labels)
    pairs: set[tuple[int, int]] = set()
    for a, b in ((lab[1:, :], lab[:-1, :]), (lab[:, 1:], lab[:, :-1])):
        m = (a != b) & (a > 0) & (b > 0)
        lo = np.minimum(a[m], b[m]).astype(np.int64)
        hi = np.maximum(a[m], b[m]).astype(np.int64)
        pairs |= {(int(x), int(y)) for x, y in set(zip(lo.tolist(), hi.tolist(), strict=True))}
    return pairs


def equivalent_diameters(labels: np.ndarray) -> np.ndarray:
    """``(N + 1,)`` float64: ``2 sqrt(area / pi)`` per id in pixels (index 0 = background)."""
    area = np.bincount(np.asarray(labels).ravel().astype(np.int64))
    return np.asarray(2.0 * np.sqrt(area / np.pi))
