"""npe2 reader: zarr arrays and OME-Zarr images (with their labels) as lazy napari layers.

Multiscale images open as a list of dask arrays (napari shows the level that fits the
screen); nothing is loaded until napari draws it. Image layers carry
``metadata["napari_seem"] = {"path": ..., "channel": ...}`` so the SEEM widget can let the
model process read the same store by path instead of sending pixels.

GeoTIFF / COG / ``.vrt`` files open through :mod:`napari_seem._napari.geo_layers` (the
``geo`` extra): placed on the map by their transform, with the CRS in the metadata. Without
the extra a GeoTIFF is left to napari's own TIFF reader, with a warning naming the
``pip install``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_seem._napari.ome_zarr import is_zarr_dir, open_multiscale

__all__ = ["get_reader", "read_zarr"]

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """The reader for ``path`` when it is a zarr / OME-Zarr directory or a GeoTIFF / COG /
    VRT, else ``None``."""
    geo = _geo_reader(path)
    if geo is not None:
        return geo
    if isinstance(path, list):
        if not path or not all(is_zarr_dir(p) for p in path):
            return None
    elif not is_zarr_dir(path):
        return None
    return read_zarr


def _geo_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """``read_geotiff`` for georeferenced rasters (None otherwise, or without the extra)."""
    import warnings

    from napari_seem.core.geo_meta import GEO_EXTRA_HINT, GeoExtraMissing, require_geo
    from napari_seem.core.geo_raster import geo_paths

    paths = path if isinstance(path, list) else [path]
    if not paths or not all(isinstance(p, str) and geo_paths(p) is not None for p in paths):
        return None
    try:
        require_geo()
    except GeoExtraMissing:
        warnings.warn(f"opened without its map: {GEO_EXTRA_HINT}", stacklevel=2)
        return None
    from napari_seem._napari.geo_layers import read_geotiff

    return read_geotiff


def read_zarr(path: str | list[str]) -> list[LayerData]:
    """Layers of one or more zarr / OME-Zarr directories."""
    paths = path if isinstance(path, list) else [path]
    layers: list[LayerData] = []
    for p in paths:
        layers.extend(_read_one(Path(p)))
    return layers


def _is_multiscales(attrs: dict[str, Any]) -> bool:
    ome = attrs.get("ome")
    return "multiscales" in attrs or (isinstance(ome, dict) and "multiscales" in ome)


def _read_one(path: Path) -> list[LayerData]:
    import dask.array as da
    import zarr

    node = zarr.open(str(path), mode="r")
    name = path.name.removesuffix(".zarr") or path.name
    if not isinstance(node, zarr.Group):  # a plain array
        attrs: dict[str, Any] = dict(node.attrs)
        data = da.from_zarr(node)
        meta = {"name": name, "metadata": {"napari_seem": {"path": str(path)}}}
        if "napari_seem" in attrs or (data.dtype.kind in "iu" and "label" in name.lower()):
            table = attrs.get("napari_seem", {}).get("classes", [])
            return [(data, {**meta, **_features(table)}, "labels")]
        return [(data, meta, "image")]
    layers: list[LayerData] = []
    attrs = dict(node.attrs)
    if _is_multiscales(attrs):
        if "image-label" in attrs:
            layers.append(_labels_layer(node, name))
        else:
            layers.extend(_image_layers(node, name, path))
    labels: list[str] = list(attrs.get("labels") or [])
    if labels and "labels" in node.group_keys():
        group: Any = node["labels"]
        for label_name in labels:
            if label_name in group:
                layers.append(_labels_layer(group[label_name], str(label_name)))
    if not layers:
        raise ValueError(
            f"{path}: a zarr group with neither OME-Zarr 'multiscales' nor 'labels': open "
            "an array inside it instead"
        )
    return layers


def _level_data(levels: list[Any]) -> tuple[Any, bool]:
    return (levels, True) if len(levels) > 1 else (levels[0], False)


def _image_layers(group: Any, name: str, path: Path) -> list[LayerData]:
    levels, axes, scale = open_multiscale(group)
    data, multiscale = _level_data(levels)
    meta: dict[str, Any] = {"name": name, "multiscale": multiscale}
    seem = {"path": str(path)}
    channel = axes.index("c") if axes and "c" in axes else None
    if scale is not None:
        meta["scale"] = [s for i, s in enumerate(scale) if i != channel]
    if channel is not None:
        count = int(levels[0].shape[channel])
        meta["channel_axis"] = channel
        meta["name"] = [f"{name} [{i}]" for i in range(count)]
        meta["metadata"] = [{"napari_seem": {**seem, "channel": i}} for i in range(count)]
    else:
        meta["metadata"] = {"napari_seem": seem}
    return [(data, meta, "image")]


def _labels_layer(group: Any, name: str) -> LayerData:
    levels, _, scale = open_multiscale(group)
    data, multiscale = _level_data(levels)
    table = dict(group.attrs).get("napari_seem", {}).get("classes", [])
    meta: dict[str, Any] = {"name": name, "multiscale": multiscale, **_features(table)}
    if scale is not None:
        meta["scale"] = scale
    return data, meta, "labels"


def _features(table: list[dict[str, Any]]) -> dict[str, Any]:
    """Layer kwargs holding a class table as napari ``features`` (one row per label id)."""
    if not table:
        return {}
    import pandas as pd

    return {"features": pd.DataFrame(table)}
