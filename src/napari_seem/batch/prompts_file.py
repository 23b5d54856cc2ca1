"""Visual prompts for batch runs from a CSV or GeoJSON file (points and boxes).

Coordinates are level-0 image pixels; pixel centres sit on integers.

**CSV** (header required, ``,``-separated; unknown columns are an error)::

    object,kind,row,col,row_min,col_min,row_max,col_max,positive,label
    1,point,120.5,88,,,,,1,nucleus
    1,point,131,95,,,,,0,nucleus
    2,box,,,400,380,460,450,,cell

- ``kind``: ``point`` (uses ``row``, ``col``; ``positive`` 1/0, true/false, default 1) or
  ``box`` (uses ``row_min, col_min, row_max, col_max``; always positive).
- ``object`` (optional): rows with the same value are one object (several clicks and/or
  a box); without the column every row is its own object.
- ``label`` (optional): the class name written to the class table.

**GeoJSON**: a ``FeatureCollection`` in pixel coordinates with ``[x, y] = [col, row]``
(GeoJSON order; ``y`` grows downwards as in the image). ``Point`` / ``MultiPoint`` features
are clicks, ``Polygon`` features are boxes (their bounding box). Optional ``properties``:
``object``, ``positive`` (points), ``label``.

**Map coordinates** (``read_prompts(path, geo=...)``, the geo extra): a ``.gpkg``, a GeoJSON
with a ``crs`` member, or any GeoJSON with ``crs=`` (e.g. ``"EPSG:4326"``) holds points and
boxes in that CRS; they are reprojected to the raster and placed on its pixels
(:mod:`napari_seem.core.geo_prompts`).

Objects are numbered ``1, 2, ...`` in order of first appearance; that number is the object's
label id in the output.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_seem.batch.store import BatchConfigError
from napari_seem.core.prompts import Box, ObjectPrompt, Points, VisualPrompt

if TYPE_CHECKING:
    from napari_seem.core.geo_meta import GeoInfo

__all__ = ["is_map_prompts", "read_prompts"]

CSV_COLUMNS = {
    "object",
    "kind",
    "row",
    "col",
    "row_min",
    "col_min",
    "row_max",
    "col_max",
    "positive",
    "label",
}


def is_map_prompts(path: str | Path, crs: str | None = None) -> bool:
    """Whether a prompts file holds map coordinates: a ``.gpkg``, a GeoJSON with a ``crs``
    member, or any GeoJSON when ``crs`` is given."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".gpkg":
        return True
    if suffix not in (".geojson", ".json") or not path.is_file():
        return False
    if crs is not None:
        return True
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False  # the pixel reader reports it
    return isinstance(data, dict) and isinstance(data.get("crs"), dict)


def read_prompts(
    path: str | Path, *, geo: GeoInfo | None = None, crs: str | None = None
) -> list[ObjectPrompt]:
    """Read object prompts from a ``.csv`` or ``.geojson`` / ``.json`` file (pixels), or
    from map coordinates (``.gpkg``, GeoJSON with a ``crs`` member or with ``crs``) placed
    on the raster ``geo`` describes.

    Raises:
        BatchConfigError: missing file, unknown format, a malformed row/feature (the
            message names the line or feature and what to fix), or map coordinates without
            a georeferenced image (``geo``).
    """
    path = Path(path)
    if not path.is_file():
        raise BatchConfigError(f"prompts file {path}: no such file")
    suffix = path.suffix.lower()
    if is_map_prompts(path, crs):
        objects = _read_map(path, geo, crs)
    elif suffix == ".csv":
        objects = _read_csv(path)
    elif suffix in (".geojson", ".json"):
        objects = _read_geojson(path)
    else:
        raise BatchConfigError(
            f"prompts file {path}: unknown format {suffix!r}; use .csv, .geojson or .gpkg"
        )
    if not objects:
        raise BatchConfigError(f"prompts file {path}: no prompts found")
    return objects


class _Objects:
    """Prompts grouped by object key, in order of first appearance."""

    def __init__(self) -> None:
        self.visual: dict[str, list[VisualPrompt]] = {}
        self.labels: dict[str, str | None] = {}

    def add(self, key: str, prompt: VisualPrompt, label: str | None) -> None:
        self.visual.setdefault(key, []).append(prompt)
        if label:
            self.labels[key] = label
        else:
            self.labels.setdefault(key, None)

    def build(self, where: str) -> list[ObjectPrompt]:
        out = []
        for key, visual in self.visual.items():
            merged = _merge_points(visual)
            if not any(p.has_positive for p in merged):
                raise BatchConfigError(
                    f"{where}: object {key!r} has only negative clicks; add a positive click "
                    "or a box"
                )
            out.append(ObjectPrompt(tuple(merged), label=self.labels.get(key)))
        return out


def _merge_points(visual: list[VisualPrompt]) -> list[VisualPrompt]:
    """All clicks of one object as one Points prompt (first), then its boxes."""
    import numpy as np

    points = [p for p in visual if isinstance(p, Points)]
    others: list[VisualPrompt] = [p for p in visual if not isinstance(p, Points)]
    if not points:
        return others
    coords = np.concatenate([p.coords for p in points])
    flags = np.concatenate([p.positive for p in points])
    return [Points(coords, flags), *others]


def _click(row: float, col: float, positive: bool) -> Points:
    import numpy as np

    return Points(np.array([[row, col]], np.float64), np.array([positive]))


def _number(value: Any, what: str, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BatchConfigError(f"{where}: {what} must be a number; got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise BatchConfigError(f"{where}: {what} must be finite; got {value!r}")
    return number


def _flag(value: Any, where: str) -> bool:
    if value is None or value == "":
        return True
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "positive", "+"):
        return True
    if text in ("0", "false", "no", "negative", "-"):
        return False
    raise BatchConfigError(f"{where}: positive must be 1/0 or true/false; got {value!r}")


def _read_csv(path: Path) -> list[ObjectPrompt]:
    objects = _Objects()
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        if not header:
            raise BatchConfigError(f"{path}: empty file; the first line must be a header")
        unknown = set(header) - CSV_COLUMNS
        if unknown or "kind" not in header:
            raise BatchConfigError(
                f"{path}: header {header} must name a 'kind' column and only columns from "
                f"{sorted(CSV_COLUMNS)} (unknown: {sorted(unknown)})"
            )
        for line, raw in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            where = f"{path}:{line}"
            if None in raw:
                raise BatchConfigError(f"{where}: more cells than header columns")
            key = row.get("object") or f"row{line}"
            kind = row.get("kind", "").lower()
            label = row.get("label") or None
            try:
                if kind == "point":
                    r = _number(row.get("row"), "row", where)
                    c = _number(row.get("col"), "col", where)
                    positive = _flag(row.get("positive"), where)
                    objects.add(key, _click(r, c, positive), label)
                elif kind == "box":
                    r0, c0, r1, c1 = (
                        _number(row.get(k), k, where)
                        for k in ("row_min", "col_min", "row_max", "col_max")
                    )
                    objects.add(key, Box(r0, c0, r1, c1), label)
                else:
                    raise BatchConfigError(
                        f"{where}: kind must be 'point' or 'box'; got {row.get('kind')!r}"
                    )
            except BatchConfigError:
                raise
            except ValueError as exc:
                raise BatchConfigError(f"{where}: {exc}") from None
    return objects.build(str(path))


def _read_map(path: Path, geo: GeoInfo | None, crs: str | None) -> list[ObjectPrompt]:
    """Map-coordinate prompts -> pixel prompts on the raster ``geo`` describes."""
    from napari_seem.core.geo_meta import GeoExtraMissing
    from napari_seem.core.geo_prompts import map_collection_to_pixels, read_map_collection

    if geo is None:
        raise BatchConfigError(
            f"{path}: prompts in map coordinates need a georeferenced image (GeoTIFF / COG); "
            "give pixel coordinates (a GeoJSON without a 'crs' member, or a CSV) for this one"
        )
    try:
        data, found = read_map_collection(path)
        pixels = map_collection_to_pixels(data, geo, crs or found or None)
    except GeoExtraMissing as exc:
        raise BatchConfigError(str(exc)) from None
    except ValueError as exc:
        raise BatchConfigError(f"{path}: {exc}") from None
    return _from_collection(pixels, path)


def _read_geojson(path: Path) -> list[ObjectPrompt]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BatchConfigError(f"{path}: not valid JSON ({exc})") from None
    return _from_collection(data, path)


def _from_collection(data: Any, path: Path) -> list[ObjectPrompt]:
    """Object prompts from a FeatureCollection in pixel coordinates ``[col, row]``."""
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise BatchConfigError(f"{path}: expected a GeoJSON FeatureCollection")
    features = data.get("features")
    if not isinstance(features, list):
        raise BatchConfigError(f"{path}: 'features' must be a list")
    objects = _Objects()
    for i, feature in enumerate(features):
        where = f"{path} feature {i}"
        if not isinstance(feature, dict) or not isinstance(feature.get("geometry"), dict):
            raise BatchConfigError(f"{where}: a Feature with a geometry is expected")
        props = feature.get("properties") or {}
        if not isinstance(props, dict):
            raise BatchConfigError(f"{where}: properties must be an object")
        geometry = feature["geometry"]
        kind = geometry.get("type")
        coords = geometry.get("coordinates")
        key = str(props["object"]) if props.get("object") is not None else f"feature{i}"
        label = props.get("label")
        label = str(label) if label else None
        try:
            if kind in ("Point", "MultiPoint"):
                points = [coords] if kind == "Point" else coords
                positive = _flag(props.get("positive"), where)
                for point in points or []:
                    x, y = (_number(v, "coordinate", where) for v in point[:2])
                    objects.add(key, _click(y, x, positive), label)
            elif kind == "Polygon":
                ring = (coords or [[]])[0]
                xs = [_number(p[0], "x", where) for p in ring]
                ys = [_number(p[1], "y", where) for p in ring]
                if len(xs) < 3:
                    raise BatchConfigError(f"{where}: a Polygon needs at least 3 vertices")
                objects.add(key, Box(min(ys), min(xs), max(ys), max(xs)), label)
            else:
                raise BatchConfigError(
                    f"{where}: geometry {kind!r} is not supported; use Point, MultiPoint or "
                    "Polygon (a box)"
                )
        except BatchConfigError:
            raise
        except (ValueError, TypeError, IndexError) as exc:
            raise BatchConfigError(f"{where}: {exc}") from None
    return objects.build(str(path))
