"""Prompts in map coordinates: points and boxes in any CRS -> level-0 image pixels.

A remote-sensing user gives clicks as ``(x, y)`` = (easting, northing) or (longitude,
latitude), in the raster's CRS or another one; :func:`map_points_to_pixels` reprojects them
with pyproj (``always_xy``: x first, also for EPSG:4326) to the raster's CRS and inverts its
transform (:meth:`GeoInfo.map_to_pixel`), giving ``(row, col)`` with pixel centres on
integers, as every prompt of the project.

:func:`map_collection_to_pixels` does the same for a GeoJSON-like FeatureCollection (from a
``.geojson`` with a ``crs`` member or a given CRS, or a GeoPackage read by
:func:`napari_seem.core.geo_gpkg.read_gpkg`): the result is a FeatureCollection in pixel
coordinates ``[x, y] = [col, row]``, the format :mod:`napari_seem.batch.prompts_file` reads.
Points stay points; a polygon becomes the pixel bounding box of its reprojected outer ring.

Requires pyproj (the ``geo`` extra).

No torch here (tier 0).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_seem.core.geo_meta import GeoInfo, require_geo

__all__ = [
    "collection_crs",
    "map_box_to_pixels",
    "map_collection_to_pixels",
    "map_points_to_pixels",
    "prompts_to_pixels",
    "read_map_collection",
]

_DECIMALS = 6
_URN = re.compile(r"EPSG::?(\d+)", re.IGNORECASE)


def _transformer(crs: str | None, geo: GeoInfo) -> Any:
    """A pyproj transformer from ``crs`` to the raster's CRS (None: already in it)."""
    require_geo()
    if crs is None:
        return None
    from pyproj import CRS, Transformer

    if not geo.crs:
        raise ValueError(
            f"the image has no CRS, so points in {crs} cannot be placed on it; give pixels"
        )
    source, target = CRS.from_user_input(crs), CRS.from_wkt(geo.crs)
    if source == target:
        return None
    return Transformer.from_crs(source, target, always_xy=True)


def map_points_to_pixels(
    points: npt.ArrayLike, geo: GeoInfo, crs: str | None = None
) -> npt.NDArray[np.float64]:
    """``(N, 2)`` map ``(x, y)`` in ``crs`` (None: the raster's CRS) -> ``(N, 2)`` level-0
    ``(row, col)`` float64 pixels, rounded to 1e-6 pixel.

    Raises:
        ValueError: not ``(N, 2)`` finite numbers, or a CRS pyproj does not know.
    """
    xy = np.asarray(points, dtype=np.float64)
    if xy.ndim == 1 and xy.shape == (2,):
        xy = xy[None]
    if xy.ndim != 2 or xy.shape[1] != 2 or not np.isfinite(xy).all():
        raise ValueError(f"map points must be (N, 2) finite (x, y) pairs, got shape {xy.shape}")
    transformer = _transformer(crs, geo)
    xs, ys = xy[:, 0], xy[:, 1]
    if transformer is not None:
        xs, ys = transformer.transform(xs, ys)
    rows, cols = geo.map_to_pixel(xs, ys)
    # a micro-pixel grid: the float noise of a reprojection round trip (1e-9 px) must not
    # move a click that sits on a pixel centre or edge to the neighbouring pixel
    return np.round(np.stack([rows, cols], axis=1), _DECIMALS).astype(np.float64)


def map_box_to_pixels(
    box: npt.ArrayLike, geo: GeoInfo, crs: str | None = None
) -> tuple[float, float, float, float]:
    """A map box ``(xmin, ymin, xmax, ymax)`` -> the level-0 pixel box
    ``(row0, col0, row1, col1)`` bounding its four reprojected corners."""
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, np.float64).ravel()[:4])
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    rc = map_points_to_pixels(corners, geo, crs)
    return (
        float(rc[:, 0].min()),
        float(rc[:, 1].min()),
        float(rc[:, 0].max()),
        float(rc[:, 1].max()),
    )


def collection_crs(data: dict[str, Any]) -> str | None:
    """The CRS named by a GeoJSON ``crs`` member (``"EPSG:4326"`` ...), or None."""
    member = data.get("crs")
    if not isinstance(member, dict):
        return None
    name = str((member.get("properties") or {}).get("name", ""))
    if "CRS84" in name.upper():
        return "OGC:CRS84"
    found = _URN.search(name)
    if found:
        return f"EPSG:{found.group(1)}"
    return name or None


def read_map_collection(path: str | Path) -> tuple[dict[str, Any], str | None]:
    """A FeatureCollection and its CRS from a ``.geojson`` / ``.json`` (its ``crs`` member)
    or a ``.gpkg`` (its SRS) file.

    Raises:
        ValueError: unreadable file or unknown suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".gpkg":
        import shapely

        from napari_seem.core.geo_gpkg import read_gpkg

        layer = read_gpkg(path)
        features = [
            {"type": "Feature", "properties": row, "geometry": json.loads(shapely.to_geojson(g))}
            for g, row in zip(layer.geometries, layer.rows, strict=True)
            if g is not None
        ]
        crs = None
        if layer.crs and layer.crs != "undefined":
            crs = f"EPSG:{layer.srs_id}" if layer.srs_id > 0 else layer.crs
        return {"type": "FeatureCollection", "features": features}, crs
    if suffix in (".geojson", ".json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a GeoJSON FeatureCollection")
        return data, collection_crs(data)
    raise ValueError(f"{path}: map prompts are read from .gpkg or .geojson files")


def map_collection_to_pixels(data: dict[str, Any], geo: GeoInfo, crs: str | None) -> dict[str, Any]:
    """A FeatureCollection of points / polygons in ``crs`` -> the same in level-0 pixel
    coordinates ``[col, row]`` (properties kept; polygons become their pixel boxes).

    Raises:
        ValueError: a feature without a geometry, or a geometry other than Point,
            MultiPoint and Polygon.
    """
    features = data.get("features")
    if not isinstance(features, list):
        raise ValueError("'features' must be a list")
    out = []
    for i, feature in enumerate(features):
        geometry = (feature or {}).get("geometry") if isinstance(feature, dict) else None
        if not isinstance(geometry, dict):
            raise ValueError(f"feature {i}: a Feature with a geometry is expected")
        kind = geometry.get("type")
        coords: Any = geometry.get("coordinates")
        if kind == "MultiPolygon" and coords and len(coords) == 1:
            kind, coords = "Polygon", coords[0]
        if kind in ("Point", "MultiPoint"):
            pts = [coords] if kind == "Point" else list(coords or [])
            rc = map_points_to_pixels([p[:2] for p in pts], geo, crs)
            pixel = [[float(c), float(r)] for r, c in rc]
            new = {"type": kind, "coordinates": pixel[0] if kind == "Point" else pixel}
        elif kind == "Polygon":
            ring = np.asarray((coords or [[]])[0], np.float64)[:, :2]
            if len(ring) < 3:
                raise ValueError(f"feature {i}: a Polygon needs at least 3 vertices")
            rc = map_points_to_pixels(ring, geo, crs)
            r0, c0 = rc.min(axis=0)
            r1, c1 = rc.max(axis=0)
            box = [[c0, r0], [c1, r0], [c1, r1], [c0, r1], [c0, r0]]
            new = {"type": "Polygon", "coordinates": [[[float(x), float(y)] for x, y in box]]}
        else:
            raise ValueError(
                f"feature {i}: geometry {kind!r} is not supported; use Point, MultiPoint or "
                "Polygon (a box)"
            )
        out.append({"type": "Feature", "properties": feature.get("properties"), "geometry": new})
    return {"type": "FeatureCollection", "features": out}


def prompts_to_pixels(
    source: Any, points: npt.ArrayLike | None, boxes: npt.ArrayLike | None, crs: str
) -> tuple[npt.NDArray[np.float64] | None, npt.NDArray[np.float64] | None]:
    """The scripting API's ``points`` / ``boxes`` given in map coordinates -> pixels.

    Args:
        source: the opened image (a georeferenced :class:`ImageSource`).
        points: ``(N, 2)`` map ``(x, y)`` in ``crs``, or None.
        boxes: ``(N, 4)`` map ``(xmin, ymin, xmax, ymax)`` in ``crs``, or None.
        crs: their CRS, e.g. ``"EPSG:4326"`` (x = longitude, y = latitude).

    Returns:
        ``(N, 2)`` level-0 ``(row, col)`` and ``(N, 4)`` ``(row0, col0, row1, col1)``.

    Raises:
        ValueError: the image is not georeferenced, or malformed coordinates.
    """
    from napari_seem.core.geo_meta import geo_of

    geo = geo_of(source)
    if geo is None:
        raise ValueError(
            f"crs={crs!r} places map coordinates on a georeferenced image (GeoTIFF / COG); "
            "this image has no CRS / transform: give points as (row, col) pixels without crs"
        )
    pixel_points = None if points is None else map_points_to_pixels(points, geo, crs)
    pixel_boxes = None
    if boxes is not None:
        array = np.asarray(boxes, np.float64).reshape(-1, 4)
        pixel_boxes = np.array([map_box_to_pixels(b, geo, crs) for b in array], np.float64)
    return pixel_points, pixel_boxes
