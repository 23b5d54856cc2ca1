"""Georeferencing of a raster, as plain data: CRS, affine transform, nodata, band names.

:class:`GeoInfo` travels with an image from the reader (:mod:`napari_seem.core.geo_raster`)
through batch runs (the labels array's ``napari_seem.geo`` attribute) to the writers
(:mod:`napari_seem.core.geo_write`). Nothing here imports rasterio or pyproj: the module is
safe without the ``geo`` extra.

Frames: image pixels are level-0 ``(row, col)`` with pixel centres on integers (the
project's convention). The affine ``transform`` is GDAL's: it maps *corner* coordinates
``(col, row)`` (the top-left corner of pixel ``(0, 0)`` is ``(0, 0)``, its centre
``(0.5, 0.5)``) to map coordinates ``(x, y)`` in the CRS's units::

    x = a * col + b * row + c
    y = d * col + e * row + f

so the centre of pixel ``(r, c)`` is at corner coordinates ``(c + 0.5, r + 0.5)``.

No torch here (tier 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "GEO_EXTRA_HINT",
    "GeoExtraMissing",
    "GeoInfo",
    "geo_of",
    "require_geo",
    "resolve_bands",
]

GEO_EXTRA_HINT = (
    "georeferenced rasters and vectors (GeoTIFF / COG in, GeoTIFF / GeoPackage / GeoJSON "
    'out, prompts in map coordinates) need the geo extra: pip install "napari-seem[geo]" '
    "(rasterio, pyproj, shapely)"
)


class GeoExtraMissing(ImportError):
    """rasterio, pyproj or shapely is not installed; the message says what to install."""


def require_geo(what: str = "") -> None:
    """Import the geo extra's packages or raise :class:`GeoExtraMissing`.

    Args:
        what: what needed them, put in front of the message (e.g. a file name).
    """
    missing = []
    for name in ("rasterio", "pyproj", "shapely"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        head = f"{what}: " if what else ""
        raise GeoExtraMissing(f"{head}{GEO_EXTRA_HINT}; missing here: {', '.join(missing)}")


@dataclass(frozen=True)
class GeoInfo:
    """Where a raster lies on the Earth, and what its bands are.

    Attributes:
        crs: the coordinate reference system as WKT (``""`` when the file has none).
        crs_name: a short name, ``"EPSG:32119"`` when the CRS has an EPSG code, else ``""``.
        transform: ``(a, b, c, d, e, f)`` of level 0 (see the module docstring).
        width: level-0 columns.
        height: level-0 rows.
        nodata: the file's nodata value per band (None: the band has none).
        descriptions: one name per band (the file's band description, else the file stem
            for a single-band file, else ``"band1"``, ...).
        dtypes: the file's dtype per band (``"float32"``, ``"int16"`` ...).
        paths: the file(s) read (one per band for a scene of single-band files).
    """

    crs: str
    crs_name: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    nodata: tuple[float | None, ...] = ()
    descriptions: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    paths: tuple[str, ...] = field(default=(), compare=False)

    # ---- geometry ------------------------------------------------------------------------

    @property
    def pixel_size(self) -> tuple[float, float]:
        """``(x, y)`` size of one pixel in map units (positive)."""
        a, b, _, d, e, _ = self.transform
        return math.hypot(a, d), math.hypot(b, e)

    @property
    def pixel_area(self) -> float:
        """Area of one level-0 pixel in squared map units (``|det|`` of the transform)."""
        a, b, _, d, e, _ = self.transform
        return abs(a * e - b * d)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of the whole raster in map units."""
        cols = np.array([0, self.width, self.width, 0], np.float64)
        rows = np.array([0, 0, self.height, self.height], np.float64)
        xs, ys = self.corner_to_map(cols, rows)
        return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())

    def corner_to_map(
        self, cols: npt.ArrayLike, rows: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Corner coordinates ``(col, row)`` -> map ``(x, y)`` (float64 arrays)."""
        a, b, c, d, e, f = self.transform
        col = np.asarray(cols, np.float64)
        row = np.asarray(rows, np.float64)
        return a * col + b * row + c, d * col + e * row + f

    def pixel_to_map(
        self, rows: npt.ArrayLike, cols: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Level-0 pixel ``(row, col)`` (centres on integers) -> map ``(x, y)``."""
        return self.corner_to_map(np.asarray(cols, np.float64) + 0.5, np.asarray(rows) + 0.5)

    def map_to_pixel(
        self, xs: npt.ArrayLike, ys: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Map ``(x, y)`` -> level-0 pixel ``(row, col)`` (centres on integers), float64."""
        a, b, c, d, e, f = self.transform
        det = a * e - b * d
        if det == 0:
            raise ValueError(f"the transform {self.transform} is singular (no pixel grid)")
        x = np.asarray(xs, np.float64) - c
        y = np.asarray(ys, np.float64) - f
        col = (e * x - b * y) / det
        row = (-d * x + a * y) / det
        return row - 0.5, col - 0.5

    def at_level(self, fy: float, fx: float, height: int, width: int) -> GeoInfo:
        """The same raster at a coarser level: each pixel covers ``fy x fx`` level-0
        pixels; the level has ``height x width`` pixels."""
        a, b, c, d, e, f = self.transform
        return replace(
            self,
            transform=(a * fx, b * fy, c, d * fx, e * fy, f),
            width=int(width),
            height=int(height),
        )

    # ---- bands ---------------------------------------------------------------------------

    @property
    def common_nodata(self) -> float | None:
        """The nodata value shared by every band, or None (none, or they differ)."""
        values = set(self.nodata)
        if len(values) == 1:
            (value,) = values
            return value
        return None

    # ---- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN nodata as the string ``"nan"``)."""
        return {
            "crs": self.crs,
            "crs_name": self.crs_name,
            "transform": list(self.transform),
            "width": self.width,
            "height": self.height,
            "nodata": [_nodata_out(v) for v in self.nodata],
            "descriptions": list(self.descriptions),
            "dtypes": list(self.dtypes),
            "paths": list(self.paths),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeoInfo:
        """The inverse of :meth:`to_dict`."""
        t = [float(v) for v in data["transform"]]
        return cls(
            crs=str(data.get("crs", "")),
            crs_name=str(data.get("crs_name", "")),
            transform=(t[0], t[1], t[2], t[3], t[4], t[5]),
            width=int(data["width"]),
            height=int(data["height"]),
            nodata=tuple(_nodata_in(v) for v in data.get("nodata", [])),
            descriptions=tuple(str(v) for v in data.get("descriptions", [])),
            dtypes=tuple(str(v) for v in data.get("dtypes", [])),
            paths=tuple(str(v) for v in data.get("paths", [])),
        )


def _nodata_out(value: float | None) -> float | str | None:
    if value is None:
        return None
    return "nan" if math.isnan(value) else float(value)


def _nodata_in(value: Any) -> float | None:
    if value is None:
        return None
    return float("nan") if value == "nan" else float(value)


def geo_of(source: Any) -> GeoInfo | None:
    """The :class:`GeoInfo` of an image source (None for images without georeferencing)."""
    info = getattr(source, "geo", None)
    return info if isinstance(info, GeoInfo) else None


def resolve_bands(
    bands: Sequence[int | str] | str | None, descriptions: Sequence[str]
) -> tuple[int, int, int] | None:
    """Three band indices from indices and / or band names (case-insensitive).

    Args:
        bands: e.g. ``(3, 2, 1)``, ``("nir", "red", "green")`` or ``"nir,red,green"``
            (``"3,2,1"`` works too); None keeps the reader's default.
        descriptions: the image's band names (``GeoInfo.descriptions``).

    Raises:
        ValueError: not three bands, or a name that is not one of ``descriptions`` (the
            message lists them).
    """
    if bands is None:
        return None
    items: list[int | str] = (
        [v.strip() for v in bands.split(",") if v.strip()]
        if isinstance(bands, str)
        else list(bands)
    )
    if len(items) != 3:
        raise ValueError(f"bands {bands!r}: give exactly three bands (R, G, B), e.g. nir,red,green")
    names = [d.lower() for d in descriptions]
    out: list[int] = []
    for item in items:
        numeric = isinstance(item, (int, np.integer)) and not isinstance(item, bool)
        if numeric or (isinstance(item, str) and item.lstrip("-").isdigit()):
            out.append(int(item))
        elif isinstance(item, str) and item.lower() in names:
            out.append(names.index(item.lower()))
        else:
            known = ", ".join(repr(d) for d in descriptions) or "none (use indices)"
            raise ValueError(f"band {item!r} is not a band of this image; its bands: {known}")
    return (out[0], out[1], out[2])
