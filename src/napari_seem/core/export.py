"""Writing results: a labels array in zarr with its class table, and an overlay picture."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["overlay_rgb", "write_labels_zarr", "write_overlay_png"]


def write_labels_zarr(
    path: str | Path,
    labels: npt.NDArray[np.integer[Any]],
    class_table: Sequence[Mapping[str, Any]],
    *,
    attrs: Mapping[str, Any] | None = None,
    chunks: int = 512,
    overwrite: bool = False,
) -> Path:
    """Write ``(H, W)`` labels as a uint32 zarr array with the class table in its attributes.

    Args:
        labels: ``(H, W)`` integer labels, 0 = background.
        class_table: one row per label id (``id``, ``class_name``, ``score``, ``area``,
            ``bbox``...), stored under the attribute ``"napari_seem"["classes"]``.
        attrs: more JSON-serialisable metadata stored under ``"napari_seem"``.
        chunks: square chunk size in pixels.
        overwrite: replace an existing store; otherwise an existing path is an error.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    import zarr

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another output or pass overwrite=True")
    arr = zarr.open_array(
        str(path),
        mode="w",
        shape=labels.shape,
        chunks=(min(chunks, labels.shape[0]), min(chunks, labels.shape[1])),
        dtype="uint32",
        fill_value=0,
    )
    arr[...] = labels.astype(np.uint32)
    meta = dict(attrs or {})
    meta["classes"] = json.loads(json.dumps(list(class_table)))
    arr.attrs["napari_seem"] = meta
    return path


def overlay_rgb(
    image: npt.ArrayLike, labels: npt.NDArray[np.integer[Any]], *, alpha: float = 0.45
) -> npt.NDArray[np.uint8]:
    """``(H, W, 3)`` uint8: the image in grey/colour with labels tinted and outlined."""
    from skimage.color import label2rgb
    from skimage.segmentation import find_boundaries

    from napari_seem.core.images import as_rgb_uint8

    rgb = as_rgb_uint8(image)
    tinted = label2rgb(labels, image=rgb, alpha=alpha, bg_label=0, image_alpha=1.0, kind="overlay")
    out = np.clip(tinted * 255 if tinted.max() <= 1.0 else tinted, 0, 255).astype(np.uint8)
    out[find_boundaries(labels, mode="inner")] = (255, 255, 0)
    return out


def write_overlay_png(
    path: str | Path, image: npt.ArrayLike, labels: npt.NDArray[np.integer[Any]]
) -> Path:
    """Save :func:`overlay_rgb` as a PNG."""
    import imageio.v3 as iio

    path = Path(path)
    iio.imwrite(path, overlay_rgb(image, labels))
    return path
