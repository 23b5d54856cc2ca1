"""Hand-written OME-Zarr images for the tests (NGFF 0.4 ``.zattrs`` or 0.5 ``zarr.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import zarr

__all__ = ["write_ome_zarr"]


def write_ome_zarr(
    path: Path,
    level0: np.ndarray,
    axes: list[dict],
    version: str,
    *,
    levels: int = 3,
    chunk: int = 16,
    pixel_size: float = 1.0,
) -> None:
    """Write an OME-Zarr image: ``levels`` levels, level ``k`` a ``2**k`` decimation in space.

    Args:
        path: the image folder to create (``*.ome.zarr``).
        level0: the full-resolution array, one axis per entry of ``axes``.
        axes: NGFF axes (``{"name", "type"[, "unit"]}``); ``"space"`` axes are decimated.
        version: ``"0.4"`` (zarr v2, ``.zattrs``) or ``"0.5"`` (zarr v3, ``zarr.json``).
        levels: how many levels.
        chunk: chunk side (smaller for an axis shorter than it).
        pixel_size: the level-0 scale of the space axes (level ``k``: ``pixel_size * 2**k``).
    """
    fmt = 2 if version == "0.4" else 3
    spatial = [i for i, ax in enumerate(axes) if ax["type"] == "space"]
    datasets = []
    for k in range(levels):
        step = 2**k
        index = tuple(
            slice(None, None, step) if i in spatial else slice(None) for i in range(level0.ndim)
        )
        data = level0[index]
        arr = zarr.create_array(
            store=str(path / str(k)),
            shape=data.shape,
            chunks=tuple(min(n, chunk) for n in data.shape),
            dtype=data.dtype,
            zarr_format=fmt,
        )
        arr[...] = data
        scale = [pixel_size * step if i in spatial else 1.0 for i in range(level0.ndim)]
        datasets.append(
            {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    multiscales = [{"version": version, "name": "img", "axes": axes, "datasets": datasets}]
    if version == "0.4":
        (path / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
        (path / ".zattrs").write_text(json.dumps({"multiscales": multiscales}))
    else:
        group = {
            "zarr_format": 3,
            "node_type": "group",
            "attributes": {"ome": {"version": "0.5", "multiscales": multiscales}},
        }
        (path / "zarr.json").write_text(json.dumps(group))
