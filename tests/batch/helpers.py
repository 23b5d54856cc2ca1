"""Shared helpers of the batch tests: lazily built images and a threshold segmenter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

CELL = 64  # one disc per CELL x CELL lattice cell
RADIUS = (8, 24)


def _discs(seed: int, ci: int, cj: int) -> tuple[float, float, float]:
    """The disc of lattice cell ``(ci, cj)``: centre (row, col) and radius, seeded."""
    rng = np.random.default_rng([seed, ci, cj])
    r = ci * CELL + CELL / 2 + rng.uniform(-24, 24)
    c = cj * CELL + CELL / 2 + rng.uniform(-24, 24)
    return r, c, rng.uniform(*RADIUS)


def render_window(
    seed: int, r0: int, c0: int, r1: int, c1: int, *, with_ids: bool = False
) -> npt.NDArray[Any]:
    """``(r1-r0, c1-c0)`` uint8 image of bright discs on a dark noisy background (or, with
    ``with_ids``, int64 disc ids ``ci * 100000 + cj + 1``), identical wherever it is cut."""
    ids = np.zeros((r1 - r0, c1 - c0), np.int64)
    for ci in range(max(0, (r0 - 60) // CELL), (r1 + 60) // CELL + 1):
        for cj in range(max(0, (c0 - 60) // CELL), (c1 + 60) // CELL + 1):
            r, c, rad = _discs(seed, ci, cj)
            # paint the disc only in its bounding box, clipped to the window
            top, left = max(int(r - rad) - 1, r0), max(int(c - rad) - 1, c0)
            bottom, right = min(int(r + rad) + 2, r1), min(int(c + rad) + 2, c1)
            if bottom <= top or right <= left:
                continue
            rows = np.arange(top, bottom)[:, None]
            cols = np.arange(left, right)[None, :]
            inside = (rows - r) ** 2 + (cols - c) ** 2 <= rad**2
            view = ids[top - r0 : bottom - r0, left - c0 : right - c0]
            view[inside] = ci * 100000 + cj + 1
    if with_ids:
        return ids
    noise = np.random.default_rng([seed, r0, c0, 7]).integers(0, 40, ids.shape)
    return np.where(ids > 0, 200, 20 + noise).astype(np.uint8)


def lazy_zarr(path: Path, size: int | tuple[int, int], *, chunk: int = 1024, seed: int = 0) -> Path:
    """A uint8 zarr image filled chunk by chunk (never held whole in memory)."""
    import zarr

    h, w = (size, size) if isinstance(size, int) else size
    array = zarr.create_array(
        store=str(path), shape=(h, w), chunks=(chunk, chunk), dtype="uint8", fill_value=0
    )
    for r in range(0, h, chunk):
        for c in range(0, w, chunk):
            r1, c1 = min(r + chunk, h), min(c + chunk, w)
            array[r:r1, c:c1] = render_window(seed, r, c, r1, c1)
    return path


class ThresholdPredictor:
    """A deterministic non-neural segmenter with the predictor calls the runner uses:
    objects are the connected components of pixels above ``threshold``. It lets the tests
    know the true objects, which a random-weight model cannot."""

    def __init__(self, threshold: int = 128) -> None:
        self.threshold = threshold
        self.image: npt.NDArray[np.uint8] | None = None
        self.model = self  # the runner reads predictor.model.name for the signature
        self.name = "threshold"
        self.short_side = None
        self.calls = 0

    def set_image(self, rgb: npt.NDArray[np.uint8]) -> None:
        self.image = np.asarray(rgb)
        self.calls += 1

    def set_encoded(self, encoded: Any) -> None:
        self.image = np.asarray(encoded)
        self.calls += 1

    def segment_everything(self, vocabulary: Any, **kwargs: Any) -> Any:
        from scipy import ndimage

        from napari_seem.core.results import ObjectMask, SegmentationResult

        assert self.image is not None
        fg = self.image[..., 0] > self.threshold
        labels, _ = ndimage.label(fg)
        objects = []
        for i, found in enumerate(ndimage.find_objects(labels), start=1):
            if found is None:
                continue
            crop = labels[found] == i
            objects.append(
                ObjectMask(
                    crop,
                    (found[0].start, found[1].start),
                    score=0.9,
                    class_name=next(iter(vocabulary)),
                    source="panoptic",
                )
            )
        return SegmentationResult(fg.shape, tuple(objects))
