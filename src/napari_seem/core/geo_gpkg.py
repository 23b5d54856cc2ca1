"""A minimal GeoPackage (OGC 12-128r18, version 1.3) feature writer and reader on sqlite3.

Enough of the standard for one feature table of (multi)polygons or points with a few plain
attribute columns: the three required metadata tables (``gpkg_spatial_ref_sys``,
``gpkg_contents``, ``gpkg_geometry_columns``), the GeoPackage application id and version,
and geometries stored as "GeoPackageBinary" (a small header with the SRS id and the
envelope, then ISO WKB from shapely). GDAL / QGIS / geopandas read these files.

Geometries are shapely objects; the CRS is a WKT string (written as the SRS definition;
the EPSG code, when known, is the SRS id). Requires shapely (the ``geo`` extra); sqlite3 is
in the standard library.

No torch here (tier 0).
"""

from __future__ import annotations

import re
import sqlite3
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["GpkgLayer", "read_gpkg", "write_gpkg"]

_APPLICATION_ID = 0x47504B47  # "GPKG"
_USER_VERSION = 10300  # 1.3.0
_CUSTOM_SRS_ID = 100000
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_SCHEMA = """
CREATE TABLE gpkg_spatial_ref_sys (
  srs_name TEXT NOT NULL, srs_id INTEGER NOT NULL PRIMARY KEY,
  organization TEXT NOT NULL, organization_coordsys_id INTEGER NOT NULL,
  definition TEXT NOT NULL, description TEXT);
CREATE TABLE gpkg_contents (
  table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL, identifier TEXT UNIQUE,
  description TEXT DEFAULT '',
  last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER,
  CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id));
CREATE TABLE gpkg_geometry_columns (
  table_name TEXT NOT NULL, column_name TEXT NOT NULL, geometry_type_name TEXT NOT NULL,
  srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL,
  CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
  CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
  CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id));
"""

_WGS84 = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
    'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433],AUTHORITY["EPSG","4326"]]'
)
_DEFAULT_SRS = [
    ("WGS 84 geodetic", 4326, "EPSG", 4326, _WGS84, "longitude/latitude on WGS 84"),
    ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", "undefined cartesian"),
    ("Undefined geographic SRS", 0, "NONE", 0, "undefined", "undefined geographic"),
]
_SQL_TYPES = {int: "INTEGER", float: "REAL", str: "TEXT"}


@dataclass(frozen=True)
class GpkgLayer:
    """One feature table read back: geometries, attribute rows and the CRS.

    Attributes:
        name: the table name.
        geometries: shapely geometries, one per feature.
        rows: the attribute values of each feature, by column name.
        crs: the SRS definition (WKT; ``"undefined"`` or ``""`` when none).
        srs_id: the SRS id (the EPSG code when the writer knew it).
    """

    name: str
    geometries: list[Any]
    rows: list[dict[str, Any]]
    crs: str
    srs_id: int


def write_gpkg(
    path: str | Path,
    geometries: Sequence[Any],
    rows: Sequence[dict[str, Any]],
    *,
    crs_wkt: str,
    epsg: int | None,
    layer: str = "objects",
    geometry_type: str = "MULTIPOLYGON",
) -> Path:
    """Write one feature table to a new GeoPackage (an existing file is replaced).

    Args:
        geometries: shapely geometries, one per row.
        rows: attributes per feature; every row has the same keys, values int / float /
            str / None (column types come from the first non-None value).
        crs_wkt: the CRS as WKT (written as the SRS definition); ``""`` for none.
        epsg: the EPSG code of the CRS (its SRS id), or None (a custom SRS id is used).
        layer: the table name (letters, digits, ``_``).
        geometry_type: the declared geometry type, e.g. ``"MULTIPOLYGON"``, ``"POINT"``.

    Returns:
        The path written.
    """
    import shapely

    if not _NAME.match(layer):
        raise ValueError(f"layer name {layer!r}: use letters, digits and _ only")
    if len(geometries) != len(rows):
        raise ValueError(f"{len(geometries)} geometries but {len(rows)} attribute rows")
    columns = _columns(rows)
    path = Path(path)
    if path.exists():
        path.unlink()
    srs_id = _srs_id(crs_wkt, epsg)
    con = sqlite3.connect(path)
    try:
        con.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
        con.execute(f"PRAGMA user_version = {_USER_VERSION}")
        con.executescript(_SCHEMA)
        con.executemany("INSERT INTO gpkg_spatial_ref_sys VALUES (?,?,?,?,?,?)", _DEFAULT_SRS)
        if srs_id not in (4326, -1, 0):
            org, code = ("EPSG", epsg) if epsg else ("NONE", srs_id)
            con.execute(
                "INSERT INTO gpkg_spatial_ref_sys VALUES (?,?,?,?,?,?)",
                (f"{org}:{code}", srs_id, org, code, crs_wkt, "the input raster's CRS"),
            )
        cols = ", ".join(f'"{name}" {kind}' for name, kind in columns)
        extra = f", {cols}" if cols else ""
        con.execute(
            f'CREATE TABLE "{layer}" (fid INTEGER PRIMARY KEY AUTOINCREMENT, '
            f"geom {geometry_type}{extra})"
        )
        bounds = [float("inf"), float("inf"), float("-inf"), float("-inf")]
        names = [name for name, _ in columns]
        marks = ", ".join("?" * (len(names) + 1))
        quoted = ", ".join(["geom", *(f'"{n}"' for n in names)])
        for geom, row in zip(geometries, rows, strict=True):
            blob = _blob(geom, srs_id, shapely)
            if not geom.is_empty:
                x0, y0, x1, y1 = geom.bounds
                bounds = [
                    min(bounds[0], x0),
                    min(bounds[1], y0),
                    max(bounds[2], x1),
                    max(bounds[3], y1),
                ]
            values = [blob, *(row.get(n) for n in names)]
            con.execute(f'INSERT INTO "{layer}" ({quoted}) VALUES ({marks})', values)
        box = bounds if geometries else [None, None, None, None]
        con.execute(
            "INSERT INTO gpkg_contents (table_name, data_type, identifier, min_x, min_y, max_x, "
            "max_y, srs_id) VALUES (?, 'features', ?, ?, ?, ?, ?, ?)",
            (layer, layer, *box, srs_id),
        )
        con.execute(
            "INSERT INTO gpkg_geometry_columns VALUES (?, 'geom', ?, ?, 0, 0)",
            (layer, geometry_type, srs_id),
        )
        con.commit()
    finally:
        con.close()
    return path


def _columns(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    if not rows:
        return []
    out = []
    for name in rows[0]:
        if not _NAME.match(name) or name.lower() in ("fid", "geom"):
            raise ValueError(f"attribute name {name!r}: use letters, digits and _ (not fid/geom)")
        value = next((r[name] for r in rows if r.get(name) is not None), None)
        kind = _SQL_TYPES.get(type(value), "TEXT")
        if isinstance(value, bool):
            kind = "INTEGER"
        out.append((name, kind))
    return out


def _srs_id(crs_wkt: str, epsg: int | None) -> int:
    if epsg:
        return int(epsg)
    return _CUSTOM_SRS_ID if crs_wkt else -1


def _blob(geom: Any, srs_id: int, shapely: Any) -> bytes:
    """GeoPackageBinary: magic, version 0, flags (little endian, xy envelope), srs id,
    envelope ``(minx, maxx, miny, maxy)``, then ISO WKB."""
    wkb = shapely.to_wkb(geom, byte_order=1, flavor="iso")
    if geom.is_empty:
        return b"GP" + struct.pack("<BBi", 0, 0b10001, srs_id) + wkb
    x0, y0, x1, y1 = geom.bounds
    return b"GP" + struct.pack("<BBi4d", 0, 0b11, srs_id, x0, x1, y0, y1) + wkb


def _geometry(blob: bytes, shapely: Any) -> Any:
    """A shapely geometry from GeoPackageBinary (any envelope, either byte order)."""
    if blob[:2] != b"GP":
        raise ValueError("not a GeoPackage geometry (the blob does not start with 'GP')")
    flags = blob[3]
    envelope = (flags >> 1) & 0b111
    size = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}.get(envelope)
    if size is None:
        raise ValueError(f"GeoPackage geometry with an invalid envelope code {envelope}")
    return shapely.from_wkb(blob[8 + size :])


def read_gpkg(path: str | Path, layer: str | None = None) -> GpkgLayer:
    """Read one feature table (the first listed in ``gpkg_contents`` unless ``layer``).

    Raises:
        ValueError: not a GeoPackage, no feature table, or no table ``layer``.
    """
    import shapely

    path = Path(path)
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        try:
            tables = con.execute(
                "SELECT table_name, srs_id FROM gpkg_contents WHERE data_type = 'features'"
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{path}: not a GeoPackage ({exc})") from None
        if layer is not None:
            tables = [t for t in tables if t[0] == layer]
        if not tables:
            raise ValueError(f"{path}: no feature table{f' {layer!r}' if layer else ''}")
        name, srs_id = tables[0]
        (column,) = con.execute(
            "SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (name,)
        ).fetchone()
        found = con.execute(
            "SELECT definition FROM gpkg_spatial_ref_sys WHERE srs_id = ?", (srs_id,)
        ).fetchone()
        cursor = con.execute(f'SELECT * FROM "{name}"')
        names = [d[0] for d in cursor.description]
        geometries, rows = [], []
        for record in cursor:
            values = dict(zip(names, record, strict=True))
            blob = values.pop(column)
            values.pop("fid", None)
            geometries.append(None if blob is None else _geometry(blob, shapely))
            rows.append(values)
    finally:
        con.close()
    return GpkgLayer(name, geometries, rows, found[0] if found else "", int(srs_id))
