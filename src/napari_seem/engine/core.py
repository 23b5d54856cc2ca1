"""The engine (tier T2): prompts on arbitrarily large images -> level-0 object masks.

The engine owns one SEEM predictor (one lock around it), open image sessions and
background jobs. It knows nothing of transport: one method per request, typed results,
typed :class:`~napari_seem.engine.errors.EngineError` subclasses for refusals.

How a prompt is answered (:meth:`Engine.predict`):

1. the start tiles are the tiles whose core a positive visual prompt touches;
2. each tile is encoded once (its outer box, read with ``ImageSource.read_rgb``) and kept
   in the session's :class:`~napari_seem.feature_cache.FeatureCache`;
3. the tile is decoded with the object's prompts clipped into its window
   (:mod:`napari_seem.engine.tile_prompts`); when the mask reaches a core edge the
   neighbour is decoded too (:func:`~napari_seem.tiling.grow_until_closed`), and the
   cores are stitched into one crop with its level-0 offset.

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
"""

from __future__ import annotations

import math
import threading
import uuid
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_seem.engine.errors import (
    InvalidRequestError,
    PromptOutsideImageError,
    UnknownJobError,
    UnknownSessionError,
)
from napari_seem.engine.jobs import JobEvent, JobRecord, JobState
from napari_seem.engine.tile_prompts import object_in_window, object_mask_in_window
from napari_seem.feature_cache import CacheSignature, FeatureCache
from napari_seem.io import ImageSource, ImageSourceError, open_image
from napari_seem.model.seem import SeemModel
from napari_seem.predictor import EncodedImage, SeemPredictor
from napari_seem.prompts import (
    Box,
    MaskPrompt,
    ObjectPrompt,
    Points,
    PromptError,
    VisualPrompt,
)
from napari_seem.results import ObjectMask
from napari_seem.tiling import Tile, TileGrid, grow_until_closed

__all__ = ["Engine", "JobStatus", "SessionInfo"]

JOB_KINDS = ("encode_region",)


@dataclass(frozen=True)
class SessionInfo:
    """What a client needs to know about an open session.

    Attributes:
        session_id: the id to pass to later calls.
        image_shape: level-0 ``(H, W)``.
        grid_shape: tile rows and columns.
        tile_size: core size ``(th, tw)`` of the tiles.
        halo: context pixels around each core.
    """

    session_id: str
    image_shape: tuple[int, int]
    grid_shape: tuple[int, int]
    tile_size: tuple[int, int]
    halo: int


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of one job (``error`` is set when ``state == "failed"``)."""

    job_id: str
    kind: str
    session_id: str
    state: JobState
    done: int
    total: int
    error: str | None = None


@dataclass
class _Session:
    source: ImageSource
    plane: tuple[int, ...]
    grid: TileGrid
    cache: FeatureCache
    history: dict[str, ObjectMask] = field(default_factory=dict)


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
        max_tiles: most tiles one ``predict`` decodes; a larger object is cut (with a
            ``RuntimeWarning``).
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
        report = getattr(predictor.model, "load_report", None)
        self.checkpoint_id = checkpoint_id or (
            "random" if report is None else str(getattr(report, "source", "checkpoint"))
        )
        self._model_lock = threading.Lock()  # the predictor holds the current tile
        self._lock = threading.Lock()  # sessions and jobs tables
        self._sessions: dict[str, _Session] = {}
        self._jobs: dict[str, JobRecord] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-seem-job")

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Cancel every job, wait for the running one, and close every session."""
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

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sessions

    def open_session(
        self,
        source: Any,
        *,
        bands: tuple[int, int, int] | None = None,
        level: int = 0,
        plane: tuple[int, ...] = (),
    ) -> str:
        """Open an image (anything :func:`napari_seem.io.open_image` accepts).

        Args:
            bands: three channel indices for R, G, B of a multi-band image.
            level: pyramid level to read; only 0 is supported for now.
            plane: one index per plane axis of a stack (``(z,)``); ``()`` for 2-D.

        Returns:
            The session id.

        Raises:
            InvalidRequestError: the image cannot be opened or the plane/level is wrong.
        """
        if level != 0:
            raise InvalidRequestError(
                f"level={level}: tiled prediction reads level 0 only for now; open the "
                "session with level=0"
            )
        try:
            image = open_image(source, bands=bands, level=level)
        except ImageSourceError as exc:
            raise InvalidRequestError(f"cannot open the image: {exc}") from exc
        plane = tuple(int(p) for p in plane)
        if len(plane) != len(image.plane_shape) or any(
            not 0 <= p < n for p, n in zip(plane, image.plane_shape, strict=False)
        ):
            raise InvalidRequestError(
                f"plane={plane} does not index the image's plane axes "
                f"{image.plane_axes!r} of sizes {image.plane_shape}: give one index per axis"
            )
        grid = TileGrid.for_model(image.spatial_shape, model_input=self.tile, halo=self.halo)
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
        cache = FeatureCache(signature, memory_budget_bytes=self.cache_bytes)
        session_id = uuid.uuid4().hex
        with self._lock:
            self._sessions[session_id] = _Session(image, plane, grid, cache)
        return session_id

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
        session = self._session(session_id)
        size = session.grid.tile_size
        assert not isinstance(size, int)
        return SessionInfo(
            session_id, session.grid.image_shape, session.grid.grid_shape, size, session.grid.halo
        )

    def forget_object(self, session_id: str, object_id: str) -> None:
        """Drop the remembered mask of ``object_id`` (the next round starts afresh)."""
        self._session(session_id).history.pop(object_id, None)

    def _session(self, session_id: str) -> _Session:
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            raise UnknownSessionError(_unknown_session(session_id))
        return session

    # ------------------------------------------------------------------ features

    def _encoded(self, session: _Session, tile: Tile) -> EncodedImage:
        """The tile's features from the cache, else encoded now. Caller holds the model lock."""
        found = session.cache.get(tile.index)
        if found is not None:
            return found
        rgb = session.source.read_rgb(*tile.outer, plane=session.plane)
        encoded = self.predictor.encode_many([rgb])[0]
        session.cache.put(tile.index, encoded)
        return encoded

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
        session = self._session(session_id)
        if not isinstance(prompt, ObjectPrompt):
            raise InvalidRequestError(
                f"predict takes one ObjectPrompt; got {type(prompt).__name__}"
            )
        if not prompt.visual or not prompt.has_positive:
            raise InvalidRequestError(
                "the object prompt has no positive visual prompt: add a click, box, scribble, "
                "polygon or mask on the object (text alone is a grounding query)"
            )
        grid = session.grid
        try:
            prompt.check_fits(grid.image_shape)
        except PromptError as exc:
            raise PromptOutsideImageError(
                f"{exc} (the session's image is {grid.image_shape[0]} x "
                f"{grid.image_shape[1]} level-0 pixels)"
            ) from None
        previous = None if object_id is None else session.history.get(object_id)
        start = _start_tiles(grid, prompt.visual)
        decoder = _TileDecoder(self, session, prompt, previous)
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
        result = ObjectMask(
            grown.mask,
            grown.offset,
            score=0.0 if first is None else first.score,
            class_name=None if first is None else first.class_name,
            class_score=None if first is None else first.class_score,
            prompt=prompt,
            source="interactive",
        )
        if object_id is not None:
            session.history[object_id] = result
        return result

    # ------------------------------------------------------------------ jobs

    def start_job(self, kind: str, session_id: str, **params: Any) -> str:
        """Start background work; returns the job id.

        Kinds:
            ``"encode_region"``: encode (into the session's feature cache) every tile whose
            core meets ``box=(row0, col0, row1, col1)`` (level-0, max exclusive; default
            the whole image). Progress counts tiles.

        Raises:
            UnknownSessionError: ``session_id`` is not open.
            InvalidRequestError: unknown kind or bad parameters.
        """
        session = self._session(session_id)
        if kind not in JOB_KINDS:
            raise InvalidRequestError(f"unknown job kind {kind!r}; the engine runs {JOB_KINDS}")
        unknown = set(params) - {"box"}
        if unknown:
            raise InvalidRequestError(
                f"encode_region takes only box=(row0, col0, row1, col1); got {sorted(unknown)}"
            )
        h, w = session.grid.image_shape
        box = _check_box(params.get("box", (0, 0, h, w)), (h, w))
        tiles = session.grid.tiles_touching(box)
        job = JobRecord(uuid.uuid4().hex, kind, session_id, total=len(tiles))
        with self._lock:
            self._jobs[job.job_id] = job
        job.emit()  # the "queued" event
        self._executor.submit(self._run_encode, job, session, tiles)
        return job.job_id

    def _run_encode(self, job: JobRecord, session: _Session, tiles: list[Tile]) -> None:
        if job.cancel.is_set():
            job.emit(state="cancelled")
            return
        job.emit(state="running")
        try:
            for count, tile in enumerate(tiles, start=1):
                if job.cancel.is_set():  # honoured between tiles
                    job.emit(state="cancelled")
                    return
                if tile.index not in session.cache:
                    with self._model_lock:
                        self._encoded(session, tile)
                job.emit(done=count)
        except Exception as exc:
            job.emit(state="failed", error=f"{type(exc).__name__}: {exc}")
            return
        job.emit(state="done")

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
            return JobStatus(
                job.job_id, job.kind, job.session_id, job.state, job.done, job.total, job.error
            )

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
        session: _Session,
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
        predictor.set_encoded(self.engine._encoded(self.session, tile))
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


def _check_box(value: Any, shape: tuple[int, int]) -> tuple[int, int, int, int]:
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
