"""napari layers of georeferenced rasters, and labels saved back to GeoTIFF / GeoPackage.

Reading (``get_reader`` hands GeoTIFF / COG / ``.vrt`` paths here): one lazy image layer per
band (dask over :class:`~napari_seem.core.geo_raster.GeoBandsArray`, overviews as multiscale
levels), named by the band descriptions. The layer's world frame is the map: ``scale`` is
the pixel size and ``translate`` the centre of pixel ``(0, 0)``, with world axes
``(-northing, easting)`` in the CRS's units (napari's rows grow downwards, so north is up on
screen). Rotated or sheared transforms go into ``affine`` instead. ``metadata["geo"]`` is the
:class:`~napari_seem.core.geo_meta.GeoInfo` as a dict, ``metadata["crs"]`` its name;
``metadata["napari_seem"]["path"]`` lets the model process read the file itself. A
single-band unsigned-integer GeoTIFF that napari-seem wrote (its ``napari_seem`` tag) opens
as a labels layer.

Writing: a labels layer with ``metadata["geo"]`` saves as a georeferenced COG (``.tif``) or
as polygons (``.gpkg`` / ``.geojson``) in its CRS, with its class table (``features``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["geo_layer_frame", "geo_of_layer", "read_geotiff", "write_geo_labels"]

LayerData = tuple[Any, dict[str, Any], str]


def geo_layer_frame(geo: Any) -> dict[str, Any]:
    """Layer kwargs placing pixels on the map: ``scale`` / ``translate`` (north-up rasters),
    else a 3 x 3 ``affine`` (rows, cols) -> (-y, x)."""
    a, b, c, d, e, f = geo.transform
    if b == 0 and d == 0 and a > 0 and e < 0:
        return {"scale": (-e, a), "translate": (-(f + e / 2), c + a / 2)}
    # world (-y, x) of pixel centre (row, col): -y = -(d*(col+.5) + e*(row+.5) + f)
    matrix = [
        [-e, -d, -(f + (d + e) / 2)],
        [b, a, c + (a + b) / 2],
        [0.0, 0.0, 1.0],
    ]
    return {"affine": matrix}


def read_geotiff(path: str | list[str]) -> list[LayerData]:
    """Layers of a GeoTIFF / COG / VRT (or of several, one after the other)."""
    paths = path if isinstance(path, list) else [path]
    layers: list[LayerData] = []
    for p in paths:
        layers.extend(_read_one(str(p)))
    return layers


def _read_one(path: str) -> list[LayerData]:
    import dask.array as da

    from napari_seem.core.geo_meta import geo_of
    from napari_seem.core.io import open_image

    source = open_image(path)
    geo = geo_of(source)
    assert geo is not None
    name = Path(path).stem
    levels = [
        da.from_array(lev.array, chunks=_chunks(lev.array), asarray=True) for lev in source.levels
    ]
    data: Any = levels if len(levels) > 1 else levels[0]
    frame = geo_layer_frame(geo)
    base = {"geo": geo.to_dict(), "crs": geo.crs_name or geo.crs}
    if _is_labels(path, source):
        labels = [lev[..., 0] for lev in levels]
        meta = {
            "name": name,
            "multiscale": len(labels) > 1,
            "metadata": {**base, "napari_seem": {"path": path}},
            **frame,
        }
        return [(labels if len(labels) > 1 else labels[0], meta, "labels")]
    count = source.num_channels
    meta = {
        "name": [f"{name} [{d}]" for d in geo.descriptions] if count > 1 else name,
        "multiscale": len(levels) > 1,
        "channel_axis": 2,
        "metadata": [{**base, "napari_seem": {"path": path, "channel": i}} for i in range(count)],
        **frame,
    }
    return [(data, meta, "image")]


def _chunks(array: Any) -> tuple[int, int, int]:
    """Dask chunks aligned with the file's blocks (at least 256 pixels a side), all bands."""
    rows, cols, _ = array.chunks
    return (max(256, rows), max(256, cols), array.shape[2])


def _is_labels(path: str, source: Any) -> bool:
    """A single-band integer GeoTIFF written by napari-seem (its ``napari_seem`` tag)."""
    if source.num_channels != 1 or source.dtype.kind not in "u":
        return False
    import rasterio

    with rasterio.open(path) as ds:
        return "napari_seem" in ds.tags()


def geo_of_layer(meta: Mapping[str, Any]) -> Any:
    """The :class:`GeoInfo` in a layer's ``metadata`` (``meta`` as npe2 passes it), or None."""
    from napari_seem.core.geo_meta import GeoInfo

    metadata = meta.get("metadata") or {}
    found = metadata.get("geo") if isinstance(metadata, Mapping) else None
    return GeoInfo.from_dict(dict(found)) if isinstance(found, Mapping) else None


def write_geo_labels(path: str, labels: Any, meta: Mapping[str, Any], table: list[Any]) -> str:
    """Save ``(H, W)`` labels with the layer's georeferencing: ``.tif`` COG or polygons.

    Raises:
        ValueError: the layer carries no georeferencing (``metadata["geo"]``), or its shape
            does not fit it.
    """
    from napari_seem.core.geo_write import (
        iter_object_polygons,
        write_features,
        write_labels_geotiff,
    )

    geo = geo_of_layer(meta)
    if geo is None:
        raise ValueError(
            f"{path}: this labels layer has no georeferencing (metadata['geo']); segment an "
            "image opened from a GeoTIFF with napari-seem, or save as .zarr / plain .tif"
        )
    height, width = (int(n) for n in labels.shape[-2:])
    if (height, width) != (geo.height, geo.width):
        geo = geo.at_level(geo.height / height, geo.width / width, height, width)
    if Path(path).suffix.lower() in (".tif", ".tiff"):
        return str(write_labels_geotiff(path, labels, geo))
    rows = [
        {"id": r.get("index", r.get("id")), "class_name": r.get("class_name"), **r}
        for r in table
        if r.get("index", r.get("id")) is not None
    ]
    features = sorted(iter_object_polygons(labels, geo, rows), key=lambda f: f.id)
    return str(write_features(path, features, geo))
