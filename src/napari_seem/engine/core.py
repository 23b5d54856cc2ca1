"""The engine (tier T2): prompts on arbitrarily large images -> level-0 object masks.

The engine owns one SEEM predictor (one lock around it), open image sessions, small
uploaded in-memory images and background jobs. It knows nothing of transport: one method
per request, typed results, typed :class:`~napari_seem.engine.errors.EngineError`
subclasses for refusals.

How a prompt is answered (:meth:`Engine.predict`):

1. the start tiles are the tiles whose core a positive visual prompt touches;
2. each tile is encoded once (its outer box, read with ``ImageSource.read_level_rgb``) and
   kept in the session's :class:`~napari_seem.predict.feature_cache.FeatureCache`;
3. the tile is decoded with the object's prompts clipped into its window
   (:mod:`napari_seem.core.tile_prompts`); when the mask reaches a core edge the
   neighbour is decoded too (:func:`~napari_seem.core.tiling.grow_until_closed`), and the
   cores are stitched into one crop with its level-0 offset.

**Levels.** A session opened with ``level=k`` tiles and infers on pyramid level ``k``;
prompts still come in and masks still go out in level-0 pixels (converted by
:class:`~napari_seem.engine.levels.LevelFrame`: prompts mapped into the level grid, masks
upsampled nearest-neighbour to level 0). Tile sizes, ``grid_shape`` and job progress count
tiles of the level.

**Neighbour rule.** A tile whose window holds a positive prompt of the object decodes
with those prompts (plus any negatives in the window). A tile reached only by growth has
no positive prompt of its own: it decodes with the part of the growing mask (the union
of the cores decoded so far) inside its window as a positive mask prompt, plus the
object's negatives in the window. If that part is empty the tile contributes nothing and
is not decoded. A box bounds the object everywhere: every tile's mask is clipped to the
union of the object's boxes, so growth cannot leave them.

**Memory.** Each session remembers the last mask per ``object_id``; the next
``predict`` with that id passes the part of it inside each decoded tile's window to the
predictor as ``previous`` (SEEM's round-to-round memory).

**Grounding and referring** (:meth:`Engine.ground`, :meth:`Engine.refer`) answer on every
tile whose core meets a level-0 box (at most ``max_tiles`` tiles: larger regions are
batch jobs); instances crossing seams are merged (:mod:`napari_seem.engine.instances`).
Instances are cut at the border of the decoded tiles' cores.

**Jobs** are pluggable: :meth:`Engine.register_job_kind` adds a kind (a runner run on the
engine's single worker thread); ``"encode_region"`` (prefetch features) and ``"segment"``
(segment everything / a phrase over a region with seam-aware merging, answering a
:class:`~napari_seem.core.labels.LabelsCrop`) are built in
(:mod:`napari_seem.engine.kinds.segment`), and so is ``"fine_tune"`` (train on labelled images,
then switch the model to the new weights: :mod:`napari_seem.engine.kinds.fine_tune`).

**Weights.** :meth:`Engine.use_weights` loads a fine-tuned weight file into the model (or
restores the base weights, ``None``); every session then gets a fresh feature cache under
the new weights (:mod:`napari_seem.engine.weights`).
"""

from __future__ import annotations

import hashlib
import inspect
import math
import tempfile
import threading
import uuid
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_seem.core.io import ImageSource, ImageSourceError, open_image
from napari_seem.core.prompts import (
    Box,
    MaskPrompt,
    ObjectPrompt,
    Points,
    PromptError,
    ReferringExample,
    TextPrompt,
    VisualPrompt,
)
from napari_seem.core.results import ObjectMask
from napari_seem.core.tile_prompts import object_in_window, object_mask_in_window
from napari_seem.core.tiling import Tile, TileGrid, grow_until_closed
from napari_seem.engine.errors import (
    ImageTooLargeError,
    InvalidRequestError,
    JobResultUnavailableError,
    PromptOutsideImageError,
    StaleCacheRefusedError,
    UnknownImageError,
    UnknownJobError,
    UnknownSessionError,
)
from napari_seem.engine.instances import TilePiece, merge_pieces
from napari_seem.engine.jobs import JobCancelled, JobEvent, JobRecord, JobState
from napari_seem.engine.kinds.segment import DEFAULT_MAX_RESULT_PIXELS
from napari_seem.engine.levels import LevelFrame
from napari_seem.engine.weights import (
    WeightsInfo,
    apply_weights,
    read_weights,
    snapshot_weights,
    weights_id,
)
from napari_seem.model.seem import SeemModel
from napari_seem.predict.feature_cache import CacheSignature, FeatureCache, StaleCacheError
from napari_seem.predict.predictor import EncodedImage, SeemPredictor

__all__ = [
    "DEFAULT_MAX_UPLOAD_BYTES",
    "Engine",
    "ImageInfo",
    "JobPlan",
    "JobStatus",
    "Session",
    "SessionInfo",
]

DEFAULT_MAX_UPLOAD_BYTES = 512 * 1024**2
"""Default budget of all uploaded in-memory images held at once (uncompressed bytes)."""

_UPLOAD_KINDS = "biuf"  # bool, signed / unsigned integers, floats


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


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of one job (``error`` is set when ``state == "failed"``; ``message`` is
    the latest progress text; ``info`` is the result of a kind that answers a JSON-ready
    mapping, e.g. ``"fine_tune"``'s weights path, once the job is done)."""

    job_id: str
    kind: str
    session_id: str
    state: JobState
    done: int
    total: int
    error: str | None = None
    has_result: bool = False
    message: str | None = None
    info: Mapping[str, Any] | None = None


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


@dataclass(frozen=True)
class JobPlan:
    """What a job kind's ``check`` returns: the ``params`` the runner will get (validated,
    normalised) and the ``total`` work units known up front (0 if the runner sets it)."""

    params: Mapping[str, Any]
    total: int = 0


JobRunner = Callable[..., Any]
"""``runner(engine, job, session, **params) -> result | None``, run on the worker thread.

It reports with ``job.emit(done=..., total=...)``, calls ``job.raise_if_cancelled()``
between tiles, takes ``engine.model_lock`` around model use (``engine.encoded`` gives a
tile's features), and may return a result (kept on the job, see :meth:`Engine.job_result`;
the server sends a :class:`~napari_seem.core.labels.LabelsCrop` as a binary payload).
"""

JobCheck = Callable[["Engine", Session, dict[str, Any]], JobPlan]
"""``check(engine, session, params) -> JobPlan``, run in the caller's thread by
:meth:`Engine.start_job`; raises :class:`InvalidRequestError` for bad parameters."""


@dataclass(frozen=True)
class _JobKind:
    runner: JobRunner
    check: JobCheck | None


@dataclass(frozen=True)
class _Upload:
    array: np.ndarray
    axes: str


class Engine:
    """SEEM on large images: sessions, tiled prediction with memory, background jobs.

    Args:
        model: a :class:`SeemPredictor`, a :class:`SeemModel` (wrapped in a predictor that
            encodes tiles at native resolution) or a zero-argument factory returning a
            predictor (called once, here).
        tile: outer size of an interior tile in pixels (the model input); an image no
            larger than ``tile`` is one tile.
        halo: context pixels on each side of a tile's core (``tile - 2 * halo`` is the core).
        cache_bytes: memory budget of each session's feature cache.
        checkpoint_id: what identifies the weights in cache signatures; default
            ``"random"`` for random weights, else the checkpoint's source path.
        max_tiles: most tiles one ``predict`` decodes (a larger object is cut, with a
            ``RuntimeWarning``) and most tiles one ``ground`` / ``refer`` covers (a larger
            region is refused: run a batch job).
        cache_dir: folder for disk feature caches (one zarr store per image, level, plane
            and bands, stamped with a signature; a store made for another model, tiling or
            image is refused with :class:`StaleCacheRefusedError`). None: memory only.
        max_upload_bytes: most bytes of uploaded in-memory images held at once.
        max_result_pixels: largest level-0 box a ``"segment"`` job answers as a labels
            crop (a larger one needs the job's ``out=`` zarr path).
        work_dir: where ``"fine_tune"`` jobs write weight files (default: ``weights/``
            under ``cache_dir``, else a new temporary folder, made on first use and kept).
    """

    def __init__(
        self,
        model: SeemPredictor | SeemModel | Callable[[], SeemPredictor],
        *,
        tile: int = 512,
        halo: int = 64,
        cache_bytes: int = 2 * 1024**3,
        checkpoint_id: str | None = None,
        max_tiles: int = 64,
        cache_dir: str | Path | None = None,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        max_result_pixels: int = DEFAULT_MAX_RESULT_PIXELS,
        work_dir: str | Path | None = None,
    ) -> None:
        if isinstance(model, SeemPredictor):
            predictor = model
        elif isinstance(model, SeemModel):
            predictor = SeemPredictor(model, short_side=None)
        else:
            predictor = model()
        if tile <= 2 * halo or halo < 0:
            raise InvalidRequestError(
                f"tile ({tile}) must exceed 2 * halo ({2 * halo}) and halo must be >= 0: "
                "choose e.g. tile=512, halo=64"
            )
        self.predictor = predictor
        self.tile = int(tile)
        self.halo = int(halo)
        self.cache_bytes = int(cache_bytes)
        self.max_tiles = int(max_tiles)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_result_pixels = int(max_result_pixels)
        report = getattr(predictor.model, "load_report", None)
        self.checkpoint_id = checkpoint_id or (
            "random" if report is None else str(getattr(report, "source", "checkpoint"))
        )
        self._base_checkpoint_id = self.checkpoint_id
        self._weights_path: Path | None = None  # a weight file applied on top of the base
        self._saved_base: dict[str, Any] = {}  # base values the applied file replaced
        self._work_dir = None if work_dir is None else Path(work_dir)
        self._model_lock = threading.Lock()  # the predictor holds the current tile
        self._lock = threading.Lock()  # sessions, images, jobs and kinds tables
        self._sessions: dict[str, Session] = {}
        self._images: dict[str, _Upload] = {}
        self._jobs: dict[str, JobRecord] = {}
        self._kinds: dict[str, _JobKind] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-seem-job")
        from napari_seem.engine.kinds.fine_tune import check_fine_tune, run_fine_tune
        from napari_seem.engine.kinds.segment import (
            check_encode_region,
            check_segment,
            run_encode_region,
            run_segment,
        )

        self.register_job_kind("encode_region", run_encode_region, check=check_encode_region)
        self.register_job_kind("segment", run_segment, check=check_segment)
        self.register_job_kind("fine_tune", run_fine_tune, check=check_fine_tune)

    @property
    def model_lock(self) -> threading.Lock:
        """Held around every use of ``predictor`` (it keeps the current tile's features)."""
        return self._model_lock

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Cancel every job, wait for the running one, close every session, drop uploads."""
        with self._lock:
            jobs = list(self._jobs.values())
            sessions = list(self._sessions)
        for job in jobs:
            job.cancel.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        for job in jobs:
            job.emit(state="cancelled")
        for session_id in sessions:
            self.close_session(session_id)
        with self._lock:
            self._images.clear()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ uploaded images

    def add_image(self, array: npt.ArrayLike, *, axes: str | None = None) -> str:
        """Keep a small in-memory image (e.g. a napari layer) and return its id.

        Args:
            array: 2-D to 5-D numeric array (bool, integer or float), e.g. ``(y, x)``,
                ``(y, x, c)``, ``(z, y, x)``, ``(z, y, x, c)``; open a plane of a stack with
                ``open_session(image_id=..., plane=(z,))``.
            axes: axis letters as :func:`napari_seem.core.io.open_image` takes them (default:
                inferred from the shape).

        Raises:
            ImageTooLargeError: the uploads held would exceed ``max_upload_bytes``.
            InvalidRequestError: not a numeric 2-D..5-D array, or ``axes`` does not fit.
        """
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
        with self._lock:
            held = sum(u.array.nbytes for u in self._images.values())
            if held + data.nbytes > self.max_upload_bytes:
                raise ImageTooLargeError(
                    f"the image has {data.nbytes} bytes and {held} are held by earlier "
                    f"uploads; the engine keeps at most {self.max_upload_bytes} bytes of "
                    "in-memory images: save the image as zarr inside a folder the server may "
                    "read (an allowed root) and open it by path, or delete unused uploads"
                )
            image_id = uuid.uuid4().hex
            self._images[image_id] = _Upload(data, source.axes)
        return image_id

    def image_info(self, image_id: str) -> ImageInfo:
        """Shape, dtype and axes of an uploaded image."""
        upload = self._upload(image_id)
        data = upload.array
        return ImageInfo(image_id, tuple(data.shape), data.dtype.name, upload.axes, data.nbytes)

    def delete_image(self, image_id: str) -> None:
        """Forget an uploaded image (sessions already open on it keep their own reference
        until they are closed)."""
        with self._lock:
            upload = self._images.pop(image_id, None)
        if upload is None:
            raise UnknownImageError(_unknown_image(image_id))

    def uploaded(self, image_id: str) -> tuple[np.ndarray, str]:
        """The array of an uploaded image and its axis letters (for job runners; read
        only)."""
        upload = self._upload(image_id)
        return upload.array, upload.axes

    def _upload(self, image_id: str) -> _Upload:
        with self._lock:
            upload = self._images.get(image_id)
        if upload is None:
            raise UnknownImageError(_unknown_image(image_id))
        return upload

    # ------------------------------------------------------------------ sessions

    def open_session(
        self,
        source: Any = None,
        *,
        image_id: str | None = None,
        bands: tuple[int, int, int] | None = None,
        level: int = 0,
        plane: tuple[int, ...] = (),
        cache_path: str | Path | None = None,
    ) -> str:
        """Open an image (anything :func:`napari_seem.core.io.open_image` accepts, or an upload).

        Args:
            source: the image; give either it or ``image_id``.
            image_id: an id from :meth:`add_image`.
            bands: three channel indices for R, G, B of a multi-band image.
            level: pyramid level to infer on (0 = full resolution; coarser is faster).
                Prompts and answers stay in level-0 pixels.
            plane: one level-0 index per plane axis of a stack (``(z,)``); ``()`` for 2-D.
            cache_path: zarr folder for this session's disk feature cache (default: one
                under ``cache_dir`` when the engine has one).

        Returns:
            The session id.

        Raises:
            InvalidRequestError: the image cannot be opened or the plane/level is wrong.
            UnknownImageError: ``image_id`` is not held.
            StaleCacheRefusedError: the disk cache was made for another model or image.
        """
        if (source is None) == (image_id is None):
            raise InvalidRequestError(
                "open_session takes exactly one of an image (source / path) and image_id"
            )
        axes = None
        if image_id is not None:
            upload = self._upload(image_id)
            source, axes = upload.array, upload.axes
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
            cache = self._new_cache(image, int(level), plane, grid, explicit)
        except StaleCacheError as exc:
            image.close()
            raise StaleCacheRefusedError(
                f"{exc} (the engine refuses a stale feature cache rather than use it)"
            ) from None
        except (ValueError, OSError) as exc:
            image.close()
            raise InvalidRequestError(f"cannot use the feature cache: {exc}") from None
        session_id = uuid.uuid4().hex
        with self._lock:
            self._sessions[session_id] = Session(
                session_id, image, plane, frame, grid, cache, image_id=image_id, cache_path=explicit
            )
        return session_id

    def _new_cache(
        self,
        image: ImageSource,
        level: int,
        plane: tuple[int, ...],
        grid: TileGrid,
        cache_path: Path | None,
        *,
        memory_only: bool = False,
    ) -> FeatureCache:
        """A feature cache under the current weights (raises StaleCacheError for a disk
        store made for other weights, tiling or image)."""
        size = grid.tile_size
        assert not isinstance(size, int)  # normalised by TileGrid
        signature = CacheSignature(
            variant=self.predictor.model.name,
            checkpoint=self.checkpoint_id,
            tile_size=size,
            halo=grid.halo,
            source=f"{image.fingerprint(level=level)}:plane={list(plane)}",
            level=level,
        )
        disk = None if memory_only else cache_path or self._default_cache_path(image, level, plane)
        return FeatureCache(signature, memory_budget_bytes=self.cache_bytes, disk_path=disk)

    def _default_cache_path(
        self, image: ImageSource, level: int, plane: tuple[int, ...]
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
        if self._weights_path is not None:  # fine-tuned weights: features of their own
            key += f"|weights={self.checkpoint_id}"
        digest = hashlib.blake2b(key.encode(), digest_size=10).hexdigest()
        name = "memory" if origin.startswith("<") else Path(origin).name[:40]
        return self.cache_dir / f"{name}-{digest}.zarr"

    def close_session(self, session_id: str) -> None:
        """Forget a session, its cached features and its history; cancel its jobs."""
        with self._lock:
            session = self._sessions.pop(session_id, None)
            jobs = [j for j in self._jobs.values() if j.session_id == session_id]
        if session is None:
            raise UnknownSessionError(_unknown_session(session_id))
        for job in jobs:
            job.cancel.set()
        session.cache.clear_memory()
        session.source.close()

    def session_info(self, session_id: str) -> SessionInfo:
        """Image shape and tiling of an open session."""
        session = self.session(session_id)
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

    def forget_object(self, session_id: str, object_id: str) -> None:
        """Drop the remembered mask of ``object_id`` (the next round starts afresh)."""
        self.session(session_id).history.pop(object_id, None)

    def session(self, session_id: str) -> Session:
        """The open session (for job runners and tools; do not change it)."""
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            raise UnknownSessionError(_unknown_session(session_id))
        return session

    # ------------------------------------------------------------------ features

    def encoded(self, session: Session, tile: Tile) -> EncodedImage:
        """The tile's features from the cache, else encoded now. Caller holds ``model_lock``."""
        found = session.cache.get(tile.index)
        if found is not None:
            return found
        rgb = session.source.read_level_rgb(
            *tile.outer, level=session.frame.level, plane=session.plane
        )
        encoded = self.predictor.encode_many([rgb])[0]
        session.cache.put(tile.index, encoded)
        return encoded

    # ------------------------------------------------------------------ weights

    @property
    def work_dir(self) -> Path:
        """Where fine-tuned weight files go (made on first use; see ``work_dir=``)."""
        with self._lock:
            if self._work_dir is None:
                if self.cache_dir is not None:
                    self._work_dir = self.cache_dir / "weights"
                else:
                    self._work_dir = Path(tempfile.mkdtemp(prefix="napari-seem-weights-"))
            self._work_dir.mkdir(parents=True, exist_ok=True)
            return self._work_dir

    def weights_info(self) -> WeightsInfo:
        """The weights the model runs with now."""
        path = self._weights_path
        return WeightsInfo(
            str(getattr(self.predictor.model, "name", "model")),
            self.checkpoint_id,
            None if path is None else str(path),
            self._base_checkpoint_id,
        )

    def use_weights(self, path: str | Path | None, *, check_jobs: bool = True) -> WeightsInfo:
        """Run the model with the weights in ``path`` (a fine-tuned file), or with its base
        weights again (``None``).

        The file is read and checked first (nothing changes when it is refused). Then, under
        the model lock, the weights are loaded in place, the predictor's caches of the old
        weights are dropped and every session gets a fresh feature cache (signed with the
        new weights: a disk cache made with other weights is never used). Memory of earlier
        rounds (``object_id``) is kept.

        Args:
            check_jobs: refuse while a ``segment`` or ``fine_tune`` job is queued or running
                (they would mix weights); job runners switching at their end pass False.

        Raises:
            InvalidRequestError: the file is missing, unreadable or does not fit the model,
                or a job is in the way.
        """
        if check_jobs:
            with self._lock:
                busy = [
                    j
                    for j in self._jobs.values()
                    if j.kind in ("segment", "fine_tune") and j.state in ("queued", "running")
                ]
            if busy:
                job = busy[0]
                raise InvalidRequestError(
                    f"job {job.job_id} ({job.kind}) is {job.state}: wait until it finishes or "
                    "cancel it, then switch the weights"
                )
        model = self.predictor.model
        file = None if path is None else Path(path).expanduser().resolve()
        state = None if file is None else read_weights(file, model)
        new_id = self._base_checkpoint_id if file is None else weights_id(file)
        with self._model_lock:
            apply_weights(model, state, self._saved_base)
            if file is None:
                self._saved_base.clear()
            self.predictor.reset_caches()
            self.checkpoint_id = new_id
            self._weights_path = file
            self._renew_caches()
        return self.weights_info()

    def _renew_caches(self) -> None:
        """Every session's features were computed with other weights: start new caches.
        Caller holds the model lock."""
        with self._lock:
            sessions = list(self._sessions.values())
        tuned = self._weights_path is not None
        for session in sessions:
            session.cache.clear_memory()
            args = (session.source, session.frame.level, session.plane, session.grid)
            try:
                # a folder the user named holds features of the base weights only
                session.cache = self._new_cache(
                    *args, session.cache_path, memory_only=tuned and session.cache_path is not None
                )
            except (StaleCacheError, ValueError, OSError):
                session.cache = self._new_cache(*args, None, memory_only=True)

    def weights_snapshot(self) -> Path:
        """A file holding the weights the model runs with now (what a fine-tune starts
        from): the base checkpoint file itself when it is one and no file is applied,
        else a snapshot under :attr:`work_dir`."""
        model = self.predictor.model
        base = Path(self._base_checkpoint_id)
        if (
            self._weights_path is None
            and getattr(model, "name", "") != "seem-lite"
            and base.is_file()
        ):
            return base
        with self._model_lock:
            return snapshot_weights(model, self.work_dir, self.checkpoint_id)

    # ------------------------------------------------------------------ predict

    def predict(
        self, session_id: str, prompt: ObjectPrompt, *, object_id: str | None = None
    ) -> ObjectMask:
        """Segment one object; the answer is a crop with its level-0 offset.

        Args:
            prompt: the object's visual prompts (and optional text) in level-0 ``(row, col)``.
            object_id: names the object across rounds: the mask returned last time for this
                id is passed to the model as memory, and this answer replaces it.

        Raises:
            UnknownSessionError: ``session_id`` is not open.
            PromptOutsideImageError: a visual prompt lies outside the image.
            InvalidRequestError: the prompt has no visual prompt (text alone).
        """
        session = self.session(session_id)
        if not isinstance(prompt, ObjectPrompt):
            raise InvalidRequestError(
                f"predict takes one ObjectPrompt; got {type(prompt).__name__}"
            )
        if not prompt.visual or not prompt.has_positive:
            raise InvalidRequestError(
                "the object prompt has no positive visual prompt: add a click, box, scribble, "
                "polygon or mask on the object (text alone is a grounding query: use ground)"
            )
        _check_fits(prompt, session.frame.image_shape)
        grid = session.grid
        local = session.frame.prompt_to_level(prompt)
        previous = None if object_id is None else session.history.get(object_id)
        start = _start_tiles(grid, local.visual)
        decoder = _TileDecoder(self, session, local, previous)
        with self._model_lock:
            grown = grow_until_closed(grid, start, decoder, max_tiles=self.max_tiles)
        if grown.truncated:
            warnings.warn(
                f"the object reaches beyond {self.max_tiles} tiles and was cut; raise "
                "max_tiles or prompt a smaller object",
                RuntimeWarning,
                stacklevel=2,
            )
        first = decoder.first
        on_level = ObjectMask(
            grown.mask,
            grown.offset,
            score=0.0 if first is None else first.score,
            class_name=None if first is None else first.class_name,
            class_score=None if first is None else first.class_score,
            source="interactive",
        )
        if object_id is not None:
            session.history[object_id] = on_level
        return session.frame.object_to_level0(on_level, prompt)

    # ------------------------------------------------------------------ ground / refer

    def ground(
        self,
        session_id: str,
        text: str,
        *,
        box: tuple[int, int, int, int] | None = None,
        score_threshold: float = 0.05,
        max_instances: int | None = None,
    ) -> list[ObjectMask]:
        """Every instance of a phrase in the tiles whose core meets ``box``, best first.

        Args:
            text: the phrase (e.g. ``"nucleus"``); it becomes each answer's ``class_name``.
            box: level-0 ``(row0, col0, row1, col1)``, max exclusive; default the whole
                image (refused when it covers more than ``max_tiles`` tiles).
            score_threshold: per tile, keep further instances whose share of the phrase's
                softmax over queries is at least this (the best one is always kept).
            max_instances: most instances returned (and per tile); None: no limit.

        Returns:
            Level-0 crops (``source="grounding"``, ``prompt=TextPrompt(text)``); an object
            crossing a seam is one answer.
        """
        session = self.session(session_id)
        phrase = text.strip() if isinstance(text, str) else ""
        if not phrase:
            raise InvalidRequestError("ground needs a non-empty phrase, e.g. 'nucleus'")
        if not (math.isfinite(score_threshold) and 0.0 <= score_threshold <= 1.0):
            raise InvalidRequestError(
                f"score_threshold must be between 0 and 1; got {score_threshold!r}"
            )
        if max_instances is not None and max_instances < 1:
            raise InvalidRequestError(f"max_instances must be >= 1; got {max_instances!r}")
        tiles = self._region_tiles(session, box, what="ground")
        pieces: list[TilePiece] = []
        for tile in tiles:
            with self._model_lock:  # per tile: clicks may interleave
                self.predictor.set_encoded(self.encoded(session, tile))
                try:
                    found = self.predictor.ground(
                        [phrase], score_threshold=score_threshold, max_instances=max_instances
                    )
                except PromptError as exc:
                    raise InvalidRequestError(str(exc)) from None
            pieces += [
                TilePiece(tile, obj.full(tile.outer_shape), obj.score)
                for obj in found
                if not obj.is_empty
            ]
        query = TextPrompt(phrase)
        answers = [
            self._answer(session, m.mask, m.offset, m.score, phrase, query, "grounding")
            for m in merge_pieces(session.grid.image_shape, pieces)
        ]
        return answers if max_instances is None else answers[:max_instances]

    def refer(
        self,
        session_id: str,
        example_session_id: str,
        example: ObjectPrompt,
        *,
        box: tuple[int, int, int, int] | None = None,
    ) -> list[ObjectMask]:
        """Segment on one session what ``example`` marks on another (SEEM's referring path).

        Args:
            session_id: the target session.
            example_session_id: the session whose image the example is drawn on (may be the
                same session).
            example: visual prompts (level-0 pixels of the EXAMPLE image) marking one
                object; its ``label`` (or text) names the answers.
            box: level-0 box of the TARGET image to search, default the whole image
                (at most ``max_tiles`` tiles).

        The example is encoded on a tile-sized window of its own image centred on the
        prompt (an example larger than a tile is cut to that window); each target tile
        whose core meets ``box`` answers at most one object; pieces crossing seams are
        merged. Returns level-0 crops, best first (``source="referring"``).
        """
        target = self.session(session_id)
        other = self.session(example_session_id)
        if not isinstance(example, ObjectPrompt) or not example.has_positive:
            raise InvalidRequestError(
                "the referring example needs a positive visual prompt (a click, box, "
                "scribble or mask) on the example object"
            )
        _check_fits(example, other.frame.image_shape)
        label = example.label or (example.text.text if example.text is not None else None)
        local = other.frame.prompt_to_level(example)
        window = _example_window(local.visual, other.frame.level_shape, self.tile)
        visual = tuple(object_in_window(local.visual, window))
        if not any(p.has_positive for p in visual):
            raise InvalidRequestError(
                "the example's positive prompts do not fit one tile-sized window: mark a "
                "smaller example object"
            )
        rgb = other.source.read_level_rgb(*window, level=other.frame.level, plane=other.plane)
        referring = ReferringExample.from_image(rgb, visual, label=label)
        tiles = self._region_tiles(target, box, what="refer")
        with self._model_lock:  # encoded once, referred on every tile
            example_encoded = self.predictor.encode(rgb)
        pieces: list[TilePiece] = []
        for tile in tiles:
            with self._model_lock:
                self.predictor.set_encoded(self.encoded(target, tile))
                found = self.predictor.refer(referring, example_encoded=example_encoded)
            pieces += [
                TilePiece(tile, obj.full(tile.outer_shape), obj.score)
                for obj in found
                if not obj.is_empty
            ]
        wire_example = ReferringExample(
            other.frame.image_shape,
            example.visual,
            image_ref=example_session_id,
            label=label,
            plane=other.plane,
        )
        return [
            self._answer(target, m.mask, m.offset, m.score, label, wire_example, "referring")
            for m in merge_pieces(target.grid.image_shape, pieces)
        ]

    def _region_tiles(self, session: Session, box: Any, *, what: str) -> list[Tile]:
        shape = session.frame.image_shape
        level0 = check_box((0, 0, *shape) if box is None else box, shape)
        tiles = session.grid.tiles_touching(session.frame.box_to_level(level0))
        if len(tiles) > self.max_tiles:
            raise InvalidRequestError(
                f"{what} over the box {level0} covers {len(tiles)} tiles; at most "
                f"{self.max_tiles} per request: pass a smaller box= (e.g. the visible "
                "region), open the session at a coarser level=, or segment the whole "
                "image with a batch job (napari_seem.batch)"
            )
        return tiles

    @staticmethod
    def _answer(
        session: Session,
        mask: npt.NDArray[np.bool_],
        offset: tuple[int, int],
        score: float,
        name: str | None,
        prompt: TextPrompt | ReferringExample,
        source: str,
    ) -> ObjectMask:
        mask0, offset0 = session.frame.crop_to_level0(mask, offset)
        return ObjectMask(
            mask0,
            offset0,
            score=score,
            class_name=name,
            class_score=score if name is not None else None,
            prompt=prompt,
            source=source,
        )

    # ------------------------------------------------------------------ jobs

    def register_job_kind(
        self,
        name: str,
        runner: JobRunner,
        *,
        check: JobCheck | None = None,
        replace: bool = False,
    ) -> None:
        """Add a job kind, run by :meth:`start_job` on the engine's worker thread.

        Args:
            name: the kind, e.g. ``"segment"``.
            runner: ``runner(engine, job, session, **params) -> result | None`` (see
                :data:`JobRunner`).
            check: validates and normalises ``params`` in the caller's thread and returns a
                :class:`JobPlan` (raise :class:`InvalidRequestError` for bad ones). Without
                one, ``params`` must bind to the runner's keyword parameters.
            replace: allow replacing an existing kind.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a job kind needs a non-empty name")
        if not callable(runner):
            raise TypeError(f"the runner of job kind {name!r} must be callable")
        with self._lock:
            if name in self._kinds and not replace:
                raise ValueError(f"job kind {name!r} is registered already; pass replace=True")
            self._kinds[name] = _JobKind(runner, check)

    @property
    def job_kinds(self) -> tuple[str, ...]:
        """The registered job kinds."""
        with self._lock:
            return tuple(self._kinds)

    def start_job(self, kind: str, session_id: str, /, **params: Any) -> str:
        """Start background work; returns the job id.

        Kinds: ``"encode_region"`` (built in): encode (into the session's feature cache)
        every tile whose core meets ``box=(row0, col0, row1, col1)`` (level-0, max
        exclusive; default the whole image); progress counts tiles. ``"segment"`` (built
        in): ``vocabulary=[...]`` or ``text="..."``, ``mode=``, ``box=``, ``out=`` ->
        a :class:`~napari_seem.core.labels.LabelsCrop` (see
        :mod:`napari_seem.engine.kinds.segment`). ``"fine_tune"`` (built in): ``data=[...]``
        or ``labels=``, ``class_name=``, ``steps=`` ... -> the model runs the new weights;
        the result (``JobStatus.info``) names the file (see
        :mod:`napari_seem.engine.kinds.fine_tune`). Others: see :meth:`register_job_kind`.

        Raises:
            UnknownSessionError: ``session_id`` is not open.
            InvalidRequestError: unknown kind or bad parameters.
        """
        session = self.session(session_id)
        with self._lock:
            spec = self._kinds.get(kind)
            known = sorted(self._kinds)
        if spec is None:
            raise InvalidRequestError(f"unknown job kind {kind!r}; the engine runs {known}")
        if spec.check is not None:
            plan = spec.check(self, session, dict(params))
        else:
            plan = JobPlan(params)
        try:
            inspect.signature(spec.runner).bind(self, None, session, **plan.params)
        except TypeError as exc:
            raise InvalidRequestError(
                f"job kind {kind!r} does not take the parameters {sorted(plan.params)}: {exc}"
            ) from None
        job = JobRecord(uuid.uuid4().hex, kind, session_id, total=int(plan.total))
        with self._lock:
            self._jobs[job.job_id] = job
        job.emit()  # the "queued" event
        self._executor.submit(self._run_job, spec, job, session, dict(plan.params))
        return job.job_id

    def _run_job(
        self, spec: _JobKind, job: JobRecord, session: Session, params: dict[str, Any]
    ) -> None:
        if job.cancel.is_set():
            job.emit(state="cancelled")
            return
        job.emit(state="running")
        try:
            result = spec.runner(self, job, session, **params)
        except JobCancelled:
            job.emit(state="cancelled")
            return
        except Exception as exc:
            job.emit(state="failed", error=f"{type(exc).__name__}: {exc}")
            return
        with job.lock:
            job.result = result
            stopped = job.cancel.is_set() and job.done < job.total
        job.emit(state="cancelled" if stopped else "done")

    def _job(self, job_id: str) -> JobRecord:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise UnknownJobError(
                f"no job {job_id!r}: use the id start_job returned (jobs are per engine)"
            )
        return job

    def job_status(self, job_id: str) -> JobStatus:
        """The job's current state and progress."""
        job = self._job(job_id)
        with job.lock:
            done = job.state == "done"
            return JobStatus(
                job.job_id,
                job.kind,
                job.session_id,
                job.state,
                job.done,
                job.total,
                job.error,
                done and job.result is not None,
                job.message,
                dict(job.result) if done and isinstance(job.result, Mapping) else None,
            )

    def job_result(self, job_id: str) -> Any:
        """What the job's runner returned (e.g. a :class:`LabelsCrop`).

        Raises:
            UnknownJobError: no such job.
            JobResultUnavailableError: the job is not done, or its kind stores no result.
        """
        job = self._job(job_id)
        with job.lock:
            state, result, done, total, error = (
                job.state,
                job.result,
                job.done,
                job.total,
                job.error,
            )
        if state != "done":
            why = {
                "queued": "is queued",
                "running": f"is running ({done}/{total})",
                "cancelled": "was cancelled: start it again",
                "failed": f"failed ({error})",
            }[state]
            raise JobResultUnavailableError(
                f"job {job_id} {why}; its result is available once its state is 'done'"
            )
        if result is None:
            raise JobResultUnavailableError(
                f"job {job_id} ({job.kind}) finished but its kind stores no result "
                "(encode_region only fills the feature cache)"
            )
        return result

    def cancel_job(self, job_id: str) -> None:
        """Ask a job to stop; it stops before its next tile (a finished job is unchanged)."""
        job = self._job(job_id)
        job.cancel.set()

    def events(self, job_id: str, since: int = 0) -> list[JobEvent]:
        """The job's events with ``seq >= since`` (poll with the last seq + 1)."""
        job = self._job(job_id)
        with job.lock:
            return job.events[since:]

    def subscribe(self, job_id: str, callback: Callable[[JobEvent], None]) -> None:
        """Call ``callback(event)`` for every event of the job, past ones at once.

        Later events arrive on the engine's worker thread.
        """
        self._job(job_id).subscribe(callback)

    def wait_job(self, job_id: str, timeout: float | None = None) -> JobStatus:
        """Block until the job has finished (or ``timeout`` seconds passed)."""
        self._job(job_id).finished.wait(timeout)
        return self.job_status(job_id)


class _TileDecoder:
    """``decode(tile)`` for :func:`grow_until_closed`: one object's mask on one tile."""

    def __init__(
        self,
        engine: Engine,
        session: Session,
        prompt: ObjectPrompt,
        previous: ObjectMask | None,
    ) -> None:
        self.engine = engine
        self.session = session
        self.prompt = prompt
        self.previous = previous
        self.boxes = [p for p in prompt.visual if isinstance(p, Box)]
        self.cores: list[tuple[Tile, npt.NDArray[np.bool_]]] = []
        self.first: ObjectMask | None = None

    def __call__(self, tile: Tile) -> npt.NDArray[np.bool_]:
        window = tile.outer
        visual = object_in_window(self.prompt.visual, window)
        if not any(p.has_positive for p in visual):
            grown = self._grown_in(window)
            if not grown.any():
                return np.zeros(tile.outer_shape, bool)
            visual = [MaskPrompt.from_full(grown), *visual]
        local = ObjectPrompt(tuple(visual), self.prompt.text, label=self.prompt.label)
        predictor = self.engine.predictor
        predictor.set_encoded(self.engine.encoded(self.session, tile))
        memory = None
        if self.previous is not None:
            memory = object_mask_in_window(self.previous, window)
        answer = predictor.predict(local, previous=None if memory is None else [memory])[0]
        if self.first is None:
            self.first = answer
        mask = answer.full(tile.outer_shape) & self._box_region(window)
        rows, cols = tile.core_in_outer
        self.cores.append((tile, mask[rows, cols]))
        return mask

    def _grown_in(self, window: tuple[int, int, int, int]) -> npt.NDArray[np.bool_]:
        """The union of the cores decoded so far, inside ``window``."""
        r0, c0, r1, c1 = window
        out = np.zeros((r1 - r0, c1 - c0), bool)
        for tile, core in self.cores:
            top, left = max(tile.core[0], r0), max(tile.core[1], c0)
            bottom, right = min(tile.core[2], r1), min(tile.core[3], c1)
            if bottom > top and right > left:
                out[top - r0 : bottom - r0, left - c0 : right - c0] |= core[
                    top - tile.core[0] : bottom - tile.core[0],
                    left - tile.core[1] : right - tile.core[1],
                ]
        return out

    def _box_region(self, window: tuple[int, int, int, int]) -> npt.NDArray[np.bool_]:
        """Where the object's boxes allow the mask, in ``window`` (everywhere without boxes)."""
        r0, c0, r1, c1 = window
        if not self.boxes:
            return np.ones((r1 - r0, c1 - c0), bool)
        allowed = np.zeros((r1 - r0, c1 - c0), bool)
        for box in self.boxes:  # the same pixel rule as the predictor's box bound
            top = max(math.floor(box.row_min) - r0, 0)
            left = max(math.floor(box.col_min) - c0, 0)
            bottom = min(math.ceil(box.row_max) + 1 - r0, r1 - r0)
            right = min(math.ceil(box.col_max) + 1 - c0, c1 - c0)
            if bottom > top and right > left:
                allowed[top:bottom, left:right] = True
        return allowed


def _start_tiles(grid: TileGrid, visual: tuple[VisualPrompt, ...]) -> list[Tile]:
    """Tiles whose core holds a positive prompt (each positive prompt's own bounds)."""
    tiles: dict[tuple[int, int], Tile] = {}
    for prompt in visual:
        if not prompt.has_positive:
            continue
        if isinstance(prompt, Points):  # each positive click on its own
            boxes = [(r, c, r, c) for r, c in prompt.coords[prompt.positive]]
        else:
            boxes = [prompt.bounds()]
        for r0, c0, r1, c1 in boxes:
            # pixel centres at integers: the pixel holding coordinate x is floor(x + 0.5)
            box = (
                math.floor(r0 + 0.5),
                math.floor(c0 + 0.5),
                math.floor(r1 + 0.5) + 1,
                math.floor(c1 + 0.5) + 1,
            )
            for tile in grid.tiles_touching(box):
                tiles.setdefault(tile.index, tile)
    return sorted(tiles.values(), key=lambda t: t.index)


def check_box(value: Any, shape: tuple[int, int]) -> tuple[int, int, int, int]:
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


def _unknown_session(session_id: str) -> str:
    return (
        f"no open session {session_id!r}: open the image with open_session(...) and use the "
        "id it returns (closed sessions are gone)"
    )


def _unknown_image(image_id: str) -> str:
    return (
        f"no uploaded image {image_id!r}: upload it with add_image / POST /images and use "
        "the id it returns (deleted images are gone)"
    )


def _check_fits(prompt: ObjectPrompt, shape: tuple[int, int]) -> None:
    try:
        prompt.check_fits(shape)
    except PromptError as exc:
        raise PromptOutsideImageError(
            f"{exc} (the image is {shape[0]} x {shape[1]} level-0 pixels)"
        ) from None


def _example_window(
    visual: tuple[VisualPrompt, ...], shape: tuple[int, int], size: int
) -> tuple[int, int, int, int]:
    """A ``size``-square window (clipped to ``shape``) centred on the positive prompts."""
    bounds = [p.bounds() for p in visual if p.has_positive]
    r0 = min(b[0] for b in bounds)
    c0 = min(b[1] for b in bounds)
    r1 = max(b[2] for b in bounds)
    c1 = max(b[3] for b in bounds)
    h, w = shape
    th, tw = min(size, h), min(size, w)
    top = min(max(math.floor((r0 + r1) / 2 + 0.5) - th // 2, 0), h - th)
    left = min(max(math.floor((c0 + c1) / 2 + 0.5) - tw // 2, 0), w - tw)
    return top, left, top + th, left + tw
