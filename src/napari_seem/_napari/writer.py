"""npe2 writers: a labels layer to OME-Zarr labels (``.zarr``) or TIFF (``.tif``).

The class table (the layer's ``features``: ``index``, ``class_name``, ``score``, ...) goes
with the labels: into the label group's ``napari_seem.classes`` attribute for OME-Zarr,
and into the TIFF's JSON description for TIFF. OME-Zarr is written chunk by chunk, so a
huge (zarr- or dask-backed) labels layer is never loaded whole.

A labels layer with georeferencing (``metadata["geo"]``, e.g. segmented over a GeoTIFF
opened by napari-seem) saves to ``.tif`` as a georeferenced COG, and to ``.gpkg`` /
``.geojson`` as one polygon per object in its CRS (:mod:`napari_seem._napari.geo_layers`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_seem._napari.ome_zarr import write_ome_labels

__all__ = ["class_table_of", "write_labels_polygons", "write_labels_tiff", "write_labels_zarr"]


def class_table_of(meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The JSON-safe rows of a layer's ``features`` (``meta`` as npe2 passes it)."""
    features = meta.get("features")
    if features is None:
        return []
    if hasattr(features, "to_dict"):
        rows = features.to_dict(orient="records")
    else:
        columns = {k: list(v) for k, v in dict(features).items()}
        n = len(next(iter(columns.values()), []))
        rows = [{k: v[i] for k, v in columns.items()} for i in range(n)]
    out = []
    for row in rows:
        clean: dict[str, Any] = {}
        for key, value in row.items():
            if isinstance(value, np.generic):
                value = value.item()
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            clean[str(key)] = value
        out.append(clean)
    return json.loads(json.dumps(out, default=str))


def _level0(data: Any, meta: Mapping[str, Any]) -> Any:
    return data[0] if meta.get("multiscale") and isinstance(data, list | tuple) else data


def write_labels_zarr(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 labels writer to OME-Zarr: ``path`` (``.zarr``) gets ``labels/<layer name>``."""
    labels = _level0(data, meta)
    name = str(meta.get("name") or "labels").replace("/", "_")
    out = write_ome_labels(path, labels, name=name, class_table=class_table_of(meta))
    return [str(out)]


def write_labels_tiff(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 labels writer to a (zlib-compressed) uint32 TIFF with the class table (a
    georeferenced COG when the layer carries ``metadata["geo"]``)."""
    import tifffile

    from napari_seem._napari.geo_layers import geo_of_layer, write_geo_labels

    if geo_of_layer(meta) is not None:
        return [write_geo_labels(path, _level0(data, meta), meta, class_table_of(meta))]
    labels = np.asarray(_level0(data, meta)).astype(np.uint32)
    description = {"napari_seem": {"classes": class_table_of(meta)}}
    tifffile.imwrite(
        Path(path),
        labels,
        compression="zlib",
        description=json.dumps(description),
        metadata=None,
    )
    return [str(path)]


def write_labels_polygons(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 labels writer to GeoPackage / GeoJSON polygons (georeferenced layers only)."""
    from napari_seem._napari.geo_layers import write_geo_labels

    return [write_geo_labels(path, _level0(data, meta), meta, class_table_of(meta))]
