"""The engine (tier T2): prompts on arbitrarily large images -> level-0 object masks.

The :class:`Engine` owns one SEEM predictor (one lock around it), open image sessions and
small uploaded in-memory images (:mod:`napari_seem.engine.sessions`), and background jobs
(:mod:`napari_seem.engine.jobs`). It knows nothing of transport: one method per request,
typed results, typed :class:`~napari_seem.engine.errors.EngineError` subclasses for
refusals. This module wires the parts; each request is answered by the module it names:

- :meth:`Engine.predict`, :meth:`Engine.ground`, :meth:`Engine.refer`: tiled interactive
  answers with memory and seam merging (:mod:`napari_seem.engine.interactive`);
- jobs: the kinds are a plain mapping given to the engine (``kinds=``, default
  :data:`napari_seem.engine.kinds.STANDARD_KINDS`: ``"encode_region"``, ``"segment"``,
  ``"fine_tune"``); :meth:`Engine.register_job_kind` adds one later;
- :meth:`Engine.use_weights`: load a fine-tuned weight file into the model (or restore the
  base weights, ``None``); every session then gets a fresh feature cache under the new
  weights (:mod:`napari_seem.engine.weights`).

**Levels.** A session opened with ``level=k`` tiles and infers on pyramid level ``k``;
prompts still come in and masks still go out in level-0 pixels (converted by
:class:`~napari_seem.engine.levels.LevelFrame`: prompts mapped into the level grid, masks
upsampled nearest-neighbour to level 0). Tile sizes, ``grid_shape`` and job progress count
tiles of the level.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_seem.core.prompts import ObjectPrompt
from napari_seem.core.results import ObjectMask
from napari_seem.core.tiling import Tile
from napari_seem.engine import interactive, sessions
from napari_seem.engine.errors import InvalidRequestError, UnknownImageError
from napari_seem.engine.interactive import Prediction
from napari_seem.engine.jobs import (
    JobCheck,
    JobEvent,
    JobKind,
    JobRunner,
    JobStatus,
    JobTable,
)
from napari_seem.engine.kinds import STANDARD_KINDS
from napari_seem.engine.limits import ServerLimits
from napari_seem.engine.sessions import (
    ImageInfo,
    Session,
    SessionInfo,
    SessionTable,
    Weights,
)
from napari_seem.engine.uploads import UploadReservation
from napari_seem.engine.weight_files import WeightsKeeper
from napari_seem.engine.weights import WeightsInfo
from napari_seem.model.seem import SeemModel
from napari_seem.predict.predictor import EncodedImage, SeemPredictor

__all__ = ["Engine"]


class Engine:
    """SEEM on large images: sessions, tiled prediction with memory, background jobs.

    Args:
        model: a :class:`SeemPredictor`, a :class:`SeemModel` (wrapped in a predictor that
            encodes tiles at native resolution) or a zero-argument factory returning a
            predictor (called once, here).
        tile: outer size of an interior tile in pixels (the model input); an image no
            larger than ``tile`` is one tile.
        halo: context pixels on each side of a tile's core (``tile - 2 * halo`` is the core).
        cache_bytes: memory budget of each session's feature cache (default
            ``limits.cache_bytes_per_session``).
        checkpoint_id: what identifies the weights in cache signatures; default
            ``"random"`` for random weights, else the checkpoint's source path.
        max_tiles: most tiles one ``predict`` decodes (a larger object is cut, with a
            ``RuntimeWarning``; :meth:`predict_answer` says ``truncated``) and most tiles
            one ``ground`` / ``refer`` covers (a larger region is refused: run a batch
            job). Default ``limits.max_tiles``.
        cache_dir: folder for disk feature caches (one zarr store per image, level, plane
            and bands, stamped with a signature; a store made for another model, tiling or
            image is refused with :class:`StaleCacheRefusedError`). None: memory only.
        max_upload_bytes: most bytes of uploaded in-memory images held at once (default
            ``limits.max_upload_bytes``).
        max_result_pixels: largest level-0 box a ``"segment"`` job answers as a labels
            crop (a larger one needs the job's ``out=`` zarr path; default
            ``limits.max_result_pixels``).
        work_dir: where ``"fine_tune"`` jobs write weight files (default: ``weights/``
            under ``cache_dir``, else a new temporary folder, made on first use and kept).
        kinds: the job kinds by name (None: :data:`napari_seem.engine.kinds.STANDARD_KINDS`);
            the engine keeps its own copy.
        limits: every bound on what requests may make the engine hold or run
            (:class:`~napari_seem.engine.limits.ServerLimits`; default its defaults). The
            four keyword arguments above, when given, replace their fields.
    """

    def __init__(
        self,
        model: SeemPredictor | SeemModel | Callable[[], SeemPredictor],
        *,
        tile: int = 512,
        halo: int = 64,
        cache_bytes: int | None = None,
        checkpoint_id: str | None = None,
        max_tiles: int | None = None,
        cache_dir: str | Path | None = None,
        max_upload_bytes: int | None = None,
        max_result_pixels: int | None = None,
        work_dir: str | Path | None = None,
        kinds: Mapping[str, JobKind] | None = None,
        limits: ServerLimits | None = None,
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
        given = {
            "cache_bytes_per_session": cache_bytes,
            "max_tiles": max_tiles,
            "max_upload_bytes": max_upload_bytes,
            "max_result_pixels": max_result_pixels,
        }
        self.limits = replace(
            limits or ServerLimits(), **{k: int(v) for k, v in given.items() if v is not None}
        )
        self.predictor = predictor
        self.tile = int(tile)
        self.halo = int(halo)
        self.cache_bytes = self.limits.cache_bytes_per_session
        self.max_tiles = self.limits.max_tiles
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.max_upload_bytes = self.limits.max_upload_bytes
        self.max_result_pixels = self.limits.max_result_pixels
        report = getattr(predictor.model, "load_report", None)
        self.checkpoint_id = checkpoint_id or (
            "random" if report is None else str(getattr(report, "source", "checkpoint"))
        )
        self.weight_files = WeightsKeeper(
            predictor.model,
            self.checkpoint_id,
            None if work_dir is None else Path(work_dir),
            self.cache_dir,
            self.limits.max_weight_files,
        )
        self._model_lock = threading.Lock()  # the predictor holds the current tile
        self._sessions = SessionTable(
            tile=self.tile,
            halo=self.halo,
            cache_bytes=self.cache_bytes,
            cache_dir=self.cache_dir,
            max_upload_bytes=self.max_upload_bytes,
            max_sessions=self.limits.max_sessions,
            cache_bytes_total=self.limits.cache_bytes_total,
        )
        self._jobs = JobTable(
            STANDARD_KINDS if kinds is None else kinds,
            max_jobs_kept=self.limits.max_jobs_kept,
            finished_ttl_s=self.limits.finished_job_ttl_s,
        )

    @property
    def model_lock(self) -> threading.Lock:
        """Held around every use of ``predictor`` (it keeps the current tile's features)."""
        return self._model_lock

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Cancel every job, wait for the running one, close every session, drop uploads."""
        self._jobs.close()
        for session_id in self._sessions.session_ids:
            self.close_session(session_id)
        self._sessions.clear_images()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ uploaded images

    def reserve_upload(self, nbytes: int) -> UploadReservation:
        """Set ``nbytes`` (an upload's declared size) aside before its payload is decoded.

        Use the answer as a context manager around decoding and :meth:`add_image` (pass
        it as ``reservation=``): concurrent uploads are refused by their declared sizes
        before any of them allocates.

        Raises:
            ImageTooLargeError: the declared size does not fit next to what is held.
        """
        return self._sessions.uploads.reserve(nbytes)

    def add_image(
        self,
        array: npt.ArrayLike,
        *,
        axes: str | None = None,
        reservation: UploadReservation | None = None,
    ) -> str:
        """Keep a small in-memory image (e.g. a napari layer) and return its id.

        Args:
            array: 2-D to 5-D numeric array (bool, integer or float), e.g. ``(y, x)``,
                ``(y, x, c)``, ``(z, y, x)``, ``(z, y, x, c)``; open a plane of a stack with
                ``open_session(image_id=..., plane=(z,))``.
            axes: axis letters as :func:`napari_seem.core.io.open_image` takes them (default:
                inferred from the shape).
            reservation: what :meth:`reserve_upload` set aside for it (its bytes become
                the upload's).

        Raises:
            ImageTooLargeError: the uploads held would exceed ``max_upload_bytes``
                (deleted uploads count while a session opened on them is open).
            InvalidRequestError: not a numeric 2-D..5-D array, or ``axes`` does not fit.
        """
        return self._sessions.add_image(array, axes=axes, reservation=reservation)

    def images(self) -> list[ImageInfo]:
        """Every uploaded image a client can still use, oldest first."""
        found = []
        for image_id in self._sessions.image_ids():
            try:
                found.append(self.image_info(image_id))
            except UnknownImageError:  # deleted meanwhile
                continue
        return found

    def image_info(self, image_id: str) -> ImageInfo:
        """Shape, dtype and axes of an uploaded image."""
        return self._sessions.image_info(image_id)

    def delete_image(self, image_id: str) -> None:
        """Forget an uploaded image (sessions already open on it keep using it, and its
        memory counts against ``max_upload_bytes`` until the last of them closes)."""
        self._sessions.delete_image(image_id)

    def uploaded(self, image_id: str) -> tuple[np.ndarray, str]:
        """The array of an uploaded image and its axis letters (for job runners; read
        only)."""
        return self._sessions.uploaded(image_id)

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
        return self._sessions.open(
            source,
            image_id=image_id,
            bands=bands,
            level=level,
            plane=plane,
            cache_path=cache_path,
            weights=self._cache_weights(),
        )

    def close_session(self, session_id: str) -> None:
        """Forget a session, its cached features and its history; cancel its jobs."""
        session = self._sessions.pop(session_id)
        self._jobs.cancel_session(session_id)
        self._sessions.close(session)

    def session_info(self, session_id: str) -> SessionInfo:
        """Image shape and tiling of an open session."""
        return self._sessions.info(session_id)

    def forget_object(self, session_id: str, object_id: str) -> None:
        """Drop the remembered mask of ``object_id`` (the next round starts afresh)."""
        self.session(session_id).history.pop(object_id, None)

    def session(self, session_id: str) -> Session:
        """The open session (for job runners and tools; do not change it)."""
        return self._sessions.get(session_id)

    def encoded(self, session: Session, tile: Tile) -> EncodedImage:
        """The tile's features from the cache, else encoded now. Caller holds ``model_lock``."""
        return sessions.encoded(self.predictor, session, tile)

    # ------------------------------------------------------------------ weights

    @property
    def work_dir(self) -> Path:
        """Where fine-tuned weight files go (made on first use; see ``work_dir=``)."""
        return self.weight_files.work_dir

    def weights_info(self) -> WeightsInfo:
        """The weights the model runs with now."""
        return self.weight_files.info()

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
        busy = self._jobs.busy(("segment", "fine_tune")) if check_jobs else []
        if busy:
            job = busy[0]
            raise InvalidRequestError(
                f"job {job.job_id} ({job.kind}) is {job.state}: wait until it finishes or "
                "cancel it, then switch the weights"
            )
        file, state, new_id = self.weight_files.read(path)
        with self._model_lock:
            self.weight_files.apply(file, state, new_id)
            self.predictor.reset_caches()
            self.checkpoint_id = new_id
            self._sessions.renew_caches(self._cache_weights())
        return self.weights_info()

    def weights_snapshot(self) -> Path:
        """A file holding the weights the model runs with now (what a fine-tune starts
        from): the base checkpoint file itself when it is one and no file is applied,
        else a ``start-*`` snapshot under :attr:`work_dir` (the job deletes it when it
        ends)."""
        with self._model_lock:
            return self.weight_files.snapshot()

    def _cache_weights(self) -> Weights:
        """What new feature caches are signed with (the weights in use now)."""
        tuned = self.weight_files.tuned
        return Weights(self.predictor.model.name, self.checkpoint_id, tuned)

    # ------------------------------------------------------------------ interactive

    def predict(
        self,
        session_id: str,
        prompt: ObjectPrompt,
        *,
        object_id: str | None = None,
        vocabulary: Sequence[str] | None = None,
    ) -> ObjectMask:
        """Segment one object; the answer is a crop with its level-0 offset.

        Args:
            prompt: the object's visual prompts (and optional text) in level-0 ``(row, col)``.
            object_id: names the object across rounds: the mask returned last time for this
                id is passed to the model as memory, and this answer replaces it (at most
                ``limits.max_object_id_chars`` characters).
            vocabulary: names a text-less object by its best class (never "background").

        An object reaching beyond ``max_tiles`` tiles is cut there, with a
        ``RuntimeWarning`` (:meth:`predict_answer` says so in its answer instead).

        Raises:
            UnknownSessionError: ``session_id`` is not open.
            PromptOutsideImageError: a visual prompt lies outside the image.
            InvalidRequestError: the prompt has no visual prompt (text alone), or the
                ``object_id`` is too long.
        """
        answer = self.predict_answer(session_id, prompt, object_id=object_id, vocabulary=vocabulary)
        if answer.truncated:
            warnings.warn(
                f"the object reaches beyond {answer.max_tiles} tiles and was cut; raise "
                "max_tiles or prompt a smaller object",
                RuntimeWarning,
                stacklevel=2,
            )
        return answer.mask

    def predict_answer(
        self,
        session_id: str,
        prompt: ObjectPrompt,
        *,
        object_id: str | None = None,
        vocabulary: Sequence[str] | None = None,
    ) -> Prediction:
        """:meth:`predict`, answered as a :class:`~napari_seem.engine.interactive.Prediction`:
        the mask and whether it was cut at the ``max_tiles`` limit (``truncated``)."""
        limit = self.limits.max_object_id_chars
        if object_id is not None and (not isinstance(object_id, str) or len(object_id) > limit):
            raise InvalidRequestError(
                f"object_id must be a string of at most {limit} characters (it names an "
                f"object across rounds); got {type(object_id).__name__} of "
                f"{len(object_id) if isinstance(object_id, str) else '?'} characters"
            )
        session = self.session(session_id)
        return interactive.predict_object(
            self.predictor,
            self._model_lock,
            session,
            prompt,
            object_id=object_id,
            max_tiles=self.max_tiles,
            vocabulary=interactive.checked_vocabulary(vocabulary, self.limits.max_vocabulary_names),
        )

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
        return interactive.ground_phrase(
            self.predictor,
            self._model_lock,
            session,
            text,
            box=box,
            score_threshold=score_threshold,
            max_instances=max_instances,
            max_tiles=self.max_tiles,
        )

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
        return interactive.refer_example(
            self.predictor,
            self._model_lock,
            target,
            other,
            example,
            box=box,
            max_tiles=self.max_tiles,
            window_size=self.tile,
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
                :data:`~napari_seem.engine.jobs.JobRunner`).
            check: validates and normalises ``params`` in the caller's thread and returns a
                :class:`~napari_seem.engine.jobs.JobPlan` (raise :class:`InvalidRequestError`
                for bad ones). Without one, ``params`` must bind to the runner's keyword
                parameters.
            replace: allow replacing an existing kind.
        """
        self._jobs.register(name, JobKind(runner, check), replace=replace)

    @property
    def job_kinds(self) -> tuple[str, ...]:
        """The registered job kinds."""
        return self._jobs.kinds

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
        return self._jobs.start(self, kind, session, params)

    def job_status(self, job_id: str) -> JobStatus:
        """The job's current state and progress."""
        return self._jobs.status(job_id)

    def job_result(self, job_id: str) -> Any:
        """What the job's runner returned (e.g. a :class:`LabelsCrop`).

        Raises:
            UnknownJobError: no such job.
            JobResultUnavailableError: the job is not done, or its kind stores no result.
        """
        return self._jobs.result(job_id)

    def cancel_job(self, job_id: str) -> None:
        """Ask a job to stop; it stops before its next tile (a finished job is unchanged)."""
        self._jobs.get(job_id).cancel.set()

    def events(self, job_id: str, since: int = 0) -> list[JobEvent]:
        """The job's events with ``seq >= since`` (poll with the last seq + 1)."""
        job = self._jobs.get(job_id)
        with job.lock:
            return job.events[since:]

    def subscribe(self, job_id: str, callback: Callable[[JobEvent], None]) -> None:
        """Call ``callback(event)`` for every event of the job, past ones at once.

        Later events arrive on the engine's worker thread.
        """
        self._jobs.get(job_id).subscribe(callback)

    def wait_job(self, job_id: str, timeout: float | None = None) -> JobStatus:
        """Block until the job has finished (or ``timeout`` seconds passed)."""
        self._jobs.get(job_id).finished.wait(timeout)
        return self.job_status(job_id)
