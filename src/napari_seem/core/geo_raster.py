"""Georeferenced rasters (GeoTIFF, Cloud-Optimised GeoTIFF, VRT) read lazily with rasterio.

:func:`open_image <napari_seem.core.io.open_image>` hands these inputs here:

- one GeoTIFF / COG / ``.vrt`` path (a TIFF counts as georeferenced when it carries GeoTIFF
  tags; plain TIFFs keep the tifffile reader);
- a list of raster paths of ONE scene (e.g. Landsat's single-band files): their bands, in
  the order given, form one multi-band image. They must share size, CRS and transform.

The image is ``(H, W, C)`` with axes ``"yxc"``; pixels are read by window
(:class:`GeoBandsArray`), each GDAL overview is a pyramid level (factor 2, 4 ...). Bands of
one dtype and one nodata value keep their dtype (the nodata value becomes the source's
``nodata``); bands that differ (Landsat: float32 with -99999 next to int16 with -32768) are
read as float32 (float64 for 32-bit integers) with NaN on each band's own nodata pixels, so
nodata is never confused with data. The :class:`~napari_seem.core.geo_meta.GeoInfo` (CRS,
transform, per-band nodata, band names) is the source's ``geo`` attribute
(:class:`GeoImageSource`).

rasterio is imported only when such an input is opened; without the ``geo`` extra the error
names the ``pip install`` that adds it.

No torch here (tier 0).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_seem.core.geo_meta import GeoExtraMissing, GeoInfo, require_geo
from napari_seem.core.image_source import (
    TIFF_SUFFIXES,
    ImageSource,
    ImageSourceError,
    Level,
    SourceConfig,
)

__all__ = [
    "GeoBandsArray",
    "GeoImageSource",
    "GeoScene",
    "geo_paths",
    "has_geotiff_tags",
    "open_geo_scene",
    "write_scene_vrt",
]

# GeoTIFF tags: ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory.
_GEOTIFF_TAGS = (33550, 33922, 34264, 34735)
_RASTER_SUFFIXES = (*TIFF_SUFFIXES, ".vrt")


def has_geotiff_tags(path: Path) -> bool:
    """Whether the TIFF at ``path`` carries GeoTIFF georeferencing tags (read by tifffile,
    so this works without rasterio)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page: Any = tif.pages[0]
            tags = page.tags
            return any(tags.get(code) is not None for code in _GEOTIFF_TAGS)
    except Exception:  # not a readable TIFF: the TIFF reader reports it
        return False


def geo_paths(source: Any) -> list[Path] | None:
    """The raster files of a georeferenced input, or None when ``source`` is not one.

    One path: a ``.vrt``, or a TIFF with GeoTIFF tags. A list / tuple of paths (at least
    one, all raster files): the bands of one scene.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            return None
        name = path.name.lower()
        if name.endswith(".vrt") or (name.endswith(TIFF_SUFFIXES) and has_geotiff_tags(path)):
            return [path]
        return None
    if (
        isinstance(source, (list, tuple))
        and source
        and all(isinstance(s, (str, os.PathLike)) for s in source)
    ):
        paths = [Path(s) for s in source]
        for p in paths:
            if not p.is_file():
                raise ImageSourceError(f"{p}: no such file (a band of the scene)")
            if not p.name.lower().endswith(_RASTER_SUFFIXES):
                raise ImageSourceError(
                    f"{p}: a scene is a list of GeoTIFF / COG / VRT files (.tif, .tiff, .vrt)"
                )
        return paths
    return None


class GeoBandsArray:
    """``(H, W, C)`` lazy pixels of the bands of one or more raster files at one level.

    Indexed with ``[rows, cols, channels]`` (slices, steps and integers); each read opens
    nothing new after the first (one rasterio dataset per file, level and thread) and reads
    only the window asked for.

    Attributes:
        shape: ``(H, W, C)`` of this level.
        dtype: the dtype of reads (the files', or float32 / float64 with NaN for nodata).
        chunks: ``(block rows, block cols, 1)`` of the first file (for aligned sampling).
    """

    def __init__(
        self,
        bands: Sequence[tuple[str, int]],
        shape: tuple[int, int, int],
        dtype: np.dtype[Any],
        nodata: Sequence[float | None],
        *,
        promote: bool,
        overview: int | None,
        block: tuple[int, int],
    ) -> None:
        self.bands = tuple(bands)  # (path, 1-based band index) per channel
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.ndim = 3
        self.nodata = tuple(nodata)
        self.promote = promote
        self.overview = overview
        self.chunks = (int(block[0]), int(block[1]), 1)
        self._local = threading.local()
        self._opened: list[Any] = []
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for key in ("_local", "_opened", "_lock"):
            state.pop(key)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()
        self._opened = []
        self._lock = threading.Lock()

    def _dataset(self, path: str) -> Any:
        handles = getattr(self._local, "handles", None)
        if handles is None:
            handles = self._local.handles = {}
        if path not in handles:
            import rasterio

            kwargs = {} if self.overview is None else {"overview_level": self.overview}
            handles[path] = rasterio.open(path, **kwargs)
            with self._lock:
                self._opened.append(handles[path])
        return handles[path]

    def close(self) -> None:
        """Close every dataset opened by any thread."""
        with self._lock:
            for ds in self._opened:
                ds.close()
            self._opened.clear()
        self._local = threading.local()

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = (*key, *([slice(None)] * (3 - len(key))))
        rows, cols, chans = (_as_slice(k, n) for k, n in zip(key, self.shape, strict=True))
        squeeze = [ax for ax, k in enumerate(key) if not isinstance(k, slice)]
        r0, r1 = _extent(rows)
        c0, c1 = _extent(cols)
        channels = range(self.shape[2])[chans[0]]
        out = np.empty((r1 - r0, c1 - c0, len(channels)), self.dtype)
        if out.size:
            self._fill(out, channels, r0, r1, c0, c1)
        out = out[:: rows[0].step or 1, :: cols[0].step or 1]
        return out.squeeze(axis=tuple(squeeze)) if squeeze else out

    def _fill(self, out: np.ndarray, channels: range, r0: int, r1: int, c0: int, c1: int) -> None:
        from rasterio.windows import Window

        window = Window(c0, r0, c1 - c0, r1 - r0)
        by_file: dict[str, list[tuple[int, int]]] = {}
        for k, ch in enumerate(channels):
            path = self.bands[ch][0]
            by_file.setdefault(path, []).append((k, ch))
        for path, picks in by_file.items():
            indexes = [self.bands[ch][1] for _, ch in picks]
            ds = self._dataset(path)
            if self.promote:  # a file may mix dtypes (a VRT): rasterio reads those one by one
                data = np.stack([ds.read(i, window=window) for i in indexes])
            else:
                data = ds.read(indexes, window=window)  # (k, h, w)
            for j, (k, ch) in enumerate(picks):
                band = data[j]
                if self.promote:
                    band = band.astype(self.dtype)
                    value = self.nodata[ch]
                    if value is not None and not math.isnan(value):
                        band[data[j] == value] = np.nan
                out[..., k] = band


def _as_slice(key: Any, size: int) -> tuple[slice, int]:
    """A slice (and the axis size) for an index or a slice along one axis."""
    if isinstance(key, slice):
        return key, size
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        i = int(key) + (size if key < 0 else 0)
        if not 0 <= i < size:
            raise IndexError(f"index {key} is out of range for an axis of size {size}")
        return slice(i, i + 1), size
    raise IndexError(f"GeoBandsArray takes slices and integers, got {key!r}")


def _extent(sl: tuple[slice, int]) -> tuple[int, int]:
    """``[start, stop)`` covered by a slice with a positive step."""
    s, size = sl
    start, stop, step = s.indices(size)
    if step < 1:
        raise IndexError("GeoBandsArray reads need a positive step")
    return start, max(start, stop)


class GeoImageSource(ImageSource):
    """An :class:`~napari_seem.core.io.ImageSource` with georeferencing: ``geo`` is its
    :class:`~napari_seem.core.geo_meta.GeoInfo` (level 0)."""

    def __init__(self, config: SourceConfig, levels: Sequence[Level], geo: GeoInfo) -> None:
        super().__init__(config, levels)
        self.geo = geo

    def close(self) -> None:
        """Close the raster files (reads reopen them)."""
        for lev in self.levels:
            if isinstance(lev.array, GeoBandsArray):
                lev.array.close()


@dataclass(frozen=True)
class GeoScene:
    """What :func:`open_geo_scene` found: raw levels for ``open_image`` and the metadata.

    Attributes:
        origin: the resolved path of a single file, or ``"<geotiff scene: a.tif | b.tif in
            DIR>"`` (the band files).
        levels: ``(array, scale)`` per level (scale = the overview factor per axis).
        geo: the georeferencing of level 0.
        nodata: the value marking nodata in reads (None: NaN marks it, or there is none).
    """

    origin: str
    levels: list[tuple[Any, list[float] | None]]
    geo: GeoInfo
    nodata: float | None


def open_geo_scene(paths: Sequence[Path]) -> GeoScene:
    """Open the raster file(s) of one scene (no pixels read).

    Raises:
        ImageSourceError: the geo extra is missing (the message names the ``pip install``),
            a file cannot be read, or the files of a scene do not share size, CRS and
            transform.
    """
    try:
        require_geo(str(paths[0]) if len(paths) == 1 else "a scene of raster files")
    except GeoExtraMissing as exc:
        raise ImageSourceError(str(exc)) from None
    import rasterio

    bands: list[tuple[str, int]] = []
    infos: list[dict[str, Any]] = []
    for path in paths:
        try:
            with rasterio.open(path) as ds:
                infos.append(_describe(ds, path))
        except rasterio.errors.RasterioIOError as exc:
            raise ImageSourceError(f"{path}: cannot read as a raster ({exc})") from None
        bands += [(str(path.resolve()), i + 1) for i in range(infos[-1]["count"])]
    first = infos[0]
    for other, path in zip(infos[1:], paths[1:], strict=True):
        for key in ("shape", "transform", "crs"):
            if other[key] != first[key]:
                raise ImageSourceError(
                    f"{path}: its {key} {other[key]} differs from {paths[0]}'s {first[key]}; "
                    "the files of one scene must share size, CRS and transform (reproject or "
                    "resample them first, e.g. with rasterio.warp)"
                )
    nodata = tuple(v for info in infos for v in info["nodata"])
    dtypes = tuple(d for info in infos for d in info["dtypes"])
    same = len(set(dtypes)) == 1 and len({_key(v) for v in nodata}) == 1
    dtype = np.dtype(dtypes[0]) if same else _promoted(dtypes)
    geo = GeoInfo(
        crs=first["crs"],
        crs_name=first["crs_name"],
        transform=first["transform"],
        width=first["shape"][1],
        height=first["shape"][0],
        nodata=nodata,
        descriptions=tuple(d for info in infos for d in info["descriptions"]),
        dtypes=dtypes,
        paths=tuple(str(p.resolve()) for p in paths),
    )
    factors = first["overviews"] if all(i["overviews"] == first["overviews"] for i in infos) else []
    height, width = first["shape"]
    levels: list[tuple[Any, list[float] | None]] = []
    for k, factor in enumerate([1, *factors]):
        shape = (math.ceil(height / factor), math.ceil(width / factor), len(bands))
        array = GeoBandsArray(
            bands,
            shape,
            dtype,
            nodata,
            promote=not same,
            overview=None if k == 0 else k - 1,
            block=first["block"],
        )
        levels.append((array, [float(factor), float(factor), 1.0]))
    if len(paths) == 1:
        origin = str(paths[0].resolve())
    else:
        parents = {p.resolve().parent for p in paths}
        names = " | ".join(p.name if len(parents) == 1 else str(p.resolve()) for p in paths)
        where = f" in {parents.pop()}" if len(parents) == 1 else ""
        origin = f"<geotiff scene: {names}{where}>"
    return GeoScene(origin, levels, geo, nodata[0] if same else None)


def _describe(ds: Any, path: Path) -> dict[str, Any]:
    """The facts of one open rasterio dataset that a scene needs."""
    crs = ds.crs
    epsg = crs.to_epsg() if crs is not None else None
    names = []
    for i, desc in enumerate(ds.descriptions):
        if desc:
            names.append(str(desc))
        elif ds.count == 1:
            names.append(path.stem)
        else:
            names.append(f"band{i + 1}")
    t = ds.transform
    return {
        "count": ds.count,
        "shape": (ds.height, ds.width),
        "transform": (t.a, t.b, t.c, t.d, t.e, t.f),
        "crs": crs.to_wkt() if crs is not None else "",
        "crs_name": f"EPSG:{epsg}" if epsg else "",
        "nodata": tuple(None if v is None else float(v) for v in ds.nodatavals),
        "dtypes": tuple(ds.dtypes),
        "descriptions": tuple(names),
        "overviews": list(ds.overviews(1)),
        "block": ds.block_shapes[0],
    }


def _key(value: float | None) -> Any:
    """A hashable key equal for equal nodata values (NaN == NaN)."""
    return "nan" if value is not None and math.isnan(value) else value


def _promoted(dtypes: Sequence[str]) -> np.dtype[Any]:
    """float32, or float64 when a band would lose precision in float32."""
    wide = {"int32", "uint32", "int64", "uint64", "float64"}
    return np.dtype(np.float64 if wide & set(dtypes) else np.float32)


def write_scene_vrt(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> Path:
    """Write a GDAL VRT that shows the band files of one scene as ONE multi-band raster.

    The VRT is a small XML file naming the files (absolute paths) band by band, with each
    band's dtype, nodata value and description; every reader that opens a path (Dask
    workers, a model server, napari, GDAL tools) then sees the whole scene. Pixels stay in
    the band files.

    Raises:
        ImageSourceError: the files do not share size, CRS and transform, or the geo extra
            is missing.
    """
    from xml.sax.saxutils import escape

    scene = open_geo_scene([Path(p) for p in paths])
    geo = scene.geo
    a, b, c, d, e, f = geo.transform
    bands = scene.levels[0][0].bands
    lines = [
        f'<VRTDataset rasterXSize="{geo.width}" rasterYSize="{geo.height}">',
        f'  <SRS dataAxisToSRSAxisMapping="1,2">{escape(geo.crs)}</SRS>' if geo.crs else "",
        f"  <GeoTransform>{c!r}, {a!r}, {b!r}, {f!r}, {d!r}, {e!r}</GeoTransform>",
    ]
    for i, (path, index) in enumerate(bands):
        kind = _GDAL_TYPES.get(geo.dtypes[i], "Float32")
        nodata = geo.nodata[i]
        lines += [
            f'  <VRTRasterBand dataType="{kind}" band="{i + 1}">',
            f"    <Description>{escape(geo.descriptions[i])}</Description>",
            f"    <NoDataValue>{nodata!r}</NoDataValue>" if nodata is not None else "",
            "    <SimpleSource>",
            f'      <SourceFilename relativeToVRT="0">{escape(path)}</SourceFilename>',
            f"      <SourceBand>{index}</SourceBand>",
            "    </SimpleSource>",
            "  </VRTRasterBand>",
        ]
    lines.append("</VRTDataset>")
    target = Path(out)
    target.write_text("\n".join(line for line in lines if line) + "\n", encoding="utf-8")
    return target


_GDAL_TYPES = {
    "uint8": "Byte",
    "int8": "Int8",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "uint64": "UInt64",
    "int64": "Int64",
    "float32": "Float32",
    "float64": "Float64",
}
