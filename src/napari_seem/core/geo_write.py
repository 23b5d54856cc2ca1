"""Georeferenced results: labels as GeoTIFF / COG, objects as polygons (GeoPackage, GeoJSON).

Inputs are a 2-D uint32 labels array ``(H, W)`` (numpy or zarr, read block by block) in the
pixels of the segmented level, and the :class:`~napari_seem.core.geo_meta.GeoInfo` OF THAT
LEVEL (``GeoInfo.at_level``). Outputs are in the input's CRS:

- :func:`write_labels_geotiff`: a tiled, DEFLATE-compressed GeoTIFF, or a Cloud-Optimised
  GeoTIFF with nearest-neighbour overviews (``cog=True``), with the CRS and transform; 0 is
  background.
- :func:`iter_object_polygons`: one feature per label id, streamed: block rows of the labels
  are polygonised with ``rasterio.features.shapes`` in integer pixel-corner coordinates
  (exact, so the pieces of one object in neighbouring blocks share their edges), the pieces
  of an id are joined by a coverage union once the block rows past its bounding box are
  done, then moved to map coordinates and optionally simplified (tolerance in map units).
  ``area`` is the map area of the exact (unsimplified) outline: pixels x pixel area.
- :func:`write_features`: GeoPackage (``.gpkg``, :mod:`napari_seem.core.geo_gpkg`) or
  GeoJSON (``.geojson`` / ``.json``, with a ``crs`` member naming the input CRS).

Requires the ``geo`` extra (rasterio, pyproj, shapely).

No torch here (tier 0).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_seem.core.geo_meta import GeoInfo, require_geo

__all__ = [
    "VECTOR_SUFFIXES",
    "ObjectFeature",
    "feature_collection",
    "iter_object_polygons",
    "labels_geojson",
    "write_features",
    "write_labels_geotiff",
]

VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json")
_BLOCK_ROWS = 1024


@dataclass(frozen=True)
class ObjectFeature:
    """One object as a polygon in map coordinates.

    Attributes:
        id: the label id.
        class_name: its class (or phrase); ``""`` when none.
        score: the model's score.
        area: map area of the exact outline in squared map units (pixels x pixel area).
        pixels: its pixel count.
        geometry: a shapely MultiPolygon in the raster's CRS (simplified if asked).
    """

    id: int
    class_name: str
    score: float
    area: float
    pixels: int
    geometry: Any

    def properties(self) -> dict[str, Any]:
        """The attribute columns: ``id, class, score, area, pixels``."""
        return {
            "id": self.id,
            "class": self.class_name,
            "score": round(float(self.score), 6),
            "area": float(self.area),
            "pixels": int(self.pixels),
        }


def write_labels_geotiff(
    path: str | Path, labels: Any, geo: GeoInfo, *, cog: bool = True, block: int = 512
) -> Path:
    """Write ``(H, W)`` labels (uint32, read by windows) as a georeferenced (COG) GeoTIFF.

    Args:
        labels: numpy or zarr ``(H, W)`` at the level ``geo`` describes.
        geo: the georeferencing of that level (its width / height must match).
        cog: a Cloud-Optimised GeoTIFF (overviews, nearest); else a tiled GeoTIFF.
        block: the tile size of the file (a multiple of 16).
    """
    require_geo(str(path))
    import rasterio
    import rasterio.shutil
    from affine import Affine
    from rasterio.windows import Window

    height, width = (int(n) for n in labels.shape[-2:])
    if (height, width) != (geo.height, geo.width):
        raise ValueError(
            f"labels of {height} x {width} do not fit a {geo.height} x {geo.width} grid"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": "uint32",
        "crs": geo.crs_name or geo.crs or None,  # the EPSG code keeps the CRS named
        "transform": Affine(*geo.transform),
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "compress": "deflate",
    }
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        plain = Path(scratch) / "labels.tif" if cog else path
        with rasterio.open(plain, "w", **profile) as ds:
            for r0 in range(0, height, block):
                r1 = min(height, r0 + block)
                rows = np.asarray(labels[r0:r1, :], np.uint32)
                ds.write(rows, 1, window=Window(0, r0, width, r1 - r0))
            ds.update_tags(napari_seem="labels: 0 background, 1.. object ids")
        if cog:
            rasterio.shutil.copy(
                plain,
                path,
                driver="COG",
                compress="DEFLATE",
                blocksize=block,
                overview_resampling="nearest",
                resampling="nearest",
            )
    return path


def iter_object_polygons(
    labels: Any,
    geo: GeoInfo,
    table: Sequence[Mapping[str, Any]] = (),
    *,
    simplify: float = 0.0,
    block_rows: int = _BLOCK_ROWS,
) -> Iterator[ObjectFeature]:
    """One :class:`ObjectFeature` per label id of ``labels`` (streamed by block rows).

    Args:
        labels: numpy or zarr ``(H, W)`` integer labels at the level ``geo`` describes.
        geo: the georeferencing of that level.
        table: class-table rows (``id``, ``class_name``, ``score``, ``bbox`` as
            ``[r0, c0, r1, c1]`` in these pixels); a row's bbox lets its polygon be
            finished as soon as the block rows below it are read. Ids absent from the table
            get no class and score 0.
        simplify: Douglas-Peucker tolerance in map units (0: exact pixel outlines).
        block_rows: rows polygonised at a time (memory: ``block_rows x W`` labels).

    Yields:
        Features in the order their objects are finished (by bottom row, then id).
    """
    require_geo()
    import shapely
    from affine import Affine
    from rasterio.features import shapes

    height = int(labels.shape[-2])
    rows = {int(r["id"]): r for r in table}
    pieces: dict[int, list[Any]] = {}
    counts: dict[int, int] = {}
    for r0 in range(0, height, block_rows):
        r1 = min(height, r0 + block_rows)
        chunk = np.asarray(labels[r0:r1, :])
        if chunk.max(initial=0) > np.iinfo(np.int32).max:
            raise ValueError("label ids above 2**31 - 1 cannot be polygonised")
        chunk = chunk.astype(np.int32, copy=False)
        ids, n = np.unique(chunk[chunk > 0], return_counts=True)
        for i, k in zip(ids.tolist(), n.tolist(), strict=True):
            counts[i] = counts.get(i, 0) + k
        offset = Affine.translation(0, r0)
        for geom, value in shapes(chunk, mask=chunk > 0, connectivity=4, transform=offset):
            pieces.setdefault(int(value), []).append(shapely.geometry.shape(geom))
        done = [i for i in pieces if r1 == height or _ends_above(rows.get(i), r1)]
        for i in sorted(done):
            yield _feature(i, pieces.pop(i), counts.pop(i), rows.get(i), geo, simplify)


def _ends_above(row: Mapping[str, Any] | None, r1: int) -> bool:
    """The object's bounding box ends at or above row ``r1`` (no pieces below)."""
    return row is not None and "bbox" in row and int(row["bbox"][2]) <= r1


def _feature(
    label: int,
    parts: list[Any],
    pixels: int,
    row: Mapping[str, Any] | None,
    geo: GeoInfo,
    simplify: float,
) -> ObjectFeature:
    import shapely
    from shapely import affinity

    joined = parts[0] if len(parts) == 1 else shapely.coverage_union_all(parts)
    a, b, c, d, e, f = geo.transform
    geom = affinity.affine_transform(joined, [a, b, d, e, c, f])
    area = pixels * geo.pixel_area
    if simplify > 0:
        geom = shapely.simplify(geom, simplify, preserve_topology=True)
    if geom.geom_type == "Polygon":
        geom = shapely.MultiPolygon([geom])
    elif geom.geom_type == "GeometryCollection":  # touching only at corners after union
        geom = shapely.MultiPolygon([g for g in geom.geoms if g.geom_type == "Polygon"])
    name = (row or {}).get("class_name") or ""
    score = float((row or {}).get("score") or 0.0)
    return ObjectFeature(label, str(name), score, float(area), int(pixels), geom)


def feature_collection(features: Sequence[ObjectFeature], geo: GeoInfo) -> dict[str, Any]:
    """A GeoJSON FeatureCollection dict (coordinates in the raster's CRS, named by a
    ``crs`` member as GDAL reads it; ready for ``geopandas.GeoDataFrame.from_features``)."""
    import shapely

    out: dict[str, Any] = {"type": "FeatureCollection"}
    if geo.crs_name:
        code = geo.crs_name.split(":")[-1]
        out["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{code}"}}
    out["features"] = [
        {
            "type": "Feature",
            "id": feat.id,
            "properties": feat.properties(),
            "geometry": json.loads(shapely.to_geojson(feat.geometry)),
        }
        for feat in features
    ]
    return out


def write_features(
    path: str | Path, features: Sequence[ObjectFeature], geo: GeoInfo, *, layer: str = "objects"
) -> Path:
    """Write object polygons as GeoPackage (``.gpkg``) or GeoJSON (``.geojson`` / ``.json``).

    Raises:
        ValueError: another suffix.
    """
    require_geo(str(path))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".gpkg":
        from napari_seem.core.geo_gpkg import write_gpkg

        epsg = int(geo.crs_name.split(":")[1]) if geo.crs_name.startswith("EPSG:") else None
        return write_gpkg(
            path,
            [f.geometry for f in features],
            [f.properties() for f in features] or [],
            crs_wkt=_wkt1(geo.crs),
            epsg=epsg,
            layer=layer,
        )
    if suffix in (".geojson", ".json"):
        text = json.dumps(feature_collection(features, geo), allow_nan=False)
        path.write_text(text, encoding="utf-8")
        return path
    raise ValueError(f"{path}: write polygons as .gpkg or .geojson (got {suffix!r})")


def _wkt1(wkt: str) -> str:
    """The CRS as WKT1 (what GeoPackage 1.x readers expect); ``""`` stays ``""``."""
    if not wkt:
        return ""
    from pyproj import CRS

    try:
        return str(CRS.from_wkt(wkt).to_wkt("WKT1_GDAL"))
    except Exception:  # a CRS WKT1 cannot express: keep the WKT we have
        return wkt


def labels_geojson(
    labels: Any,
    geo: GeoInfo,
    table: Sequence[Mapping[str, Any]] = (),
    *,
    simplify: float = 0.0,
) -> dict[str, Any]:
    """Labels ``(H, W)`` and their class table -> a GeoJSON FeatureCollection dict in the
    raster's CRS (one feature per label id; ``table`` rows as ``SegmentationResult
    .class_table()`` or a batch run's give them: ``id``, ``class_name``, ``score``).

    The result is ready for ``geopandas.GeoDataFrame.from_features(fc["features"],
    crs=geo.crs_name)`` or ``json.dump``.
    """
    height, width = (int(n) for n in labels.shape[-2:])
    if (height, width) != (geo.height, geo.width):
        geo = geo.at_level(geo.height / height, geo.width / width, height, width)
    features = sorted(
        iter_object_polygons(labels, geo, table, simplify=simplify), key=lambda f: f.id
    )
    return feature_collection(features, geo)
