"""Reading and writing OME-Zarr (NGFF 0.4) images and labels, lazily (no Qt, no napari).

Layout written by :func:`write_ome_labels`::

    out.zarr/                    group, attrs {"labels": ["<name>"]}
      labels/<name>/             multiscales group, attrs "multiscales" + "image-label"
        0/                       (..., H, W) uint32 array, chunked

and by :func:`write_ome_image` (the staging format of in-memory layers for the model
process)::

    out.zarr/                    multiscales group with explicit axes
      0/                         the level-0 array

Both use zarr format 2 with NGFF 0.4 attributes, which every OME-Zarr reader accepts.
Writes go chunk by chunk (a dask array is stored window by window), so a huge array is
never loaded whole.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "axes_for",
    "is_zarr_dir",
    "ngff_multiscales",
    "open_multiscale",
    "write_ome_image",
    "write_ome_labels",
]

NGFF_VERSION = "0.4"
_MARKERS = (".zarray", ".zgroup", ".zattrs", "zarr.json")


def is_zarr_dir(path: str | Path) -> bool:
    """Whether ``path`` is a zarr v2 / v3 store directory."""
    p = Path(path)
    return p.is_dir() and any((p / m).exists() for m in _MARKERS)


def axes_for(ndim: int, *, rgb: bool = False) -> str:
    """Axis letters of a napari image layer's data: ``yx``, ``zyx``, ``tzyx`` (+ ``c`` if RGB)."""
    spatial = ndim - (1 if rgb else 0)
    lead = {2: "", 3: "z", 4: "tz"}.get(spatial)
    if lead is None:
        raise ValueError(
            f"a {spatial}-D image is not supported: napari-seem segments 2-D planes of 2-D, "
            "3-D (z) and 4-D (t, z) images"
        )
    return lead + "yx" + ("c" if rgb else "")


def ngff_multiscales(
    axes: str, n_levels: int = 1, *, name: str = "image", factor: float = 2.0
) -> list[dict[str, Any]]:
    """NGFF 0.4 ``multiscales`` metadata for ``axes`` (levels downsampled by ``factor`` in yx)."""
    kinds = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
    datasets = []
    for level in range(n_levels):
        scale = [factor**level if a in "yx" else 1.0 for a in axes]
        datasets.append(
            {"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    return [
        {
            "version": NGFF_VERSION,
            "name": name,
            "axes": [{"name": a, "type": kinds[a]} for a in axes],
            "datasets": datasets,
        }
    ]


def _store(array: Any, target: Any) -> None:
    """Copy ``array`` (numpy, zarr or dask) into the zarr array ``target`` chunk-wise."""
    if hasattr(array, "compute") and hasattr(array, "chunks"):
        import dask.array as da

        da.store(array, target, lock=False)
        return
    chunks = target.chunks
    shape = target.shape
    grid = [range(0, n, c) for n, c in zip(shape, chunks, strict=True)]
    for start in np.ndindex(*[len(g) for g in grid]):
        index = tuple(
            slice(g[i], min(g[i] + c, n))
            for g, i, c, n in zip(grid, start, chunks, shape, strict=True)
        )
        target[index] = np.asarray(array[index])


def _chunks(shape: Sequence[int], axes: str, tile: int = 512) -> tuple[int, ...]:
    return tuple(min(tile, n) if a in "yx" else 1 for n, a in zip(shape, axes, strict=True))


def write_ome_image(path: str | Path, array: Any, axes: str, *, name: str = "image") -> Path:
    """Write ``array`` (level 0, in ``axes`` order) as an OME-Zarr image group."""
    import zarr

    path = Path(path)
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    target = group.create_array(
        "0",
        shape=tuple(int(n) for n in array.shape),
        chunks=_chunks(array.shape, axes),
        dtype=np.dtype(array.dtype),
        fill_value=0,
    )
    _store(array, target)
    group.attrs["multiscales"] = ngff_multiscales(axes, name=name)
    return path


def write_ome_labels(
    path: str | Path,
    labels: Any,
    *,
    name: str = "labels",
    axes: str | None = None,
    class_table: Sequence[Mapping[str, Any]] = (),
    overwrite: bool = False,
) -> Path:
    """Write ``(..., H, W)`` labels as OME-Zarr labels ``path/labels/<name>`` (uint32).

    Args:
        labels: numpy, zarr or dask labels of level 0 (0 = background).
        name: the label image's name inside ``labels/``.
        axes: axis letters (default ``yx`` / ``zyx`` / ``tzyx`` by ``ndim``).
        class_table: rows ``{"index", "class_name", "score", ...}`` stored under the label
            group's ``napari_seem.classes`` attribute (JSON-safe values).
        overwrite: replace an existing store.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    import zarr

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another name or remove it first")
    axes = axes or axes_for(len(labels.shape))
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.attrs["labels"] = [name]
    group = root.require_group("labels").require_group(name)
    target = group.create_array(
        "0",
        shape=tuple(int(n) for n in labels.shape),
        chunks=_chunks(labels.shape, axes),
        dtype=np.uint32,
        fill_value=0,
    )
    _store(labels.astype(np.uint32) if labels.dtype != np.uint32 else labels, target)
    group.attrs["multiscales"] = ngff_multiscales(axes, name=name)
    group.attrs["image-label"] = {"version": NGFF_VERSION, "source": {"image": "../../"}}
    group.attrs["napari_seem"] = {"classes": json.loads(json.dumps(list(class_table)))}
    return path


def open_multiscale(group: Any) -> tuple[list[Any], str | None, list[float] | None]:
    """The lazy dask levels, axes and level-0 scale of an OME-Zarr multiscales group.

    Returns:
        ``(levels, axes, scale)``: dask arrays from fine to coarse; axis letters (or
        ``None`` when the metadata does not name them); the level-0 ``scale`` transform
        (or ``None``).
    """
    import dask.array as da

    attrs = dict(group.attrs)
    ome = attrs.get("ome")
    multiscales = ome["multiscales"] if isinstance(ome, dict) else attrs["multiscales"]
    first = multiscales[0]
    levels = [da.from_zarr(group[ds["path"]]) for ds in first["datasets"]]
    scale = None
    for tr in first["datasets"][0].get("coordinateTransformations", []):
        if tr.get("type") == "scale":
            scale = [float(s) for s in tr["scale"]]
    names = []
    for ax in first.get("axes", []):
        names.append((ax.get("name", "") if isinstance(ax, dict) else str(ax)).lower())
    axes = "".join(names) if names and all(len(n) == 1 for n in names) else None
    return levels, axes, scale
