"""Open image sessions and uploaded in-memory images of one engine.

A :class:`Session` is one image plane opened at one pyramid level, tiled for the model,
with its own :class:`~napari_seem.predict.feature_cache.FeatureCache` (memory, and a zarr
store on disk when the engine has a cache folder) and the last mask per ``object_id``.
The :class:`SessionTable` opens, looks up and closes sessions and keeps the uploads;
:func:`encoded` gives a tile's features from a session's cache (encoding on a miss).

Coordinates: boxes come in as level-0 ``(row0, col0, row1, col1)`` pixels, max exclusive
(:func:`check_box`); :func:`region_tiles` maps one onto the session's working level and
its tiles.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from napari_seem.core.io import ImageSource, ImageSourceError, open_image
from napari_seem.core.results import ObjectMask
from napari_seem.core.tiling import Tile, TileGrid
from napari_seem.engine.cache_budget import CacheBudget
from napari_seem.engine.errors import (
    InvalidRequestError,
    StaleCacheRefusedError,
    TooManySessionsError,
    UnknownSessionError,
)
from napari_seem.engine.levels import LevelFrame
from napari_seem.engine.uploads import UploadReservation, UploadStore
from napari_seem.predict.feature_cache import CacheSignature, FeatureCache, StaleCacheError

if TYPE_CHECKING:
    from napari_seem.predict.predictor import EncodedImage, SeemPredictor

__all__ = [
    "DEFAULT_MAX_UPLOAD_BYTES",
    "ImageInfo",
    "Session",
    "SessionInfo",
    "SessionTable",
    "Weights",
    "check_box",
    "encoded",
    "region_tiles",
]

DEFAULT_MAX_UPLOAD_BYTES = 512 * 1024**2
"""Default budget of all uploaded in-memory images held at once (uncompressed bytes)."""

_UPLOAD_KINDS = "biuf"  # bool, signed / unsigned integers, floats

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class SessionInfo:
    """What a client needs to know about an open session.

    Attributes:
        session_id: the id to pass to later calls.
        image_shape: level-0 ``(H, W)``.
        grid_shape: tile rows and columns (tiles of the working level).
        tile_size: core size ``(th, tw)`` of the tiles, in pixels of the working level.
        halo: context pixels around each core (working level).
        level: the pyramid level inference runs on (0 = full resolution).
        level_shape: ``(h, w)`` of that level.
    """

    session_id: str
    image_shape: tuple[int, int]
    grid_shape: tuple[int, int]
    tile_size: tuple[int, int]
    halo: int
    level: int = 0
    level_shape: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class ImageInfo:
    """An uploaded in-memory image: its id, array ``shape``, ``dtype`` name, ``axes``
    letters (as :func:`napari_seem.core.io.open_image` read them) and ``nbytes``."""

    image_id: str
    shape: tuple[int, ...]
    dtype: str
    axes: str
    nbytes: int


@dataclass
class Session:
    """One open image plane. Job runners read it; only the engine changes it.

    Attributes:
        session_id: its id.
        source: the lazily read image.
        plane: level-0 plane indices of a stack (``()`` for 2-D).
        frame: the working level relative to level 0 (identity at level 0).
        grid: the tiles, in pixels of the working level (``frame.level_shape``).
        cache: encoded tiles, keyed by ``tile.index``.
        history: the last answer per ``object_id``, on the working level's grid.
        image_id: the uploaded image it was opened on, if any.
        cache_path: the disk cache folder given to ``open_session`` (None: the default).
        budget: the engine's bound over all sessions' feature caches (None: none).
    """

    session_id: str
    source: ImageSource
    plane: tuple[int, ...]
    frame: LevelFrame
    grid: TileGrid
    cache: FeatureCache
    history: dict[str, ObjectMask] = field(default_factory=dict)
    image_id: str | None = None
    cache_path: Path | None = None
    budget: CacheBudget | None = None


@dataclass(frozen=True)
class Weights:
    """What a feature cache is signed with: the model ``variant``, the ``checkpoint`` id
    of the weights in use and whether a fine-tuned file is applied (``tuned``: its
    features get disk stores of their own)."""

    variant: str
    checkpoint: str
    tuned: bool = False


class SessionTable:
    """The open sessions and uploaded images of one engine (thread-safe).

    Args:
        tile: outer size of an interior tile (the model input), working-level pixels.
        halo: context pixels on each side of a tile's core.
        cache_bytes: memory budget of each session's feature cache.
        cache_dir: folder of the default disk feature caches (None: memory only).
        max_upload_bytes: most bytes of uploaded images held (or reserved) at once,
            counted while any session holds the array.
        max_sessions: most sessions open at once.
        cache_bytes_total: memory budget of all sessions' feature caches together.
    """

    def __init__(
        self,
        *,
        tile: int,
        halo: int,
        cache_bytes: int,
        cache_dir: Path | None,
        max_upload_bytes: int,
        max_sessions: int = 64,
        cache_bytes_total: int = 4 * 1024**3,
    ) -> None:
        self.tile, self.halo = tile, halo
        self.cache_bytes = min(int(cache_bytes), int(cache_bytes_total))
        self.cache_dir, self.max_upload_bytes = cache_dir, max_upload_bytes
        self.max_sessions = int(max_sessions)
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self.uploads = UploadStore(max_upload_bytes)
        self.budget = CacheBudget(cache_bytes_total, self._caches)

    def _caches(self) -> Iterator[tuple[str, FeatureCache]]:
        with self._lock:
            sessions = list(self._sessions.values())
        return ((s.session_id, s.cache) for s in sessions)

    # ------------------------------------------------------------------ uploads

    def add_image(
        self,
        array: npt.ArrayLike,
        *,
        axes: str | None = None,
        reservation: UploadReservation | None = None,
    ) -> str:
        """Keep an in-memory image; see :meth:`napari_seem.engine.Engine.add_image`."""
        data = np.asarray(array)
        if data.dtype.kind not in _UPLOAD_KINDS or not 2 <= data.ndim <= 5:
            raise InvalidRequestError(
                f"an uploaded image must be a 2-D to 5-D bool, integer or float array; got "
                f"{data.dtype} with shape {data.shape}"
            )
        try:
            source = open_image(data, axes=axes)
        except ImageSourceError as exc:
            raise InvalidRequestError(f"cannot use the uploaded image: {exc}") from exc
        return self.uploads.add(data, source.axes, reservation)

    def image_info(self, image_id: str) -> ImageInfo:
        """Shape, dtype and axes of an uploaded image."""
        data, axes = self.uploaded(image_id)
        return ImageInfo(image_id, tuple(data.shape), data.dtype.name, axes, data.nbytes)

    def delete_image(self, image_id: str) -> None:
        """Forget an uploaded image (its memory stays counted until the sessions opened
        on it are closed)."""
        self.uploads.delete(image_id)

    def uploaded(self, image_id: str) -> tuple[np.ndarray, str]:
        """The array of an uploaded image and its axis letters (read only)."""
        upload = self.uploads.get(image_id)
        return upload.array, upload.axes

    def image_ids(self) -> list[str]:
        """The uploads a client can still use, oldest first."""
        return self.uploads.ids()

    # ------------------------------------------------------------------ sessions

    def open(
        self,
        source: Any,
        *,
        image_id: str | None,
        bands: tuple[int, int, int] | None,
        level: int,
        plane: tuple[int, ...],
        cache_path: str | Path | None,
        weights: Weights,
    ) -> str:
        """Open a session; see :meth:`napari_seem.engine.Engine.open_session`."""
        if (source is None) == (image_id is None):
            raise InvalidRequestError(
                "open_session takes exactly one of an image (source / path) and image_id"
            )
        self._check_room()
        axes = None
        if image_id is not None:
            source, axes = self.uploaded(image_id)
        if isinstance(level, bool) or not isinstance(level, int | np.integer) or level < 0:
            raise InvalidRequestError(f"level must be a non-negative integer; got {level!r}")
        try:
            image = open_image(source, axes=axes, bands=bands, level=int(level))
        except ImageSourceError as exc:
            raise InvalidRequestError(f"cannot open the image: {exc}") from exc
        plane = tuple(int(p) for p in plane)
        if len(plane) != len(image.plane_shape) or any(
            not 0 <= p < n for p, n in zip(plane, image.plane_shape, strict=False)
        ):
            image.close()
            raise InvalidRequestError(
                f"plane={plane} does not index the image's plane axes "
                f"{image.plane_axes!r} of sizes {image.plane_shape}: give one index per axis"
            )
        frame = LevelFrame(
            int(level),
            image.spatial_shape,
            image.spatial_shape_at(level),
            image.level_factors(level),
        )
        grid = TileGrid.for_model(frame.level_shape, model_input=self.tile, halo=self.halo)
        explicit = None if cache_path is None else Path(cache_path)
        try:
            cache = self._new_cache(image, int(level), plane, grid, explicit, weights)
        except StaleCacheError as exc:
            image.close()
            raise StaleCacheRefusedError(
                f"{exc} (the engine refuses a stale feature cache rather than use it)"
            ) from None
        except (ValueError, OSError) as exc:
            image.close()
            raise InvalidRequestError(f"cannot use the feature cache: {exc}") from None
        session_id = uuid.uuid4().hex
        session = Session(
            session_id,
            image,
            plane,
            frame,
            grid,
            cache,
            image_id=image_id,
            cache_path=explicit,
            budget=self.budget,
        )
        try:
            if image_id is not None:
                self.uploads.hold(image_id, session_id)
            with self._lock:
                self._check_room(locked=True)
                self._sessions[session_id] = session
        except Exception:
            if image_id is not None:
                self.uploads.let_go(image_id, session_id)
            image.close()
            raise
        self.budget.touch(session_id)
        return session_id

    def _check_room(self, *, locked: bool = False) -> None:
        """Refuse a new session when ``max_sessions`` are open."""
        count = len(self._sessions)
        if not locked:
            with self._lock:
                count = len(self._sessions)
        if count >= self.max_sessions:
            raise TooManySessionsError(
                f"{count} sessions are open, the most this server keeps "
                f"(max_sessions={self.max_sessions}): close sessions you no longer use "
                "(close_session / DELETE /sessions/{id}) and try again"
            )

    def get(self, session_id: str) -> Session:
        """The open session.

        Raises:
            UnknownSessionError: ``session_id`` is not open.
        """
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            raise UnknownSessionError(_unknown_session(session_id))
        return session

    def info(self, session_id: str) -> SessionInfo:
        """Image shape and tiling of an open session."""
        session = self.get(session_id)
        size = session.grid.tile_size
        assert not isinstance(size, int)
        return SessionInfo(
            session_id,
            session.frame.image_shape,
            session.grid.grid_shape,
            size,
            session.grid.halo,
            session.frame.level,
            session.frame.level_shape,
        )

    def pop(self, session_id: str) -> Session:
        """Remove the session from the table (the caller closes it with :meth:`close`)."""
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is None:
            raise UnknownSessionError(_unknown_session(session_id))
        return session

    def close(self, session: Session) -> None:
        """Drop the session's features from memory, close its image and let go of its
        upload (a deleted upload no session holds is freed)."""
        session.cache.clear_memory()
        session.source.close()
        self.budget.forget(session.session_id)
        if session.image_id is not None:
            self.uploads.let_go(session.image_id, session.session_id)

    @property
    def session_ids(self) -> list[str]:
        """The ids of the open sessions."""
        with self._lock:
            return list(self._sessions)

    def clear_images(self) -> None:
        """Forget every upload."""
        self.uploads.clear()

    # ------------------------------------------------------------------ feature caches

    def renew_caches(self, weights: Weights) -> None:
        """Give every session a fresh cache under ``weights`` (its features were computed
        with other weights). Caller holds the engine's model lock."""
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            session.cache.clear_memory()
            args = (session.source, session.frame.level, session.plane, session.grid)
            try:
                # a folder the user named holds features of the base weights only
                session.cache = self._new_cache(
                    *args,
                    session.cache_path,
                    weights,
                    memory_only=weights.tuned and session.cache_path is not None,
                )
            except (StaleCacheError, ValueError, OSError):
                session.cache = self._new_cache(*args, None, weights, memory_only=True)

    def _new_cache(
        self,
        image: ImageSource,
        level: int,
        plane: tuple[int, ...],
        grid: TileGrid,
        cache_path: Path | None,
        weights: Weights,
        *,
        memory_only: bool = False,
    ) -> FeatureCache:
        """A feature cache under ``weights`` (raises StaleCacheError for a disk store made
        for other weights, tiling or image)."""
        size = grid.tile_size
        assert not isinstance(size, int)  # normalised by TileGrid
        signature = CacheSignature(
            variant=weights.variant,
            checkpoint=weights.checkpoint,
            tile_size=size,
            halo=grid.halo,
            source=f"{image.fingerprint(level=level)}:plane={list(plane)}",
            level=level,
        )
        disk = None
        if not memory_only:
            disk = cache_path or self._default_cache_path(image, level, plane, weights)
        return FeatureCache(signature, memory_budget_bytes=self.cache_bytes, disk_path=disk)

    def _default_cache_path(
        self, image: ImageSource, level: int, plane: tuple[int, ...], weights: Weights
    ) -> Path | None:
        """One store per image, level, plane and bands under ``cache_dir``.

        A path-based image is named by its path (so a rewritten image or another model
        meets its old store and is refused); an in-memory one by its content.
        """
        if self.cache_dir is None:
            return None
        origin = image.config.origin
        identity = origin if not origin.startswith("<") else image.fingerprint(level=0)
        key = f"{identity}|level={level}|plane={list(plane)}|bands={list(image.bands)}"
        if weights.tuned:  # fine-tuned weights: features of their own
            key += f"|weights={weights.checkpoint}"
        digest = hashlib.blake2b(key.encode(), digest_size=10).hexdigest()
        name = "memory" if origin.startswith("<") else Path(origin).name[:40]
        return self.cache_dir / f"{name}-{digest}.zarr"


def encoded(predictor: SeemPredictor, session: Session, tile: Tile) -> EncodedImage:
    """The tile's features from the session's cache, else encoded now (and cached).

    The caller holds the engine's model lock.
    """
    budget = session.budget
    if budget is not None:
        budget.touch(session.session_id)
    found = session.cache.get(tile.index)
    if found is not None:
        if budget is not None:  # a disk hit is promoted into memory
            budget.trim(keep=session.session_id)
        return found
    rgb = session.source.read_level_rgb(*tile.outer, level=session.frame.level, plane=session.plane)
    features = predictor.encode_many([rgb])[0]
    session.cache.put(tile.index, features)
    if budget is not None:
        budget.trim(keep=session.session_id)
    return features


def check_box(value: Any, shape: tuple[int, int]) -> Box:
    """``value`` as a level-0 box ``(row0, col0, row1, col1)`` inside an image of ``shape``.

    Raises:
        InvalidRequestError: not four integers, empty, or outside the image.
    """
    h, w = shape
    try:
        r0, c0, r1, c1 = (int(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidRequestError(
            f"box must be four integers (row0, col0, row1, col1); got {value!r}"
        ) from None
    if not (0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w):
        raise InvalidRequestError(
            f"box {(r0, c0, r1, c1)} is empty or outside the image of {h} x {w} level-0 "
            f"pixels: pass 0 <= row0 < row1 <= {h} and 0 <= col0 < col1 <= {w}"
        )
    return r0, c0, r1, c1


def region_tiles(session: Session, box: Any) -> tuple[Box, Box, list[Tile]]:
    """A request's level-0 ``box`` (None: the whole image) checked, mapped onto the working
    level, and the tiles whose core meets it: ``(level-0 box, level box, tiles)``."""
    shape = session.frame.image_shape
    level0 = check_box((0, 0, *shape) if box is None else box, shape)
    region = session.frame.box_to_level(level0)
    return level0, region, session.grid.tiles_touching(region)


def _unknown_session(session_id: str) -> str:
    return (
        f"no open session {session_id!r}: open the image with open_session(...) and use the "
        "id it returns (closed sessions are gone)"
    )
