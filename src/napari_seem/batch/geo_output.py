"""Georeferenced outputs of a finished batch run: labels GeoTIFF / COG, polygons.

A run on a georeferenced input (GeoTIFF / COG / a scene of band files) stores the input's
CRS and transform, on the labels' grid, in the labels array's ``napari_seem.geo``
attribute (:func:`napari_seem.batch.output.finish_output`). :func:`export_geo` turns that
array into the files a GIS opens, reading it block by block:

- ``.tif`` / ``.tiff``: the labels as a Cloud-Optimised GeoTIFF (uint32, 0 background);
- ``.gpkg`` / ``.geojson`` / ``.json``: one (multi)polygon per object with ``id``, ``class``,
  ``score``, ``area`` (squared map units) and ``pixels``, in the input's CRS; objects
  merged across tile seams are one feature (their one label id).

:func:`labels_store_for` names the resumable labels zarr that a run writes when the user
asks for one of these files as ``--out`` (``water.gpkg`` -> ``water.labels.zarr``).

Requires the ``geo`` extra (rasterio, pyproj, shapely).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napari_seem.batch.store import BatchConfigError
from napari_seem.core.geo_meta import GeoExtraMissing, GeoInfo, require_geo
from napari_seem.core.geo_write import VECTOR_SUFFIXES

__all__ = ["GEO_SUFFIXES", "export_geo", "is_geo_output", "labels_store_for"]

RASTER_SUFFIXES = (".tif", ".tiff")
GEO_SUFFIXES = (*RASTER_SUFFIXES, *VECTOR_SUFFIXES)


def is_geo_output(path: str | Path) -> bool:
    """Whether ``path`` names a georeferenced output (by its suffix)."""
    return Path(path).suffix.lower() in GEO_SUFFIXES


def labels_store_for(path: str | Path) -> Path:
    """The labels zarr beside a georeferenced output: ``NAME.labels.zarr``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.labels.zarr")


def export_geo(
    labels: str | Path,
    outputs: Sequence[str | Path],
    *,
    simplify: float = 0.0,
    cog: bool = True,
) -> list[Path]:
    """Write the georeferenced outputs of a finished run's labels array.

    Args:
        labels: the run's labels zarr (``RunSummary.labels``), 2-D ``(H, W)``.
        outputs: paths ending in ``.tif`` / ``.tiff`` (labels), ``.gpkg`` / ``.geojson``
            (polygons).
        simplify: polygon simplification tolerance in map units (0: exact pixel outlines).
        cog: write the labels as a Cloud-Optimised GeoTIFF (else a tiled GeoTIFF).

    Returns:
        The paths written.

    Raises:
        BatchConfigError: the geo extra is missing, the run is unfinished or was not on a
            georeferenced input, the labels have planes, or an output suffix is unknown.
    """
    import zarr

    try:
        require_geo("georeferenced outputs")
    except GeoExtraMissing as exc:
        raise BatchConfigError(str(exc)) from None
    for out in outputs:
        if not is_geo_output(out):
            raise BatchConfigError(f"{out}: georeferenced outputs end in {', '.join(GEO_SUFFIXES)}")
    if simplify < 0:
        raise BatchConfigError(f"simplify must be >= 0 map units, got {simplify}")
    array: Any = zarr.open_array(str(labels), mode="r")
    attrs = array.attrs.get("napari_seem") or {}
    if not attrs.get("complete"):
        raise BatchConfigError(f"{labels}: the run is unfinished; rerun it to complete it first")
    if "geo" not in attrs:
        raise BatchConfigError(
            f"{labels}: the input was not georeferenced (no CRS / transform), so there is no "
            "map to put GeoTIFF / GeoPackage outputs on; read the labels zarr instead"
        )
    if array.ndim != 2:
        raise BatchConfigError(
            f"{labels}: labels of shape {array.shape} have planes; georeferenced outputs "
            "are written for 2-D scenes"
        )
    geo = GeoInfo.from_dict(attrs["geo"])
    table = attrs.get("classes") or []
    written = []
    for out in outputs:
        written.append(_write_one(Path(out), array, geo, table, simplify, cog))
    return written


def _write_one(
    out: Path, array: Any, geo: GeoInfo, table: list[Any], simplify: float, cog: bool
) -> Path:
    from napari_seem.core.geo_write import (
        iter_object_polygons,
        write_features,
        write_labels_geotiff,
    )

    if out.suffix.lower() in RASTER_SUFFIXES:
        return write_labels_geotiff(out, array, geo, cog=cog)
    features = list(iter_object_polygons(array, geo, table, simplify=simplify))
    features.sort(key=lambda f: f.id)
    return write_features(out, features, geo)
