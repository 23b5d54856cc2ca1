"""``open_image``: open a numpy, zarr, OME-Zarr, dask or TIFF image as an :class:`ImageSource`.

Finds the levels and their downsample factors (OME-Zarr multiscales, pyramidal TIFF),
reads axis letters from the metadata (or infers them from the shape) and checks bands and
level; no pixels are read here. See :mod:`napari_seem.core.io` for the conventions.

No torch here (tier 1).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_seem.core import geo_raster
from napari_seem.core.geo_meta import resolve_bands
from napari_seem.core.image_source import (
    AXIS_LETTERS,
    PICTURE_SUFFIXES,
    PLANE_LETTERS,
    TIFF_SUFFIXES,
    ImageSource,
    ImageSourceError,
    Level,
    SourceConfig,
)

__all__ = ["ambiguous_axes", "describe_axes", "open_image"]


def open_image(
    source: Any,
    *,
    axes: str | None = None,
    bands: Sequence[int | str] | None = None,
    level: int = 0,
    nodata: float | None = None,
    percentiles: tuple[float, float] = (0.5, 99.5),
    strict_axes: bool = False,
) -> ImageSource:
    """Open an image lazily.

    Args:
        source: a numpy array; a zarr array or OME-Zarr multiscale group; a dask array; a
            path (str / PathLike) to a zarr or OME-Zarr directory (v2 or v3), a TIFF file,
            or a PNG / JPEG / BMP picture (read whole with imageio: grey ``yx`` or colour
            ``yxc``). A GeoTIFF / COG / ``.vrt`` path, or a list of the raster paths of one
            scene, is read by window through rasterio (the ``geo`` extra) as ``yxc`` with
            overviews as levels; the source's ``geo`` is its georeferencing
            (:mod:`napari_seem.core.geo_raster`).
        axes: axis letters from ``tczyx`` (one per dimension, ``y`` and ``x`` required),
            e.g. ``"cyx"`` for a band-first raster. Default: OME-Zarr / TIFF metadata, else
            inferred from the shape: 2-D ``yx``; a last axis of at most 16 is ``c``
            (``yxc``, ``zyxc``, ``tzyxc``); otherwise ``zyx``, ``czyx``, ``tczyx``. Band-first
            multi-band rasters ``(C, H, W)`` need ``axes="cyx"``.
        bands: three channel indices for R, G, B (repeats allowed); band names
            (descriptions) of a georeferenced raster work too. Default: ``(0, 0, 0)``
            for grey, ``(0, 1, 1)`` for two channels, the first three otherwise.
        level: the default level for reads (coarser = faster); results stay in level-0 pixels.
        nodata: pixel value meaning "no data" (NaN / inf are always no data); default for a
            georeferenced raster: the file's.
        percentiles: low / high percentiles mapped to 0 / 255 when scaling non-uint8 data.
        strict_axes: refuse a shape whose axes cannot be told apart without ``axes`` (see
            :func:`ambiguous_axes`, e.g. a ``(3, H, W)`` array: three colour channels or three
            z planes) instead of guessing. The command line always passes True.

    Raises:
        ImageSourceError: missing file, unknown format, unsupported axes, wrong bands or
            level, or (with ``strict_axes``) an ambiguous shape without ``axes``.
    """
    geo_files = geo_raster.geo_paths(source)
    scene = geo_raster.open_geo_scene(geo_files) if geo_files is not None else None
    if scene is not None:
        origin, kind, levels = scene.origin, "geotiff", scene.levels
        meta_axes: str | None = "yxc"
        nodata = scene.nodata if nodata is None else nodata
        try:
            bands = resolve_bands(bands, scene.geo.descriptions)
        except ValueError as exc:
            raise ImageSourceError(f"{origin}: {exc}") from None
    elif isinstance(source, (str, os.PathLike)):
        origin, kind, levels, meta_axes = _open_path(Path(source))
    else:
        origin, kind, levels, meta_axes = _open_object(source)
    if not levels:
        raise ImageSourceError(f"{origin}: no image arrays found")
    shape0 = tuple(int(n) for n in levels[0][0].shape)
    axes_from = "given"
    if axes is None:
        axes_from = "metadata" if meta_axes is not None else "shape"
        axes = meta_axes if meta_axes is not None else _infer_axes(shape0)
        guessed = axes_from == "shape" or (kind == "tiff" and _tiff_guessed(origin))
        if strict_axes and guessed and _is_ambiguous(shape0):
            raise ImageSourceError(ambiguous_axes(origin, shape0))
    axes = _check_axes(axes, shape0)
    built = _build_levels(levels, axes, origin)
    num_channels = shape0[axes.index("c")] if "c" in axes else 1
    p_lo, p_hi = (float(p) for p in percentiles)
    if not 0.0 <= p_lo < p_hi <= 100.0:
        raise ImageSourceError(
            f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}"
        )
    config = SourceConfig(
        origin=origin,
        kind=kind,
        axes=axes,
        bands=_check_bands(bands, num_channels),
        level=level,
        nodata=None if nodata is None else float(nodata),
        percentiles=(p_lo, p_hi),
        axes_from=axes_from,
    )
    out = (
        ImageSource(config, built)
        if scene is None
        else geo_raster.GeoImageSource(config, built, scene.geo)
    )
    out.get_level(level)  # validate now, not on first read
    return out


# Raw level list before axes are known: (array, scale-or-None).
_RawLevels = list[tuple[Any, "list[float] | None"]]


def _open_path(path: Path) -> tuple[str, str, _RawLevels, str | None]:
    if not path.exists():
        raise ImageSourceError(
            f"{path}: no such file or directory; check the path (zarr stores are directories, "
            f"TIFF files end in .tif / .tiff)"
        )
    origin = str(path.resolve())
    if path.is_file():
        if path.name.lower().endswith(TIFF_SUFFIXES):
            return (origin, "tiff", *_open_tiff(path))
        picture = PICTURE_SUFFIXES.get(path.suffix.lower())
        if picture is not None:
            return (origin, picture, *_open_picture(path))
        raise ImageSourceError(
            f"{path}: unknown image format; open TIFF files (.tif/.tiff), PNG / JPEG / BMP "
            f"pictures or zarr / OME-Zarr directories, or load the image yourself and pass a "
            f"numpy or dask array"
        )
    markers = (".zarray", ".zgroup", ".zattrs", "zarr.json")
    if not any((path / m).exists() for m in markers):
        raise ImageSourceError(
            f"{path}: a directory that is not a zarr store (no .zarray, .zgroup or zarr.json); "
            f"pass the path of a zarr array or OME-Zarr image"
        )
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for broken stores
        raise ImageSourceError(f"{path}: cannot open as zarr ({exc})") from exc
    if isinstance(node, zarr.Group):
        return (origin, "ome-zarr", *_open_multiscales(node, origin))
    return origin, "zarr", [(node, None)], None


def _open_object(source: Any) -> tuple[str, str, _RawLevels, str | None]:
    if isinstance(source, np.ndarray):
        return "<numpy>", "numpy", [(source, None)], None
    module = type(source).__module__
    if module.startswith("zarr"):
        import zarr

        if isinstance(source, zarr.Group):
            return ("<zarr>", "ome-zarr", *_open_multiscales(source, "<zarr group>"))
        return _zarr_origin(source), "zarr", [(source, None)], None
    if module.startswith("dask") and hasattr(source, "compute"):
        return "<dask>", "dask", [(source, None)], None
    if hasattr(source, "shape") and hasattr(source, "dtype") and hasattr(source, "__getitem__"):
        return "<array>", "array", [(source, None)], None
    if isinstance(source, (list, tuple)):
        return "<numpy>", "numpy", [(np.asarray(source), None)], None
    raise ImageSourceError(
        f"cannot open a {type(source).__name__}; pass a numpy / zarr / dask array or the path "
        f"of a zarr, OME-Zarr or TIFF image"
    )


def _zarr_origin(array: Any) -> str:
    """A path for zarr arrays on a local store, else ``"<zarr>"`` (content-hashed later)."""
    root = getattr(getattr(array, "store", None), "root", None)
    if root is None:
        return "<zarr>"
    return str(Path(str(root)).resolve() / str(getattr(array, "path", "")))


def _open_multiscales(group: Any, origin: str) -> tuple[_RawLevels, str | None]:
    """Levels and axes of an OME-Zarr image group (NGFF 0.4 or 0.5)."""
    attrs = dict(group.attrs)
    ome = attrs.get("ome")
    if isinstance(ome, dict) and "multiscales" in ome:  # NGFF 0.5: under "ome"
        multiscales = ome["multiscales"]
    elif "multiscales" in attrs:  # NGFF 0.4 and earlier
        multiscales = attrs["multiscales"]
    else:
        raise ImageSourceError(
            f"{origin}: a zarr group without OME-Zarr 'multiscales' metadata; pass the path "
            f"of an array inside it"
        )
    if not multiscales or not multiscales[0].get("datasets"):
        raise ImageSourceError(f"{origin}: the 'multiscales' metadata lists no datasets")
    first = multiscales[0]
    levels: _RawLevels = []
    for ds in first["datasets"]:
        try:
            array = group[ds["path"]]
        except KeyError as exc:
            raise ImageSourceError(
                f"{origin}: multiscales dataset {ds['path']!r} is missing from the store"
            ) from exc
        scale = None
        for tr in ds.get("coordinateTransformations", []):
            if tr.get("type") == "scale":
                scale = [float(s) for s in tr["scale"]]
        levels.append((array, scale))
    axes = _ngff_axes(first.get("axes"))
    return levels, axes


def _ngff_axes(axes: Any) -> str | None:
    if not axes:
        return None
    letters = []
    for ax in axes:
        name = (ax.get("name", "") if isinstance(ax, dict) else str(ax)).lower()
        kind = ax.get("type", "") if isinstance(ax, dict) else ""
        if name in AXIS_LETTERS:
            letters.append(name)
        elif kind == "channel":
            letters.append("c")
        elif kind == "time":
            letters.append("t")
        else:
            return None  # unknown naming: fall back to the caller's axes or inference
    return "".join(letters)


def _open_tiff(path: Path) -> tuple[_RawLevels, str | None]:
    import tifffile
    import zarr

    try:
        with tifffile.TiffFile(path) as tif:
            tiff_axes = tif.series[0].axes
        store = tifffile.imread(path, aszarr=True)
        node = zarr.open(store, mode="r")
    except Exception as exc:  # tifffile raises several types for broken files
        raise ImageSourceError(f"{path}: cannot read as TIFF ({exc})") from exc
    if isinstance(node, zarr.Group):  # pyramidal TIFF: levels "0", "1", ...
        keys = sorted((k for k in node.array_keys()), key=lambda k: int(k) if k.isdigit() else 0)
        levels: _RawLevels = [(node[k], None) for k in keys]
    else:
        levels = [(node, None)]
    return levels, _tiff_axes(tiff_axes)


def _open_picture(path: Path) -> tuple[_RawLevels, str | None]:
    """A PNG / JPEG / BMP file as one in-memory level: ``(H, W)`` grey or ``(H, W, C)``."""
    import imageio.v3 as iio

    try:
        array = np.asarray(iio.imread(path))
    except Exception as exc:  # imageio raises several types for broken files
        raise ImageSourceError(f"{path}: cannot read as a picture ({exc})") from exc
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3):
        raise ImageSourceError(
            f"{path}: a picture of shape {array.shape} (animated?); save one frame, or a "
            f"stack as TIFF / zarr"
        )
    return [(array, None)], "yx" if array.ndim == 2 else "yxc"


def _tiff_guessed(path: str) -> bool:
    """Whether a TIFF's first axis is planar colour samples (``S``) or an unnamed stack
    (``Q`` / ``I``): tifffile writes any ``(3, H, W)`` array one of those ways, so the file
    does not tell colour from planes (ImageJ / OME ``C``, ``Z``, ``T`` axes do)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return tif.series[0].axes[:1] in ("S", "Q", "I")


def _is_ambiguous(shape: tuple[int, ...]) -> bool:
    """A 3-D shape whose first axis may be colour channels or planes: 3 or 4 entries in
    front of two large ones."""
    return len(shape) == 3 and shape[0] in (3, 4) and min(shape[1:]) > 16


def ambiguous_axes(origin: str, shape: tuple[int, ...]) -> str:
    """The message refusing an ambiguous ``shape`` (see ``open_image(strict_axes=True)``)."""
    return (
        f"{origin}: shape {shape} is ambiguous: {shape[0]} colour channels or {shape[0]} "
        f"z planes? Pass --axes cyx (channels) or --axes zyx (planes), or axes= in Python"
    )


def describe_axes(source: ImageSource) -> str:
    """One line saying how ``source`` was read: its shape, axes and where they came from,
    e.g. ``img.tif: shape (5, 200, 200) read as axes 'zyx' (5 z planes of 200 x 200, grey;
    inferred from the shape; --axes changes it)``."""
    level0 = source.levels[0].shape
    parts = [f"{n} {a} planes" for a, n in zip(source.plane_axes, source.plane_shape, strict=True)]
    height, width = source.spatial_shape
    colour = "grey" if source.num_channels == 1 else f"{source.num_channels} channels"
    what = ", ".join([*parts, f"{height} x {width}"]) + f", {colour}"
    where = {
        "given": "as given",
        "metadata": "from the file's metadata",
        "shape": "inferred from the shape",
    }[source.config.axes_from]
    return (
        f"{source.config.origin}: shape {tuple(level0)} read as axes {source.axes!r} "
        f"({what}; {where}; --axes changes it)"
    )


def _tiff_axes(tiff_axes: str) -> str | None:
    mapping = {"Y": "y", "X": "x", "S": "c", "C": "c", "Z": "z", "T": "t"}
    out = []
    free = [a for a in PLANE_LETTERS if a.upper() not in tiff_axes]
    for letter in tiff_axes:
        if letter in mapping:
            out.append(mapping[letter])
        elif free:  # unnamed stacking axis (Q, I, ...): a plane axis
            out.append(free.pop())
        else:
            return None
    text = "".join(out)
    return text if len(set(text)) == len(text) else None


def _infer_axes(shape: tuple[int, ...]) -> str:
    ndim = len(shape)
    last_small = ndim >= 3 and shape[-1] <= 16
    by_ndim = {2: ("yx", "yx"), 3: ("yxc", "zyx"), 4: ("zyxc", "czyx"), 5: ("tzyxc", "tczyx")}
    if ndim not in by_ndim:
        raise ImageSourceError(
            f"cannot infer axes of a {ndim}-D array of shape {shape}; pass axes= with letters "
            f"from {AXIS_LETTERS!r}, e.g. 'tczyx'"
        )
    return by_ndim[ndim][0 if last_small else 1]


def _check_axes(axes: str, shape: tuple[int, ...]) -> str:
    if not isinstance(axes, str):
        raise ImageSourceError(f"axes must be a string such as 'yx' or 'cyx', got {axes!r}")
    axes = axes.lower()
    bad = sorted(set(axes) - set(AXIS_LETTERS))
    if bad:
        raise ImageSourceError(
            f"unsupported axes {axes!r}: letters {bad} are not among {AXIS_LETTERS!r} "
            f"(t time, c channel/band, z depth, y row, x column)"
        )
    if len(set(axes)) != len(axes) or "y" not in axes or "x" not in axes:
        raise ImageSourceError(
            f"unsupported axes {axes!r}: each letter at most once, and both 'y' and 'x' needed"
        )
    if len(axes) != len(shape):
        raise ImageSourceError(
            f"axes {axes!r} name {len(axes)} dimensions but the array has shape {shape}"
        )
    return axes


def _check_bands(bands: Sequence[int | str] | None, num_channels: int) -> tuple[int, int, int]:
    if bands is None:
        if num_channels == 1:
            return (0, 0, 0)
        if num_channels == 2:
            return (0, 1, 1)
        return (0, 1, 2)
    picked = tuple(bands)
    if len(picked) != 3:
        raise ImageSourceError(
            f"bands must name exactly 3 channels (for R, G, B; repeats allowed), got {picked}"
        )
    for b in picked:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)):
            raise ImageSourceError(f"bands must be integer channel indices, got {picked}")
        if not 0 <= b < num_channels:
            raise ImageSourceError(
                f"band index {b} is out of range; this image has {num_channels} channel(s), "
                f"use 0..{num_channels - 1}"
            )
    return (int(picked[0]), int(picked[1]), int(picked[2]))


def _build_levels(raw: _RawLevels, axes: str, origin: str) -> list[Level]:
    shape0 = tuple(int(n) for n in raw[0][0].shape)
    scale0 = raw[0][1]
    levels = []
    for i, (array, scale) in enumerate(raw):
        shape = tuple(int(n) for n in array.shape)
        if len(shape) != len(axes):
            raise ImageSourceError(
                f"{origin}: level {i} has shape {shape}, which does not fit axes {axes!r}"
            )
        factors = []
        for ax, letter in enumerate(axes):
            if letter == "c":
                if shape[ax] != shape0[ax]:
                    raise ImageSourceError(f"{origin}: level {i} changes the channel count")
                factors.append(1.0)
            elif scale is not None and scale0 is not None and scale0[ax] > 0:
                factors.append(scale[ax] / scale0[ax])
            else:  # no metadata: the ratio of sizes
                factors.append(shape0[ax] / shape[ax])
        levels.append(Level(shape=shape, factors=tuple(factors), array=array))
    return levels
