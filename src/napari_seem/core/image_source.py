"""``ImageSource``: a lazily read image with windowed reads in level-0 ``(row, col)`` pixels.

See :mod:`napari_seem.core.io` for the formats, axes, levels and the model mapping; this
module holds the source itself (reads, percentile limits, fingerprints) and its frozen
description. Build one with :func:`napari_seem.core.io.open_image`.

No torch here (tier 1).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "AXIS_LETTERS",
    "PICTURE_SUFFIXES",
    "PLANE_LETTERS",
    "TIFF_SUFFIXES",
    "ImageSource",
    "ImageSourceError",
    "Level",
    "SourceConfig",
    "chunk_shape",
]

AXIS_LETTERS = "tczyx"
PLANE_LETTERS = "tz"
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")
# Plain picture files read whole with imageio (small images: screenshots, photos, figures).
PICTURE_SUFFIXES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".bmp": "bmp"}
# Budget for the percentile subsample: whole planes up to this many pixels are read with a
# stride; larger planes are sampled by chunk-aligned windows so huge images stay cheap.
_SMALL_PLANE_PIXELS = 2048 * 2048
_SAMPLE_PIXELS = 1 << 20
_SAMPLE_WINDOWS = 64
_SAMPLE_PLANES = 4


class ImageSourceError(ValueError):
    """An image cannot be opened or read as asked; the message says what to do."""


@dataclass(frozen=True)
class Level:
    """One resolution level of an image.

    Attributes:
        shape: the level's array shape, in the source's ``axes`` order.
        factors: per-axis downsample factor relative to level 0 (1.0 for level 0 and for
            channel axes), in the source's ``axes`` order.
        array: the lazy array handle (numpy, zarr, dask, tifffile zarr store); indexed only
            with windows.
    """

    shape: tuple[int, ...]
    factors: tuple[float, ...]
    array: Any = field(repr=False, compare=False)


@dataclass(frozen=True)
class SourceConfig:
    """The frozen description of an image source (everything but the array handles).

    Attributes:
        origin: resolved path of a store or file, or ``"<numpy>"`` / ``"<dask>"`` /
            ``"<zarr>"`` / ``"<array>"`` for in-memory sources.
        kind: ``"numpy"``, ``"dask"``, ``"zarr"``, ``"ome-zarr"``, ``"tiff"``, ``"png"``,
            ``"jpeg"``, ``"bmp"`` or ``"array"``.
        axes: axis letters of every level, e.g. ``"tczyx"``.
        axes_from: where ``axes`` came from: ``"given"`` (the caller), ``"metadata"``
            (OME-Zarr / TIFF / picture file) or ``"shape"`` (inferred); not compared.
        bands: the three channel indices mapped to R, G, B by ``read_rgb``.
        level: the default level for reads (0 = full resolution; coarser = faster).
        nodata: value marking missing pixels (NaN and inf are always missing), or None.
        percentiles: the (low, high) percentiles mapped to 0 and 255 for non-uint8 data.
    """

    origin: str
    kind: str
    axes: str
    bands: tuple[int, int, int]
    level: int
    nodata: float | None
    percentiles: tuple[float, float] = (0.5, 99.5)
    axes_from: str = field(default="given", compare=False)


def _check_box(
    box: tuple[int, int, int, int], height: int, width: int, what: str, frame: str
) -> None:
    """Refuse a box ``(row0, col0, row1, col1)`` that is not four integers with
    ``0 <= row0 < row1 <= height`` and ``0 <= col0 < col1 <= width``.

    ``what`` names the box in the message (``"region"``, ``"window"``); ``frame`` says what it
    is outside of (e.g. ``"level 1 of 50 x 60 pixels (or empty)"``).

    Raises:
        ImageSourceError: with that message.
    """
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in box):
        raise ImageSourceError(f"{what} bounds must be integers, got {box}")
    row0, col0, row1, col1 = box
    if not (0 <= row0 < row1 <= height and 0 <= col0 < col1 <= width):
        raise ImageSourceError(
            f"{what} rows [{row0}, {row1}) x cols [{col0}, {col1}) is outside {frame}"
        )


class ImageSource:
    """A lazily read image: frozen ``config`` plus one array handle per level.

    Build it with ``open_image``. Reads are windowed; percentile limits for the model
    mapping are computed on first use and cached in the instance (not module-wide).
    """

    def __init__(self, config: SourceConfig, levels: Sequence[Level]) -> None:
        self.config = config
        self.levels: tuple[Level, ...] = tuple(levels)
        axes = config.axes
        self._y = axes.index("y")
        self._x = axes.index("x")
        self._c: int | None = axes.index("c") if "c" in axes else None
        self._planes = tuple(i for i, a in enumerate(axes) if a in PLANE_LETTERS)
        self._limits: tuple[np.ndarray, np.ndarray] | None = None
        self._lock = threading.Lock()
        self._fingerprint_base: str | None = None

    def __repr__(self) -> str:
        return (
            f"ImageSource({self.config.origin!r}, kind={self.config.kind}, axes={self.axes!r}, "
            f"shape={self.levels[0].shape}, dtype={self.dtype}, levels={len(self.levels)})"
        )

    # ---- shape ---------------------------------------------------------------------------

    @property
    def axes(self) -> str:
        return self.config.axes

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(self.levels[0].array.dtype)

    @property
    def spatial_shape(self) -> tuple[int, int]:
        """``(H, W)`` of level 0."""
        shape = self.levels[0].shape
        return shape[self._y], shape[self._x]

    @property
    def plane_axes(self) -> str:
        """The plane axis letters (``t`` / ``z``) in ``axes`` order; ``""`` for a 2-D image."""
        return "".join(self.axes[i] for i in self._planes)

    @property
    def plane_shape(self) -> tuple[int, ...]:
        """Sizes of the plane axes at level 0 (``()`` for a 2-D image)."""
        return tuple(self.levels[0].shape[i] for i in self._planes)

    @property
    def num_channels(self) -> int:
        return 1 if self._c is None else self.levels[0].shape[self._c]

    @property
    def bands(self) -> tuple[int, int, int]:
        return self.config.bands

    @property
    def level(self) -> int:
        """The default level of reads."""
        return self.config.level

    def level_factors(self, level: int) -> tuple[float, float]:
        """``(fy, fx)``: level-0 pixels per pixel of ``level``."""
        lev = self.get_level(level)
        return lev.factors[self._y], lev.factors[self._x]

    def level_for_step(self, step: int) -> int:
        """The coarsest level whose pixels tile ``step`` level-0 pixels exactly (0 if none):
        reading it and keeping every ``step // factor``-th pixel subsamples by ``step``."""
        level = 0
        for lv in range(len(self.levels)):
            fy, fx = self.level_factors(lv)
            if fy.is_integer() and fx.is_integer() and step % fy == 0 and step % fx == 0:
                level = lv
        return level

    # ---- reads ---------------------------------------------------------------------------

    def level_box(
        self, row0: int, col0: int, row1: int, col1: int, *, level: int | None = None
    ) -> tuple[int, int, int, int]:
        """The window ``(r0, c0, r1, c1)`` in pixels of ``level`` covering a level-0 box.

        The level-0 box ``[row0, row1) x [col0, col1)`` is checked against the image; the
        level window is rounded outwards (floor / ceil) and clipped to the level.
        """
        lv = self.config.level if level is None else level
        lev = self.get_level(lv)
        height, width = self.spatial_shape
        frame = (
            f"the image of {height} x {width} level-0 pixels (or empty); pass "
            f"0 <= row0 < row1 <= {height} and 0 <= col0 < col1 <= {width}"
        )
        _check_box((row0, col0, row1, col1), height, width, "region", frame)
        fy, fx = lev.factors[self._y], lev.factors[self._x]
        lh, lw = lev.shape[self._y], lev.shape[self._x]
        r0 = min(math.floor(row0 / fy), lh - 1)
        c0 = min(math.floor(col0 / fx), lw - 1)
        r1 = max(min(math.ceil(row1 / fy), lh), r0 + 1)
        c1 = max(min(math.ceil(col1 / fx), lw), c0 + 1)
        return r0, c0, r1, c1

    def read_region(
        self,
        row0: int,
        col0: int,
        row1: int,
        col1: int,
        *,
        plane: Sequence[int] = (),
        level: int | None = None,
    ) -> np.ndarray:
        """Read the raw pixels of a level-0 box on one plane.

        Args:
            row0, col0, row1, col1: the box ``[row0, row1) x [col0, col1)`` in level-0 pixels.
            plane: one index per plane axis (``plane_axes``), in level-0 indices.
            level: which level to read (default: the source's ``level``).

        Returns:
            ``(h, w, C)`` array of the source dtype, ``C = num_channels``, in pixels of
            ``level`` (``level_box`` gives the exact window).
        """
        lv = self.config.level if level is None else level
        r0, c0, r1, c1 = self.level_box(row0, col0, row1, col1, level=lv)
        index = self._plane_index(plane, lv)
        return self._read(self.get_level(lv).array, index, slice(r0, r1), slice(c0, c1))

    def read_valid_mask(
        self,
        row0: int,
        col0: int,
        row1: int,
        col1: int,
        *,
        plane: Sequence[int] = (),
        level: int | None = None,
    ) -> np.ndarray:
        """``(h, w)`` bool: True where all three mapped bands hold data (not nodata/NaN/inf)."""
        raw = self.read_region(row0, col0, row1, col1, plane=plane, level=level)
        return self._valid(raw[..., list(self.bands)])

    def read_rgb(
        self,
        row0: int,
        col0: int,
        row1: int,
        col1: int,
        *,
        plane: Sequence[int] = (),
        level: int | None = None,
    ) -> np.ndarray:
        """``(h, w, 3)`` uint8 RGB of a level-0 box, as the model wants it.

        Grey is repeated into three channels, RGB kept, multi-band images take ``bands``.
        uint8 is used as is, bool becomes 0/255, any other dtype is scaled per band from
        the cached source-wide percentiles (``percentile_limits``), so tiles agree. Nodata
        pixels are 0 in all three channels.
        """
        raw = self.read_region(row0, col0, row1, col1, plane=plane, level=level)
        return self._to_rgb(raw)

    def spatial_shape_at(self, level: int) -> tuple[int, int]:
        """``(h, w)`` of ``level`` (``spatial_shape`` for level 0)."""
        shape = self.get_level(level).shape
        return shape[self._y], shape[self._x]

    def read_level_rgb(
        self,
        row0: int,
        col0: int,
        row1: int,
        col1: int,
        *,
        level: int,
        plane: Sequence[int] = (),
    ) -> np.ndarray:
        """``(h, w, 3)`` uint8 RGB of a window given in pixels OF ``level`` (not level 0).

        The same mapping as ``read_rgb``; used by tiled inference on a coarser level, whose
        tiles are cut in that level's pixel grid. ``plane`` holds level-0 plane indices.
        """
        lh, lw = self.spatial_shape_at(level)
        frame = f"level {level} of {lh} x {lw} pixels (or empty)"
        _check_box((row0, col0, row1, col1), lh, lw, "window", frame)
        index = self._plane_index(plane, level)
        raw = self._read(self.get_level(level).array, index, slice(row0, row1), slice(col0, col1))
        return self._to_rgb(raw)

    def _to_rgb(self, raw: np.ndarray) -> np.ndarray:
        """``(h, w, C)`` raw pixels -> ``(h, w, 3)`` uint8 (see ``read_rgb``)."""
        picked = raw[..., list(self.bands)]  # (h, w, 3)
        valid = self._valid(picked)
        if picked.dtype == np.uint8:
            out = picked.copy()
        elif picked.dtype == np.bool_:
            out = picked.astype(np.uint8) * 255
        else:
            lo_all, hi_all = self.percentile_limits()
            lo = lo_all[list(self.bands)]
            hi = hi_all[list(self.bands)]
            span = np.where(hi > lo, hi - lo, 1.0)
            values = picked.astype(np.float64)
            scaled = (values - lo) / span * 255.0
            scaled = np.where(hi > lo, scaled, 0.0)
            scaled = np.nan_to_num(scaled, nan=0.0, posinf=0.0, neginf=0.0)
            out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        out[~valid] = 0
        return np.ascontiguousarray(out)

    def percentile_limits(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel ``(lo, hi)`` float64 arrays of shape ``(C,)`` used by ``read_rgb``.

        Computed once, from valid pixels of a subsample of the whole level-0 image (a strided
        read of small planes; chunk-aligned windows spread over large planes and up to four
        planes of a stack), and cached on this source. A channel without valid samples gets
        ``lo = hi = 0`` (it maps to 0).
        """
        with self._lock:
            if self._limits is None:
                samples = self._subsample(self.levels[0].array)  # (N, C)
                lo = np.zeros(self.num_channels)
                hi = np.zeros(self.num_channels)
                p_lo, p_hi = self.config.percentiles
                for ch in range(self.num_channels):
                    col = samples[:, ch].astype(np.float64)
                    col = col[self._valid_values(col)]
                    if col.size:
                        lo[ch], hi[ch] = np.percentile(col, [p_lo, p_hi])
                self._limits = (lo, hi)
            return self._limits

    def fingerprint(self, *, level: int | None = None) -> str:
        """A stable string identifying the pixels and the mapping, for cache signatures.

        Path (or content hash of a subsample for in-memory arrays; the graph name for dask),
        level shape, dtype and chunking, level, axes, bands, nodata and percentiles.
        """
        lv = self.config.level if level is None else level
        lev = self.get_level(lv)
        if self._fingerprint_base is None:
            self._fingerprint_base = self._data_identity()
        parts = {
            "data": self._fingerprint_base,
            "kind": self.config.kind,
            "axes": self.axes,
            "shape": list(lev.shape),
            "dtype": self.dtype.str,
            "chunks": chunk_shape(lev.array),
            "level": lv,
            "bands": list(self.bands),
            "nodata": None if self.config.nodata is None else repr(self.config.nodata),
            "percentiles": list(self.config.percentiles),
        }
        text = json.dumps(parts, sort_keys=True)
        return f"{self.config.kind}:{hashlib.blake2b(text.encode(), digest_size=16).hexdigest()}"

    def close(self) -> None:
        """Release file handles of TIFF sources (other sources hold none)."""
        for lev in self.levels:
            store = getattr(getattr(lev.array, "store", None), "close", None)
            if self.config.kind == "tiff" and callable(store):
                store()

    # ---- internals -----------------------------------------------------------------------

    def get_level(self, level: int) -> Level:
        """The :class:`Level` number ``level`` (0 = full resolution).

        Raises:
            ImageSourceError: ``level`` is not an integer or does not exist.
        """
        if isinstance(level, bool) or not isinstance(level, (int, np.integer)):
            raise ImageSourceError(f"level must be an integer, got {level!r}")
        if not 0 <= level < len(self.levels):
            raise ImageSourceError(
                f"level {level} does not exist; this image has levels 0..{len(self.levels) - 1}"
            )
        return self.levels[level]

    def _plane_index(self, plane: Sequence[int], level: int) -> dict[int, int]:
        """Map level-0 plane indices to ``{axis: index}`` at ``level``."""
        plane = tuple(plane)
        if len(plane) != len(self._planes):
            if self._planes:
                hint = f"pass plane= with {len(self._planes)} index(es) for axes "
                hint += f"{self.plane_axes!r} of sizes {self.plane_shape}"
            else:
                hint = "this is a single-plane image: pass plane=()"
            raise ImageSourceError(f"plane {plane} does not fit the image: {hint}")
        lev = self.get_level(level)
        out: dict[int, int] = {}
        for ax, idx, size in zip(self._planes, plane, self.plane_shape, strict=True):
            if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)):
                raise ImageSourceError(f"plane indices must be integers, got {plane}")
            if not 0 <= idx < size:
                raise ImageSourceError(
                    f"plane index {idx} for axis {self.axes[ax]!r} is out of range; "
                    f"use 0..{size - 1}"
                )
            out[ax] = min(int(idx // lev.factors[ax]), lev.shape[ax] - 1)
        return out

    def _read(self, array: Any, plane: dict[int, int], rows: slice, cols: slice) -> np.ndarray:
        """Read ``array[plane, rows, cols, :]`` as ``(h, w, C)``."""
        index: list[int | slice] = []
        for ax in range(len(self.axes)):
            if ax in plane:
                index.append(plane[ax])
            elif ax == self._y:
                index.append(rows)
            elif ax == self._x:
                index.append(cols)
            else:
                index.append(slice(None))
        data = np.asarray(array[tuple(index)])
        kept = [ax for ax in range(len(self.axes)) if ax not in plane]
        order = [kept.index(self._y), kept.index(self._x)]
        if self._c is not None:
            order.append(kept.index(self._c))
            return data.transpose(order)
        return data.transpose(order)[..., None]

    def _valid_values(self, values: np.ndarray) -> np.ndarray:
        """Elementwise True where ``values`` is data (finite and not ``nodata``)."""
        valid = np.isfinite(values) if values.dtype.kind in "fc" else np.ones(values.shape, bool)
        if self.config.nodata is not None and not math.isnan(self.config.nodata):
            valid &= values != self.config.nodata
        return valid

    def _valid(self, picked: np.ndarray) -> np.ndarray:
        """``(h, w)`` True where every channel of ``(h, w, k)`` holds data."""
        return np.asarray(self._valid_values(picked).all(axis=-1))

    def _subsample(self, array: Any) -> np.ndarray:
        """``(N, C)`` pixels sampled across the whole level (see ``percentile_limits``)."""
        shape = self.levels[0].shape
        height, width = shape[self._y], shape[self._x]
        plane_sizes = [shape[ax] for ax in self._planes]
        n_planes = math.prod(plane_sizes)
        picks = np.unique(np.linspace(0, n_planes - 1, min(n_planes, _SAMPLE_PLANES)).round())
        chunks = chunk_shape(array)
        blocks: list[np.ndarray] = []
        for flat in picks.astype(int):
            multi = np.unravel_index(flat, plane_sizes) if plane_sizes else ()
            plane = {ax: int(i) for ax, i in zip(self._planes, multi, strict=True)}
            if height * width <= _SMALL_PLANE_PIXELS:
                step = max(1, math.ceil(math.sqrt(height * width / _SAMPLE_PIXELS)))
                block = self._read(array, plane, slice(None, None, step), slice(None, None, step))
                blocks.append(block.reshape(-1, block.shape[-1]))
                continue
            grid = max(1, int(math.sqrt(_SAMPLE_WINDOWS / len(picks))))
            win = max(16, int(math.sqrt(_SAMPLE_PIXELS / (len(picks) * grid * grid))))
            cy = chunks[self._y] if chunks else win
            cx = chunks[self._x] if chunks else win
            for r in np.linspace(0, height - win, grid).astype(int):
                for c in np.linspace(0, width - win, grid).astype(int):
                    # Start at a chunk boundary so each window decodes as few chunks as possible.
                    r0 = min((r // cy) * cy, max(0, height - win))
                    c0 = min((c // cx) * cx, max(0, width - win))
                    block = self._read(array, plane, slice(r0, r0 + win), slice(c0, c0 + win))
                    blocks.append(block.reshape(-1, block.shape[-1]))
        return np.concatenate(blocks, axis=0)

    def _data_identity(self) -> str:
        on_disk = ("zarr", "ome-zarr", "tiff", *PICTURE_SUFFIXES.values())
        if self.config.kind in on_disk and not self.config.origin.startswith("<"):
            return self.config.origin
        array = self.levels[0].array
        name = getattr(array, "name", None)
        if self.config.kind == "dask" and isinstance(name, str):
            return f"dask:{name}"
        if isinstance(array, np.ndarray):
            k = max(2, int(65536 ** (1.0 / max(array.ndim, 1))))
            sample = array[tuple(slice(None, None, max(1, n // k)) for n in array.shape)]
        else:
            sample = self._subsample(array)
        digest = hashlib.blake2b(np.ascontiguousarray(sample).tobytes(), digest_size=16)
        return f"content:{digest.hexdigest()}"


def chunk_shape(array: Any) -> list[int] | None:
    """Chunk sizes per axis (first chunk for dask), or None for unchunked arrays."""
    chunks = getattr(array, "chunks", None)
    if chunks is None:
        return None
    out = []
    for c in chunks:
        out.append(int(c[0]) if isinstance(c, tuple) else int(c))
    return out
