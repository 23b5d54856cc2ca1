"""Scripting API: ``segment``, ``segment_everything`` and ``fine_tune`` in one call each.

>>> import napari_seem
>>> result = napari_seem.segment(image, points=[(120, 80)])  # doctest: +SKIP
>>> labels = result.to_labels()  # doctest: +SKIP

Coordinates are level-0 ``(row, col)`` pixels of the image, origin top-left, pixel centres at
integers (as everywhere in napari-seem). Images may be numpy, zarr, dask arrays or paths of
zarr / OME-Zarr / TIFF images (anything :func:`napari_seem.core.io.open_image` opens); a stack
needs ``plane=(z,)``, a multi-band image ``bands=(r, g, b)`` and channels last.

Both functions run on the same engine as napari: an in-process
:class:`~napari_seem.engine.Engine` by default (built once per variant and kept, see
:func:`clear_model_cache`), or the model process behind a
:class:`~napari_seem.remote.client.SeemClient` when one is passed as ``model``.

This module imports no torch at import time: the in-process engine is built on first use.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from napari_seem.core.io import ImageSource, ImageSourceError, open_image
from napari_seem.core.modes import (
    DEFAULT_EVERYTHING_MODE,
    EVERYTHING_MODES,
    EverythingMode,
    everything_mode_error,
    resolve_everything_mode,
)
from napari_seem.core.progress import Cancelled  # the one cancelled exception
from napari_seem.core.prompts import (
    Box,
    MaskPrompt,
    ObjectPrompt,
    Points,
    PromptError,
    ReferringExample,
    Scribble,
    TextPrompt,
    VisualPrompt,
)
from napari_seem.core.results import ObjectMask, SegmentationResult
from napari_seem.core.variants import DEFAULT_VARIANT

if TYPE_CHECKING:
    from napari_seem.core.labels import LabelsCrop
    from napari_seem.engine.core import Engine
    from napari_seem.predict.predictor import SeemPredictor
    from napari_seem.remote.client import SeemClient

__all__ = [
    "VARIANT_ENV",
    "Backend",
    "ImageHandle",
    "ProgressCallback",
    "clear_model_cache",
    "default_variant",
    "fine_tune",
    "get_backend",
    "overview_rgb",
    "segment",
    "segment_everything",
]

#: Environment variable naming the variant used when ``model`` is not given (tests and CI
#: set it to ``seem-tiny-focal``); unset, :data:`napari_seem.core.variants.DEFAULT_VARIANT`.
VARIANT_ENV = "NAPARI_SEEM_VARIANT"
#: Long side (pixels) of the whole-plane view used for text grounding and referring when
#: the engine has no tiled implementation of them (large images are grounded at overview
#: resolution and the masks scaled back to level 0).
WHOLE_PLANE_SIDE = 1024

#: ``progress(done, total)``: work units (tiles) finished so far.
ProgressCallback = Callable[[int, int], None]


# ----------------------------------------------------------------------------- models


def default_variant() -> str:
    """The variant used when no ``model`` is given: ``$NAPARI_SEEM_VARIANT`` or the default."""
    return os.environ.get(VARIANT_ENV, "").strip() or DEFAULT_VARIANT


@dataclass(frozen=True)
class ImageHandle:
    """An image opened on a backend.

    Attributes:
        session_id: the engine / server session of the image plane.
        source: the lazily read image (this process's view of it).
        plane: plane indices of a stack, ``()`` for 2-D.
        image_shape: level-0 ``(H, W)``.
    """

    session_id: str
    source: ImageSource
    plane: tuple[int, ...]
    image_shape: tuple[int, int]


class Backend:
    """One engine behind the API and the widgets: an in-process Engine or a SeemClient.

    Every method blocks; call them from a worker thread in UIs. ``model_lock`` serialises
    direct use of the predictor with the engine's own use of it.
    """

    def __init__(self, *, engine: Engine | None = None, client: SeemClient | None = None):
        if (engine is None) == (client is None):
            raise ValueError("a Backend wraps exactly one Engine or one SeemClient")
        self.engine = engine
        self.client = client

    @property
    def name(self) -> str:
        if self.engine is not None:
            return f"in-process {self.engine.predictor.model.name}"
        assert self.client is not None
        return f"server {self.client.url}"

    # ---- images ---------------------------------------------------------------------------

    def open(
        self,
        image: Any,
        *,
        bands: Sequence[int] | None = None,
        plane: Sequence[int] = (),
    ) -> ImageHandle:
        """Open ``image`` (array or path) on the engine; ``plane`` picks a stack's plane."""
        try:
            source = image if isinstance(image, ImageSource) else open_image(image, bands=bands)
        except ImageSourceError as exc:
            raise PromptError(f"cannot open the image: {exc}") from None
        raw = source.levels[0].array if isinstance(image, ImageSource) else image
        r, g, b = source.bands
        bands3 = (int(r), int(g), int(b))
        plane_t = tuple(int(p) for p in plane)
        if len(plane_t) != len(source.plane_shape):
            raise PromptError(
                f"the image has plane axes {source.plane_axes!r} of sizes {source.plane_shape}: "
                f"pass plane= with one index per axis (got {plane_t})"
            )
        if self.engine is not None:
            from napari_seem.engine.errors import EngineError

            try:
                sid = self.engine.open_session(raw, bands=bands3, plane=plane_t)
            except EngineError as exc:
                raise PromptError(str(exc)) from None
        else:
            sid = self._client_open(image, raw, bands3, plane_t)
        return ImageHandle(sid, source, plane_t, source.spatial_shape)

    def _client_open(
        self, image: Any, raw: Any, bands: tuple[int, int, int], plane: tuple[int, ...]
    ) -> str:
        client = self.client
        assert client is not None
        if isinstance(image, str | os.PathLike):
            reply = client.open_session(Path(image), bands=bands, plane=plane).result()
            return str(reply.session_id)
        upload = getattr(client, "upload_image", None)
        if upload is None:
            raise PromptError(
                "this SeemClient cannot upload in-memory arrays: pass the image as a path the "
                "server can read (zarr / OME-Zarr / TIFF inside its --allow-root)"
            )
        image_id = upload(np.asarray(raw)).result()
        reply = client.open_session(image_id=image_id, bands=bands, plane=plane).result()
        return str(reply.session_id)

    def close(self, handle: ImageHandle) -> None:
        with contextlib.suppress(Exception):  # closing twice or after a restart is harmless
            if self.engine is not None:
                self.engine.close_session(handle.session_id)
            else:
                assert self.client is not None
                self.client.close_session(handle.session_id).result()

    # ---- tasks ----------------------------------------------------------------------------

    def predict(
        self, handle: ImageHandle, prompt: ObjectPrompt, *, object_id: str | None = None
    ) -> ObjectMask:
        """One object's mask (level-0 crop + offset); ``object_id`` keeps round memory."""
        if self.engine is not None:
            from napari_seem.engine.errors import EngineError

            try:
                return self.engine.predict(handle.session_id, prompt, object_id=object_id)
            except EngineError as exc:
                raise PromptError(str(exc)) from None
        assert self.client is not None
        return self.client.predict(handle.session_id, prompt, object_id=object_id).result()

    def use_weights(self, path: str | Path | None) -> str:
        """Run this engine's model with a fine-tuned weight file (``None``: its base
        weights again); returns the checkpoint id now in use. Every image open on the
        engine gets a fresh feature cache; a server reads ``path`` on ITS machine."""
        if self.engine is not None:
            from napari_seem.engine.errors import EngineError

            try:
                return self.engine.use_weights(path).checkpoint
            except EngineError as exc:
                raise PromptError(str(exc)) from None
        assert self.client is not None
        return str(self.client.use_weights(path).result().checkpoint)

    def forget(self, handle: ImageHandle, object_id: str) -> None:
        if self.engine is not None:
            with contextlib.suppress(Exception):
                self.engine.forget_object(handle.session_id, object_id)

    def ground(
        self, handle: ImageHandle, texts: Sequence[str], *, threshold: float = 0.05
    ) -> list[ObjectMask]:
        """Every instance of each phrase on the image."""
        engine_ground = getattr(self.engine or self.client, "ground", None)
        if engine_ground is not None:
            found: list[ObjectMask] = []
            for text in texts:
                answer = engine_ground(handle.session_id, text, score_threshold=threshold)
                found += _as_objects(_resolve(answer))
            return found
        if self.engine is None:
            raise PromptError(_NO_REMOTE.format(task="text grounding"))

        def run(predictor: SeemPredictor) -> list[ObjectMask]:
            return list(predictor.ground(list(texts), score_threshold=threshold))

        return self._on_whole_plane(handle, run)

    def refer(self, handle: ImageHandle, example: ReferringExample) -> list[ObjectMask]:
        """What ``example`` marks on another image, found on this one."""
        if example.image is None:
            raise PromptError(
                "the referring example has no pixels: build it with "
                "ReferringExample.from_image(other_image, prompts) (or pick it from another "
                "widget)"
            )
        engine_refer = getattr(self.engine or self.client, "refer", None)
        if engine_refer is not None:
            other = self.open(example.image)
            try:
                prompt = ObjectPrompt(example.visual, label=example.label)
                answer = engine_refer(handle.session_id, other.session_id, prompt)
                found = _as_objects(_resolve(answer))
            finally:
                self.close(other)
            return [_named(obj, example.label) for obj in found]
        if self.engine is None:
            raise PromptError(_NO_REMOTE.format(task="referring examples"))

        def run(predictor: SeemPredictor) -> list[ObjectMask]:
            return list(predictor.refer(example))

        return self._on_whole_plane(handle, run)

    def everything(
        self,
        handle: ImageHandle,
        vocabulary: Sequence[str],
        *,
        mode: EverythingMode = "auto",
        object_mask_threshold: float = 0.4,
        overlap_threshold: float = 0.8,
        min_area: int = 1,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> SegmentationResult:
        """Generic segmentation of the plane with progress and cancel: the engine's
        ``"segment"`` job (tiles decoded in the model process, objects crossing tile
        seams merged into one, see :mod:`napari_seem.engine.kinds.segment`).

        ``mode``: as in :func:`segment_everything` (``"auto"`` runs ``"points"`` for
        models that decode prompts in windows, else ``"panoptic"``). ``progress(done,
        total)`` counts tiles; ``cancel`` stops the job before its next tile.

        Raises:
            Cancelled: ``cancel`` was set.
            PromptError: the engine refused the parameters, or a server without the
                ``"segment"`` job.
        """
        params: dict[str, Any] = {
            "vocabulary": list(vocabulary),
            "object_mask_threshold": float(object_mask_threshold),
            "overlap_threshold": float(overlap_threshold),
            "min_area": int(min_area),
        }
        # "auto" is the job's default: left out, a server older than the modes runs its own
        # default (panoptic) instead of refusing the parameter
        if mode != DEFAULT_EVERYTHING_MODE:
            params["mode"] = mode
        if self.engine is not None:
            crop = self._engine_job(handle, params, progress, cancel)
        else:
            crop = self._client_job(handle, params, progress, cancel)
        # rows carry the concrete mode the job ran; the fallback (rows without a source:
        # older servers, which run panoptic for "auto") names it as well as it can
        model = None if self.engine is None else self.engine.predictor
        source = resolve_everything_mode(mode, model)
        return SegmentationResult(
            handle.image_shape, tuple(crop.to_objects(source=source)), plane=handle.plane
        )

    def _engine_job(
        self,
        handle: ImageHandle,
        params: dict[str, Any],
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> LabelsCrop:
        from napari_seem.engine.errors import EngineError
        from napari_seem.engine.jobs import JobEvent

        engine = self.engine
        assert engine is not None
        try:
            job_id = engine.start_job("segment", handle.session_id, **params)
        except EngineError as exc:
            raise PromptError(str(exc)) from None

        def on_event(event: JobEvent) -> None:
            # on the engine's worker thread, between tiles: a cancel set by the progress
            # callback itself stops the job before its next tile
            if progress is not None and event.state in ("queued", "running"):
                progress(event.done, event.total)
            if cancel is not None and cancel.is_set():
                engine.cancel_job(job_id)

        engine.subscribe(job_id, on_event)
        while True:
            status = engine.wait_job(job_id, timeout=0.1)
            if status.state in ("done", "failed", "cancelled"):
                break
            if cancel is not None and cancel.is_set():
                engine.cancel_job(job_id)
        return self._job_outcome(status, lambda: engine.job_result(job_id))

    def _client_job(
        self,
        handle: ImageHandle,
        params: dict[str, Any],
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> LabelsCrop:
        import time

        from napari_seem.remote.client import RemoteError

        client = self.client
        assert client is not None
        try:
            status = client.start_job(handle.session_id, kind="segment", params=params).result()
        except RemoteError as exc:
            if "unknown job kind" in exc.message:
                raise PromptError(_NO_REMOTE.format(task="segment everything")) from None
            if exc.status is not None and 400 <= exc.status < 500:
                raise PromptError(exc.message) from None
            raise
        job_id = status.job_id
        shown: tuple[int, int] | None = None
        while True:
            if cancel is not None and cancel.is_set():
                status = client.cancel_job(job_id).result()
            else:
                status = client.job_status(job_id).result()
            if progress is not None and (status.done, status.total) != shown:
                shown = (status.done, status.total)
                progress(status.done, status.total)
            if status.state in ("done", "failed", "cancelled"):
                break
            time.sleep(0.1)
        return self._job_outcome(status, lambda: client.job_result(job_id).result())

    @staticmethod
    def _job_outcome(status: Any, result: Callable[[], LabelsCrop]) -> LabelsCrop:
        if status.state == "cancelled":
            raise Cancelled(f"segment everything cancelled after {status.done} tiles")
        if status.state == "failed":
            raise RuntimeError(f"segment everything failed in the engine: {status.error}")
        return result()

    def _on_whole_plane(
        self, handle: ImageHandle, run: Callable[[SeemPredictor], list[ObjectMask]]
    ) -> list[ObjectMask]:
        """Run ``run`` on the whole plane (at most ``WHOLE_PLANE_SIDE`` on its long side)."""
        engine = self.engine
        assert engine is not None
        rgb, step = overview_rgb(handle.source, handle.plane, WHOLE_PLANE_SIDE)
        with _model_lock(engine):
            engine.predictor.set_image(rgb)
            found = run(engine.predictor)
        if step == 1:
            return found
        return [_upscaled(obj, step, handle.image_shape) for obj in found]


_NO_REMOTE = (
    "{task} through a model server needs a server that offers it (this one does not): use "
    "the in-process engine (model=None or a variant name) or update the server"
)


def _resolve(value: Any) -> Any:
    """A future's result, or the value itself."""
    result = getattr(value, "result", None)
    return result() if callable(result) else value


def _as_objects(value: Any) -> list[ObjectMask]:
    if isinstance(value, ObjectMask):
        return [value]
    if isinstance(value, SegmentationResult):
        return list(value.objects)
    return [v for v in value if isinstance(v, ObjectMask)]


@contextlib.contextmanager
def _model_lock(engine: Engine) -> Iterator[None]:
    # The engine keeps its predictor's current tile under this lock; direct use of the
    # predictor (whole-plane grounding of engines without tiled grounding) must hold it too.
    lock = getattr(engine, "model_lock", None)
    if lock is None:
        yield
    else:
        with lock:
            yield


def _named(obj: ObjectMask, name: str | None) -> ObjectMask:
    """``obj`` with ``class_name`` set to ``name`` when it has none."""
    if obj.class_name is not None or name is None:
        return obj
    return ObjectMask(
        obj.mask,
        obj.offset,
        score=obj.score,
        class_name=name,
        class_score=obj.class_score,
        prompt=obj.prompt,
        source=obj.source,
    )


def _upscaled(obj: ObjectMask, step: int, image_shape: tuple[int, int]) -> ObjectMask:
    """A mask found on a ``step``-times subsampled overview, as a level-0 crop."""
    if obj.is_empty:
        return obj
    h, w = image_shape
    big = np.repeat(np.repeat(obj.mask, step, axis=0), step, axis=1)
    row, col = obj.offset[0] * step, obj.offset[1] * step
    big = big[: max(h - row, 0), : max(w - col, 0)]
    return ObjectMask(
        big,
        (row, col),
        score=obj.score,
        class_name=obj.class_name,
        class_score=obj.class_score,
        prompt=obj.prompt,
        source=obj.source,
    )


def overview_rgb(
    source: ImageSource, plane: Sequence[int], max_side: int
) -> tuple[npt.NDArray[np.uint8], int]:
    """The whole plane as ``(h, w, 3)`` uint8, subsampled by an integer ``step``.

    Reads the coarsest pyramid level that still has ``max_side`` pixels on the long side
    (level 0 for single-level images) in horizontal strips, keeping every ``step``-th level-0
    pixel, so memory stays at one strip. Returns ``(rgb, step)``: overview pixel ``(i, j)``
    is level-0 pixel ``(i * step, j * step)``.
    """
    h, w = source.spatial_shape
    step = max(1, math.ceil(max(h, w) / max_side))
    level = source.level_for_step(step)
    fy, fx = source.level_factors(level)
    sy, sx = int(step // fy), int(step // fx)
    strip = max(step, (1 << 22) // max(w, 1) // step * step)  # ~4 M level-0 pixels per read
    out = np.zeros((math.ceil(h / step), math.ceil(w / step), 3), np.uint8)
    for r0 in range(0, h, strip):
        r1 = min(r0 + strip, h)
        rgb = source.read_rgb(r0, 0, r1, w, plane=plane, level=level)
        part = rgb[::sy, ::sx]
        first = r0 // step
        rows = min(part.shape[0], out.shape[0] - first)
        cols = min(part.shape[1], out.shape[1])
        out[first : first + rows, :cols] = part[:rows, :cols]
    return out, step


# ----------------------------------------------------------------------------- model cache


@dataclass
class _ModelCache:
    """Engines built from names, kept between calls (the default model loads once)."""

    backends: dict[tuple[str, str | None, str], Backend] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


# The one piece of process state of the API: without it every call would rebuild the model.
_CACHE = _ModelCache()


def clear_model_cache() -> None:
    """Forget the engines built for ``model=None`` / variant names (frees their memory)."""
    with _CACHE.lock:
        backends = list(_CACHE.backends.values())
        _CACHE.backends.clear()
    for backend in backends:
        if backend.engine is not None:
            backend.engine.close()


def get_backend(model: Any = None, *, device: str = "auto") -> Backend:
    """The engine behind ``model``.

    Args:
        model: ``None`` (the default variant, see :func:`default_variant`), a variant name
            (``"seem-focalt-v1"``; official variants need their weights downloaded with
            ``napari-seem models download NAME``), a checkpoint path (its variant is
            recognised from the keys), a :class:`~napari_seem.predict.predictor.SeemPredictor`, an
            :class:`~napari_seem.engine.Engine`, a
            :class:`~napari_seem.remote.client.SeemClient`, or a :class:`Backend`.
            Engines built from ``None``, names and paths are cached (see
            :func:`clear_model_cache`); objects you pass are used as they are.
        device: torch device for engines built here (``"auto"`` picks CUDA / MPS / CPU).
    """
    if isinstance(model, Backend):
        return model
    if model is None or isinstance(model, str | os.PathLike):
        name = default_variant() if model is None else os.fspath(model)
        return _cached_backend(name, device)
    kind = type(model).__name__
    if kind == "SeemClient":
        return Backend(client=model)
    if kind == "Engine":
        return Backend(engine=model)
    if kind == "SeemPredictor":
        from napari_seem.engine.core import Engine

        return Backend(engine=Engine(model))
    raise TypeError(
        f"model must be None, a variant name, a checkpoint path, a SeemPredictor, an Engine "
        f"or a SeemClient; got {kind}"
    )


def _cached_backend(name: str, device: str) -> Backend:
    path = Path(name).expanduser()
    key = (name, str(path.resolve()) if path.is_file() else None, device)
    with _CACHE.lock:
        backend = _CACHE.backends.get(key)
        if backend is None:
            backend = _build_backend(name, path if path.is_file() else None, device)
            _CACHE.backends[key] = backend
    return backend


def _build_backend(name: str, checkpoint: Path | None, device: str) -> Backend:
    from napari_seem.engine.core import Engine
    from napari_seem.model.build import VARIANTS, build_seem

    if checkpoint is not None and _is_fine_tuned(checkpoint):
        from napari_seem.train.api import load_finetuned

        return Backend(engine=Engine(load_finetuned(checkpoint, device=device)))
    if checkpoint is not None:
        from napari_seem.model.checkpoint import guess_variant, read_state_dict

        state = read_state_dict(checkpoint)
        variant = guess_variant(state)
        if variant is None:
            raise ValueError(
                f"cannot tell which variant the checkpoint {checkpoint} is for: pass "
                "model=SeemPredictor.from_variant(VARIANT, checkpoint=PATH)"
            )
        return Backend(engine=Engine(build_seem(variant, checkpoint=state, device=device)))
    if name not in VARIANTS:
        raise ValueError(
            f"model={name!r} is neither a variant ({', '.join(VARIANTS)}) nor a checkpoint file"
        )
    weights: Path | None = None
    if name.endswith("-v1"):
        from napari_seem.core.hub import cached_path

        weights = cached_path(name)
        if weights is None:
            raise ValueError(
                f"{name} needs its official weights: run `napari-seem models download {name}` "
                "(or pass a checkpoint path as model=)"
            )
    return Backend(engine=Engine(build_seem(name, checkpoint=weights, device=device)))


def _is_fine_tuned(path: Path) -> bool:
    """Whether ``path`` is a weight file :func:`fine_tune` wrote."""
    if path.suffix != ".safetensors":
        return False
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata() or {}
    return meta.get("format") == "napari-seem-trained-parts"


# ----------------------------------------------------------------------------- fine-tuning


def fine_tune(
    images: Any,
    labels: Any,
    class_names: str | Sequence[str] | dict[int, str] = "object",
    *,
    steps: int = 100,
    base: str = "seem-lite",
    checkpoint: str | Path | None = None,
    out: str | Path = "seem-finetuned.safetensors",
    progress: bool = True,
    callback: Callable[[int, float], bool | None] | None = None,
    **options: Any,
) -> Path:
    """Fine-tune a model on your labelled images; returns the written weight file.

    A thin wrapper of :func:`napari_seem.train.fine_tune` (see it for every option).

    Args:
        images: one image ``(H, W)`` (grey) or ``(H, W, 3)`` (RGB), any numeric dtype; or a
            list of such images, or a ``(Z, H, W)`` stack.
        labels: ``(H, W)`` integer instance labels per image (0 = unlabelled, each other
            value one object), e.g. a napari Labels layer's data or ``SeemApp.labels``.
            Unlabelled pixels are not taught as background when ``tasks=("spatial",)``.
        class_names: one name for every object, one per id (``names[i]`` for id ``i + 1``)
            or ``{id: name}``.
        steps: optimizer steps (a CPU runs a few per second for seem-lite).
        base: the variant to start from (``seem-lite``: its shipped weights).
        checkpoint: weights to start from instead (an earlier fine-tune for seem-lite; the
            official file for official variants).
        out: the ``.safetensors`` file to write (the trained parts, a few MB).
        progress: show a progress bar.
        callback: ``callback(step, loss)`` after every step; return True to stop.
        **options: :class:`~napari_seem.train.loop.TrainConfig` fields, e.g.
            ``tasks=("spatial",)`` (only some objects labelled: train clicks only),
            ``crops_per_image=8``, ``num_threads=4``.

    Use the result with ``napari_seem.segment(..., model=path)``, a predictor from
    :func:`napari_seem.train.load_finetuned`, or switch a running app with
    ``app.use_weights(path)``.
    """
    from napari_seem.train.api import fine_tune as run

    return run(
        images,
        labels,
        class_names,
        base=base,
        checkpoint=checkpoint,
        out=out,
        progress=progress,
        callback=callback,
        steps=steps,
        **options,
    )


# ----------------------------------------------------------------------------- prompts


def build_object(
    image_shape: tuple[int, int],
    *,
    points: npt.ArrayLike | None = None,
    point_labels: npt.ArrayLike | None = None,
    boxes: npt.ArrayLike | None = None,
    scribbles: Sequence[npt.ArrayLike] | None = None,
    scribble_labels: npt.ArrayLike | None = None,
    masks: npt.ArrayLike | Sequence[npt.ArrayLike] | None = None,
    text: str | None = None,
) -> list[ObjectPrompt]:
    """The objects the keyword prompts of :func:`segment` describe (validated).

    Everything given describes ONE object, except several ``boxes`` without other visual
    prompts: then each box is its own object.
    """
    visual: list[VisualPrompt] = []
    if points is not None:
        coords = _coords(points, "points")
        if point_labels is None:
            flags = np.ones(len(coords), bool)
        else:
            flags = _labels(point_labels, len(coords), "point_labels")
        if len(coords):
            visual.append(Points(coords, flags))
    box_list: list[Box] = []
    if boxes is not None:
        arr = np.asarray(boxes, dtype=float) if _numeric(boxes) else None
        if arr is None or arr.ndim not in (1, 2) or arr.shape[-1] != 4:
            shape = None if arr is None else arr.shape
            raise PromptError(
                f"boxes must be an (N, 4) array of (row0, col0, row1, col1); got shape {shape}"
            )
        box_list = [Box.from_corners(b[:2], b[2:]) for b in arr.reshape(-1, 4)]
    if scribbles is not None:
        one = _numeric(scribbles) and np.ndim(np.asarray(scribbles)) == 2
        strokes: list[Any] = [scribbles] if one else list(scribbles)
        flags = (
            np.ones(len(strokes), bool)
            if scribble_labels is None
            else _labels(scribble_labels, len(strokes), "scribble_labels")
        )
        for i, (stroke, flag) in enumerate(zip(strokes, flags, strict=True)):
            visual.append(Scribble(_coords(stroke, f"scribbles[{i}]"), positive=bool(flag)))
    if masks is not None:
        mask_list = [masks] if np.ndim(masks) == 2 else list(masks)  # type: ignore[arg-type]
        for i, mask in enumerate(mask_list):
            arr = np.asarray(mask)
            if arr.shape != tuple(image_shape):
                raise PromptError(
                    f"masks[{i}] has shape {arr.shape}; a mask prompt covers the whole image "
                    f"plane, shape {tuple(image_shape)}"
                )
            if arr.dtype != bool and not (arr.dtype.kind in "iu" and arr.max(initial=0) <= 1):
                raise PromptError(
                    f"masks[{i}] must be a bool (or 0/1) array; got dtype {arr.dtype}"
                )
            if not arr.any():
                raise PromptError(f"masks[{i}] is empty: mark the object with True pixels")
            visual.append(MaskPrompt.from_full(arr.astype(bool)))
    objects: list[ObjectPrompt]
    if len(box_list) > 1:
        if visual:
            raise PromptError(
                f"{len(box_list)} boxes and other visual prompts: clicks, scribbles and masks "
                "combine with at most one box (one object); for several objects pass one box "
                "per object and nothing else, or call segment() once per object"
            )
        objects = [ObjectPrompt((b,), text) for b in box_list]  # type: ignore[arg-type]
    elif visual or box_list:
        objects = [ObjectPrompt((*visual, *box_list), text)]  # type: ignore[arg-type]
    else:
        objects = []
    for i, obj in enumerate(objects):
        try:
            obj.check_fits(image_shape)
        except PromptError as exc:
            raise PromptError(f"object {i}: {exc}") from None
    return objects


def _numeric(value: Any) -> bool:
    try:
        return np.asarray(value).dtype.kind in "iuf"
    except ValueError:  # ragged
        return False


def _coords(value: Any, what: str) -> npt.NDArray[np.float64]:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise PromptError(f"{what} must be an (N, 2) array of (row, col); got {value!r}") from None
    if arr.shape == (2,):
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise PromptError(f"{what} must be an (N, 2) array of (row, col); got shape {arr.shape}")
    return arr


def _labels(value: Any, count: int, what: str) -> npt.NDArray[np.bool_]:
    arr = np.asarray(value).reshape(-1) if np.ndim(value) else np.full(count, value)
    if arr.shape != (count,) or not np.isin(arr, (0, 1, True, False)).all():
        raise PromptError(
            f"{what} must hold one 1 (positive) or 0 (negative) per prompt ({count}); "
            f"got {np.asarray(value).tolist()!r}"
        )
    return arr.astype(bool)


def _texts(text: str | Sequence[str] | None) -> list[str]:
    if text is None:
        return []
    items = [text] if isinstance(text, str | TextPrompt) else list(text)
    out = []
    for item in items:
        out.append((item if isinstance(item, TextPrompt) else TextPrompt(item)).text)
    return out


# ----------------------------------------------------------------------------- public API


def segment(
    image: Any,
    *,
    points: npt.ArrayLike | None = None,
    point_labels: npt.ArrayLike | None = None,
    boxes: npt.ArrayLike | None = None,
    scribbles: Sequence[npt.ArrayLike] | None = None,
    scribble_labels: npt.ArrayLike | None = None,
    masks: npt.ArrayLike | Sequence[npt.ArrayLike] | None = None,
    text: str | Sequence[str] | None = None,
    example: ReferringExample | None = None,
    objects: Sequence[ObjectPrompt] | ObjectPrompt | None = None,
    model: Any = None,
    plane: Sequence[int] = (),
    bands: Sequence[int] | None = None,
    grounding_threshold: float = 0.05,
) -> SegmentationResult:
    """Segment objects on one image plane from prompts.

    Args:
        image: numpy / zarr / dask array (``(H, W)``, ``(H, W, C)`` or a stack) or a path.
        points: ``(N, 2)`` clicks, level-0 ``(row, col)``; with ``point_labels`` ``(N,)``
            of 1 (positive, default) or 0 (negative).
        boxes: ``(N, 4)`` boxes ``(row0, col0, row1, col1)`` (pixel-centre corners).
        scribbles: a list of ``(K, 2)`` polylines (brush width 3), with optional
            ``scribble_labels`` ``(len,)`` of 1 / 0.
        masks: an ``(H, W)`` bool mask, or a list of them, marking the object.
        text: with visual prompts, a phrase composed with them ("nucleus" + a click picks
            the nucleus under the click); alone, a phrase or list of phrases to ground:
            every instance of each comes back.
        example: a :class:`ReferringExample` (prompts on another image, with its pixels):
            the matching object on this image is returned.
        objects: explicit :class:`ObjectPrompt` s (one mask each), for full control.
        model: see :func:`get_backend` (default: the cached default model).
        plane: the plane of a stack, ``(z,)`` or ``(t, z)``.
        bands: three channel indices used as R, G, B of a multi-band image.
        grounding_threshold: text grounding keeps further instances whose share of the
            phrase's score is at least this.

    All visual keyword prompts describe ONE object, except several ``boxes`` given alone
    (one object per box). Results come in the order objects, phrases, example.

    Returns:
        A :class:`SegmentationResult` in level-0 pixels of the plane (``to_labels()``).

    Raises:
        PromptError: a malformed prompt, a prompt outside the image, or no prompt at all.
    """
    backend = get_backend(model)
    handle = backend.open(image, bands=bands, plane=plane)
    try:
        shape = handle.image_shape
        visual_given = any(v is not None for v in (points, boxes, scribbles, masks))
        composed = _texts(text) if visual_given else []
        if len(composed) > 1:
            raise PromptError(
                "one phrase composes with visual prompts (they describe one object); "
                f"got {len(composed)}: pass a single string"
            )
        kw_objects = build_object(
            shape,
            points=points,
            point_labels=point_labels,
            boxes=boxes,
            scribbles=scribbles,
            scribble_labels=scribble_labels,
            masks=masks,
            text=composed[0] if composed else None,
        )
        given = [] if objects is None else _object_list(objects, shape)
        grounding = [] if visual_given else _texts(text)
        if example is not None and not isinstance(example, ReferringExample):
            raise PromptError(
                f"example must be a ReferringExample; got {type(example).__name__}: build one "
                "with ReferringExample.from_image(other_image, Points.click(row, col))"
            )
        if not (kw_objects or given or grounding or example is not None):
            raise PromptError(
                "no prompt given: pass points=, boxes=, scribbles=, masks=, text= or example= "
                "(or use segment_everything(image, vocabulary=[...]) for the whole image)"
            )
        found: list[ObjectMask] = [
            backend.predict(handle, obj, object_id=None) for obj in (*kw_objects, *given)
        ]
        if grounding:
            found += backend.ground(handle, grounding, threshold=grounding_threshold)
        if example is not None:
            found += backend.refer(handle, example)
        return SegmentationResult(shape, tuple(found), plane=handle.plane)
    finally:
        backend.close(handle)


def _object_list(
    objects: Sequence[ObjectPrompt] | ObjectPrompt, shape: tuple[int, int]
) -> list[ObjectPrompt]:
    items = [objects] if isinstance(objects, ObjectPrompt) else list(objects)
    for i, obj in enumerate(items):
        if not isinstance(obj, ObjectPrompt):
            raise PromptError(f"objects[{i}] must be an ObjectPrompt; got {type(obj).__name__}")
        try:
            obj.check_fits(shape)
        except PromptError as exc:
            raise PromptError(f"objects[{i}]: {exc}") from None
    return items


def segment_everything(
    image: Any,
    *,
    vocabulary: Sequence[str] | str,
    mode: EverythingMode = "auto",
    model: Any = None,
    plane: Sequence[int] = (),
    bands: Sequence[int] | None = None,
    object_mask_threshold: float = 0.4,
    overlap_threshold: float = 0.8,
    min_area: int = 1,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> SegmentationResult:
    """Every object of the vocabulary's classes on one image plane (generic segmentation).

    Args:
        image: as in :func:`segment`.
        vocabulary: class names (open vocabulary), a list or a comma-separated string.
        mode: ``"auto"`` (the default: ``"points"`` for models that decode prompts in
            windows, such as the embedded seem-lite, else ``"panoptic"``), ``"panoptic"``
            (non-overlapping instances), ``"instance"`` (detections; where they overlap
            the higher score wins), ``"semantic"`` (one object per class and tile, merged
            across tile seams) or ``"points"`` (prompt a grid of points and keep the
            confident, distinct answers, see :mod:`napari_seem.predict.everything`).
        object_mask_threshold, overlap_threshold, min_area: see
            :meth:`napari_seem.predict.predictor.SeemPredictor.segment_everything`.
        progress: called as ``progress(done_tiles, total_tiles)``.
        cancel: set it (from another thread, or from ``progress``) to stop before the
            next tile.

    It runs as the engine's ``"segment"`` job, in process or in the model server behind a
    :class:`~napari_seem.remote.client.SeemClient`: tiles with a halo, seam-aware merging
    (an object crossing a tile border is one object), level-0 crops.

    Returns:
        A :class:`SegmentationResult` with class names; ``class_table()`` lists them.

    Raises:
        PromptError: an empty or repeated vocabulary, or a bad mode.
        Cancelled: ``cancel`` was set.
    """
    names = _vocabulary(vocabulary)
    if not isinstance(mode, str) or mode not in EVERYTHING_MODES:
        raise PromptError(everything_mode_error(mode))
    backend = get_backend(model)
    handle = backend.open(image, bands=bands, plane=plane)
    try:
        return backend.everything(
            handle,
            names,
            mode=mode,
            object_mask_threshold=object_mask_threshold,
            overlap_threshold=overlap_threshold,
            min_area=min_area,
            progress=progress,
            cancel=cancel,
        )
    finally:
        backend.close(handle)


def _vocabulary(vocabulary: Sequence[str] | str) -> list[str]:
    items = vocabulary.split(",") if isinstance(vocabulary, str) else list(vocabulary)
    if not all(isinstance(v, str) for v in items):
        raise PromptError(f"vocabulary must be class names (strings); got {vocabulary!r}")
    names = [v.strip() for v in items]
    if not names or any(not n for n in names):
        raise PromptError(
            f"vocabulary must list class names, e.g. ['nucleus', 'cell']; got {vocabulary!r}"
        )
    if len(set(names)) != len(names):
        raise PromptError(f"vocabulary repeats a class name: {names}")
    return names


def new_object_id() -> str:
    """A fresh id naming one object across refinement rounds."""
    return uuid.uuid4().hex
