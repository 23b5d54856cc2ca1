"""The widget's model side, without Qt: one model process and the sessions opened on it.

Everything here BLOCKS (it waits on :class:`~napari_seem.remote.client.SeemClient`
futures), so the widget only ever calls it through :meth:`Backend.submit`, which runs it
on the backend's own worker threads and hands back a ``Future``. The GUI thread never
waits on the model.

How an image layer reaches the model process (:class:`ImageRef`):

1. a layer read from a zarr / OME-Zarr / TIFF path (``metadata["napari_seem"]["path"]``
   or ``layer.source.path``) is opened **by path**: pixels never travel;
2. otherwise, with a local model process, the layer's level-0 array is staged once as an
   OME-Zarr in a private staging folder the process may read (chunk by chunk);
3. otherwise (a remote server) it is uploaded once with ``client.upload_image``.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from napari_seem.core.labels import LabelsCrop
from napari_seem.core.modes import DEFAULT_EVERYTHING_MODE
from napari_seem.core.progress import Cancelled  # the one cancelled exception
from napari_seem.core.prompts import MaskPrompt, ObjectPrompt, Points, TextPrompt
from napari_seem.core.results import ObjectMask
from napari_seem.core.variants import DEFAULT_VARIANT
from napari_seem.remote.client import RemoteError, SeemClient

__all__ = [
    "Backend",
    "Cancelled",
    "ImageRef",
    "ModelChoice",
    "TrainingPair",
    "labels_crop_objects",
]

T = TypeVar("T")
Progress = Callable[[int, int], None]
#: ``progress(done, total, message)`` of a fine-tune (optimizer steps; the loss in text).
StepProgress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class ModelChoice:
    """Which model process to use.

    Attributes:
        variant: model variant name for a local process (``napari-seem models`` lists them;
            default: the shipped ``seem-lite``).
        checkpoint: weights file for an official variant (``None``: the official weights
            from the cache, downloaded on first use).
        url, token: a remote ``napari-seem serve`` instead of a local process.
        tile, halo: tiling of a local process (model input size and context pixels).
        device: torch device of a local process (``auto`` picks CUDA when there is one).
        read_roots: more folders a local process may read images from by path (besides
            the home folder and the current directory).
    """

    variant: str = field(default_factory=lambda: DEFAULT_VARIANT)
    checkpoint: str | None = None
    url: str | None = None
    token: str | None = None
    tile: int = 512
    halo: int = 64
    device: str = "auto"
    read_roots: tuple[str, ...] = ()

    @property
    def remote(self) -> bool:
        return bool(self.url)

    def describe(self) -> str:
        if self.remote:
            return f"server {self.url}"
        weights = f" ({Path(self.checkpoint).name})" if self.checkpoint else ""
        return f"{self.variant}{weights}"


@dataclass(frozen=True, eq=False)
class ImageRef:
    """One image layer as the model process sees it (built on the GUI thread, cheap).

    Attributes:
        key: identifies the layer's pixels (layer id and data version).
        name: the layer's name (for messages).
        image_shape: level-0 ``(H, W)``.
        plane_shape: sizes of the leading stack axes (``()`` for a 2-D image).
        axes: axis letters of ``array`` (``yx``, ``zyx``, ``yxc``, ...).
        path: a store the model process can open itself, or ``None``.
        bands: channel indices for R, G, B (a channel of a multi-channel store).
        array: the level-0 data (numpy / dask / zarr, not read here) for staging.
    """

    key: str
    name: str
    image_shape: tuple[int, int]
    plane_shape: tuple[int, ...]
    axes: str
    path: str | None = None
    bands: tuple[int, int, int] | None = None
    array: Any = field(default=None, repr=False)


@dataclass(frozen=True, eq=False)
class TrainingPair:
    """One plane of committed labels to fine-tune on.

    Attributes:
        image: the image layer the labels were drawn over.
        plane: the stack plane (``()`` for 2-D).
        labels: ``(H, W)`` integer labels of that plane (a copy: the layer is never touched).
        classes: ``{id: class name}`` for every object id in ``labels``.
    """

    image: ImageRef
    plane: tuple[int, ...]
    labels: np.ndarray = field(repr=False)
    classes: dict[int, str]


class Backend:
    """A model process and the sessions of napari layers on it.

    Args:
        client: the connected client.
        staging: a folder the (local) model process may read; in-memory layers are
            staged there as OME-Zarr. ``None`` for a remote server.
        owns_staging: remove ``staging`` on :meth:`close`.
    """

    def __init__(
        self, client: SeemClient, *, staging: Path | None = None, owns_staging: bool = False
    ) -> None:
        self.client = client
        self.staging = staging
        self._owns_staging = owns_staging
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="seem-napari")
        self._lock = threading.Lock()
        # held while a session is opened: live mode and prefetch may ask for the same layer
        # at once, and its staging copy must be written once
        self._open_lock = threading.RLock()
        self._sessions: dict[tuple[str, tuple[int, ...]], str] = {}
        self._opened: dict[str, tuple[str, str | None]] = {}  # key -> (path or image id, kind)
        self.info = client.info().result()  # model, device, weights: shown in the widget

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def start(
        cls, choice: ModelChoice, *, download: Callable[[int, int | None], None] | None = None
    ) -> Backend:
        """Start (local) or connect to (remote) a model process. Blocks: call via a thread.

        An official variant without a checkpoint uses its verified cached weights, and
        downloads them first when they are not cached (``download(bytes_done, total)``
        reports progress).

        Raises:
            DownloadError: official weights are needed but cannot be fetched (offline):
                the message says where to get them and to pass the file as checkpoint.
            ServerUnavailableError: the process did not start (e.g. a bad checkpoint: the
                message carries its error) or the server cannot be reached.
            RemoteError: the server refused the token.
        """
        if choice.remote:
            assert choice.url is not None
            return cls(SeemClient(choice.url, choice.token or None))  # info() checks URL + token
        checkpoint = choice.checkpoint
        if checkpoint is None:
            from napari_seem.core.hub import OFFICIAL_WEIGHTS, cached_path, download_official

            if choice.variant in OFFICIAL_WEIGHTS:
                found = cached_path(choice.variant)
                if found is None:
                    found = download_official(choice.variant, progress=download)
                checkpoint = str(found)
        staging = Path(tempfile.mkdtemp(prefix="napari-seem-staging-"))
        roots = [staging, Path.home(), Path.cwd(), *(Path(r) for r in choice.read_roots)]
        try:
            client = SeemClient.spawn_local(
                variant=choice.variant,
                checkpoint=checkpoint,
                allow_roots=roots,
                tile=choice.tile,
                halo=choice.halo,
                device=choice.device,
            )
        except Exception:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return cls(client, staging=staging, owns_staging=True)

    def close(self) -> None:
        """Stop the worker threads and the local model process; remove staged images."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()
        if self._owns_staging and self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` on a backend thread."""
        return self._pool.submit(fn, *args, **kwargs)

    @property
    def alive(self) -> bool:
        """False when the local model process has exited."""
        process = self.client.process
        return process is None or process.poll() is None

    # ------------------------------------------------------------------ sessions

    def forget(self, key_prefix: str) -> None:
        """Drop the sessions of a layer whose pixels changed (they are reopened on use)."""
        with self._lock:
            for k in [k for k in self._sessions if k[0].startswith(key_prefix)]:
                del self._sessions[k]

    def session(self, image: ImageRef, plane: Sequence[int] = ()) -> str:
        """The session id of ``image`` on ``plane``, opening it on first use. Blocks."""
        plane = tuple(int(p) for p in plane)
        if len(plane) != len(image.plane_shape):
            raise ValueError(
                f"layer {image.name!r} has stack axes of sizes {image.plane_shape}: a prompt "
                f"needs one index per axis, got plane {plane}"
            )
        with self._open_lock:
            with self._lock:
                found = self._sessions.get((image.key, plane))
            if found is not None:
                return found
            session_id = self._open(image, plane)
            with self._lock:
                self._sessions[(image.key, plane)] = session_id
            return session_id

    def _open(self, image: ImageRef, plane: tuple[int, ...]) -> str:
        if image.path is not None:
            try:
                return (
                    self.client.open_session(image.path, bands=image.bands, plane=plane)
                    .result()
                    .session_id
                )
            except RemoteError as exc:
                if exc.type != "PathNotAllowed" or image.array is None:
                    raise
        if image.array is None:
            raise ValueError(f"layer {image.name!r} has no pixels to send to the model")
        if self.staging is not None:
            path = self._staged(image)
            return self.client.open_session(path, plane=plane).result().session_id
        with self._lock:
            image_id = self._opened.get(image.key, (None, None))[0]
        if image_id is None:
            # A remote server: small in-memory layers travel once; the server refuses
            # large ones (BodyTooLarge), whose message says to share them as zarr by path.
            array = np.asarray(image.array)
            image_id = self.client.upload_image(array, axes=image.axes).result()
            with self._lock:
                self._opened[image.key] = (image_id, "upload")
        reply = self.client.open_session(image_id=image_id, plane=list(plane)).result()
        return str(reply.session_id)

    def _staged(self, image: ImageRef) -> str:
        from napari_seem._napari.ome_zarr import write_ome_image

        assert self.staging is not None
        with self._open_lock:
            with self._lock:
                known = self._opened.get(image.key)
            if known is not None:
                return known[0]
            safe = "".join(ch if ch.isalnum() else "-" for ch in image.key)
            path = write_ome_image(self.staging / f"{safe}.zarr", image.array, image.axes)
            with self._lock:
                self._opened[image.key] = (str(path), "staged")
            return str(path)

    # ------------------------------------------------------------------ requests (blocking)

    def predict(
        self,
        image: ImageRef,
        plane: Sequence[int],
        prompt: ObjectPrompt,
        *,
        object_id: str | None = None,
    ) -> ObjectMask:
        """One object from visual (+ text) prompts; ``object_id`` keeps the memory."""
        session = self.session(image, plane)
        return self.client.predict(session, prompt, object_id=object_id).result()

    def ground(
        self,
        image: ImageRef,
        plane: Sequence[int],
        text: str,
        *,
        box: tuple[int, int, int, int] | None = None,
    ) -> list[ObjectMask]:
        """Every instance a phrase names (text alone)."""
        session = self.session(image, plane)
        return list(self.client.ground(session, text, box).result())

    def refer(
        self,
        image: ImageRef,
        plane: Sequence[int],
        example: ImageRef,
        example_plane: Sequence[int],
        example_prompt: ObjectPrompt,
        *,
        box: tuple[int, int, int, int] | None = None,
    ) -> list[ObjectMask]:
        """Objects like the example marked on another image (best first)."""
        session = self.session(image, plane)
        example_session = self.session(example, example_plane)
        return list(self.client.refer(session, example_session, example_prompt, box).result())

    def prefetch(
        self, image: ImageRef, plane: Sequence[int], box: tuple[int, int, int, int]
    ) -> str:
        """Start encoding the tiles of ``box`` ahead of the next click; returns the job id."""
        session = self.session(image, plane)
        return self.client.start_job(session, box=box).result().job_id

    def cancel_job(self, job_id: str) -> None:
        self.client.cancel_job(job_id).result()

    # ------------------------------------------------------------------ weights

    def fine_tune(
        self,
        pairs: Sequence[TrainingPair],
        *,
        steps: int,
        progress: StepProgress,
        cancel: threading.Event,
        **options: Any,
    ) -> dict[str, Any]:
        """Fine-tune the model process's model on ``pairs`` (its ``"fine_tune"`` job), which
        then runs the new weights. Blocks.

        The labels travel as uploads (deleted afterwards); the images are the layers'
        sessions. ``options``: more job parameters (``tasks``, ``crops_per_image``, ...).

        Returns:
            The job's info: ``weights`` (the file, on the model process's machine),
            ``steps``, ``loss``, ``seconds``, ``objects``...

        Raises:
            Cancelled: ``cancel`` was set; the model keeps its weights.
            RuntimeError: the job failed in the model process (the model keeps its weights).
        """
        import contextlib
        import time

        uploads: list[str] = []
        try:
            data = []
            for pair in pairs:
                session = self.session(pair.image, pair.plane)
                labels = np.ascontiguousarray(pair.labels)
                labels_id = self.client.upload_image(labels).result()
                uploads.append(labels_id)
                names = {str(k): v for k, v in pair.classes.items()}
                data.append({"image": session, "labels": labels_id, "class_name": names})
            if cancel.is_set():
                raise Cancelled
            started = self.client.start_fine_tune(
                str(data[0]["image"]), data, steps=steps, **options
            ).result()
            job_id = started.job_id
            asked = False
            while True:
                if cancel.is_set() and not asked:
                    self.client.cancel_job(job_id).result()
                    asked = True
                status = self.client.job_status(job_id).result()
                progress(status.done, max(status.total, 1), status.message or "")
                if status.state == "done":
                    self.info = self.client.info().result()
                    return dict(status.info or {})
                if status.state == "cancelled":
                    raise Cancelled
                if status.state == "failed":
                    raise RuntimeError(f"fine-tuning failed in the model process: {status.error}")
                time.sleep(0.2)
        finally:
            for image_id in uploads:
                with contextlib.suppress(Exception):
                    self.client.delete_image(image_id).result()

    def use_base_weights(self) -> str:
        """Switch the model process back to its base weights; returns their id."""
        reply = self.client.use_base_weights().result()
        self.info = self.client.info().result()
        return reply.checkpoint

    def weights_path(self) -> str | None:
        """The fine-tuned weight file the model process runs with (None: base weights)."""
        return self.client.weights().result().path

    def save_weights(self, destination: str | Path) -> Path:
        """Copy the weight file in use to ``destination`` on this machine."""
        return self.client.download_weights(destination).result()

    # ------------------------------------------------------------------ long runs

    def segment_everything(
        self,
        image: ImageRef,
        plane: Sequence[int],
        vocabulary: Sequence[str],
        *,
        box: tuple[int, int, int, int] | None,
        progress: Progress,
        cancel: threading.Event,
        object_mask_threshold: float = 0.4,
        step: int = 64,
        min_area: int = 16,
        mode: str = DEFAULT_EVERYTHING_MODE,
    ) -> list[ObjectMask]:
        """Segment every object in ``box`` (default the whole plane).

        Runs the engine's ``"segment"`` job: ``mode`` decoding (``"auto"``: ``"points"``
        for models that decode prompts in windows, such as seem-lite, else
        ``"panoptic"``; see ``SeemPredictor.segment_everything``) with ``vocabulary`` on
        every tile, objects crossing tile seams merged into one, each named by its class
        (``object_mask_threshold``: panoptic: least class probability of a kept object;
        ``min_area``: smaller objects are dropped). Progress counts tiles.

        Without a vocabulary (SEEM's panoptic head needs class names), or on an older
        server without the ``"segment"`` job, it prompts a grid of clicks every ``step``
        level-0 pixels instead, skipping clicks that land on an object already found (a
        click's object is kept when it covers at least ``min_area`` pixels and is mostly
        new), composing each click with the vocabulary when it holds exactly one term.

        Raises:
            Cancelled: ``cancel`` was set; objects found so far are lost.
        """
        h, w = image.image_shape
        r0, c0, r1, c1 = box or (0, 0, h, w)
        session = self.session(image, plane)
        if vocabulary:
            params: dict[str, Any] = {
                "vocabulary": list(vocabulary),
                "object_mask_threshold": float(object_mask_threshold),
                "min_area": int(min_area),
            }
            # "auto" is the job's default: left out, a server older than the modes runs its
            # own default (panoptic) instead of refusing the parameter
            if mode != DEFAULT_EVERYTHING_MODE:
                params["mode"] = mode
            job = self._segment_job(session, params, (r0, c0, r1, c1), progress, cancel)
            if job is not None:
                return job
        text = TextPrompt(vocabulary[0]) if len(vocabulary) == 1 else None
        rows = np.arange(r0 + step // 2, r1, step)
        cols = np.arange(c0 + step // 2, c1, step)
        grid = [(int(r), int(c)) for r in rows for c in cols]
        covered = np.zeros((r1 - r0, c1 - c0), dtype=bool)
        found: list[ObjectMask] = []
        progress(0, len(grid))
        for done, (row, col) in enumerate(grid, start=1):
            if cancel.is_set():
                raise Cancelled
            if not covered[row - r0, col - c0]:
                prompt = ObjectPrompt((Points.click(row, col),), text)
                obj = self.client.predict(session, prompt).result()
                kept = _new_part(obj, covered, (r0, c0), min_area)
                if kept is not None:
                    found.append(kept)
            progress(done, len(grid))
        return found

    def _segment_job(
        self,
        session: str,
        params: dict[str, Any],
        box: tuple[int, int, int, int],
        progress: Progress,
        cancel: threading.Event,
    ) -> list[ObjectMask] | None:
        """Run the engine's ``"segment"`` job; ``None`` when the engine has no such kind
        (a server older than the job: its message names the unknown kind)."""
        import time

        try:
            status = self.client.start_job(session, kind="segment", box=box, params=params).result()
        except RemoteError as exc:
            if "unknown job kind" in exc.message:
                return None
            raise
        job_id = status.job_id
        while True:
            if cancel.is_set():
                self.client.cancel_job(job_id).result()
                raise Cancelled
            status = self.client.job_status(job_id).result()
            progress(status.done, max(status.total, 1))
            if status.state == "done":
                return labels_crop_objects(self.client.job_result(job_id).result())
            if status.state == "cancelled":
                raise Cancelled
            if status.state == "failed":
                raise RuntimeError(
                    f"segment everything failed in the model process: {status.error}"
                )
            time.sleep(0.2)

    def propagate(
        self,
        image: ImageRef,
        start_plane: Sequence[int],
        start: ObjectMask,
        *,
        axis: int = 0,
        direction: int = 1,
        progress: Progress,
        cancel: threading.Event,
        on_plane: Callable[[tuple[int, ...], ObjectMask], None],
        min_area: int = 8,
    ) -> int:
        """Follow one object through a stack, plane by plane, from ``start_plane``.

        The referring rule: the mask on the previous plane is the example for the next
        (``client.refer`` with the previous plane's session as the example). It stops at
        the stack's end, on Cancel, or when the object is gone (an empty mask, or fewer
        than ``min_area`` pixels).

        Args:
            axis: which stack axis (index into ``plane_shape``) to walk.
            direction: ``+1`` (forward) or ``-1`` (backward).
            on_plane: called with ``(plane, mask)`` for every plane the object is found on
                (from this worker thread).

        Returns:
            The number of planes the object was found on (the start plane excluded).
        """
        plane = list(int(p) for p in start_plane)
        size = image.plane_shape[axis]
        stop = size if direction > 0 else -1
        total = abs(stop - plane[axis]) - 1
        previous, previous_plane = start, tuple(plane)
        found = 0
        progress(0, max(total, 1))
        for step, index in enumerate(range(plane[axis] + direction, stop, direction), start=1):
            if cancel.is_set():
                raise Cancelled
            plane[axis] = index
            here = tuple(plane)
            obj = self._follow(image, previous_plane, previous, here)
            progress(step, max(total, 1))
            if obj is None or obj.area < min_area:
                break
            on_plane(here, obj)
            found += 1
            previous, previous_plane = obj, here
        return found

    def _follow(
        self,
        image: ImageRef,
        previous_plane: tuple[int, ...],
        previous: ObjectMask,
        plane: tuple[int, ...],
    ) -> ObjectMask | None:
        example = ObjectPrompt((MaskPrompt(previous.mask, previous.offset),))
        answers = self.refer(image, plane, image, previous_plane, example)
        return answers[0] if answers and not answers[0].is_empty else None


def _new_part(
    obj: ObjectMask, covered: np.ndarray, origin: tuple[int, int], min_area: int
) -> ObjectMask | None:
    """``obj`` minus what ``covered`` (a region's ``(h, w)`` bool) holds, if it is mostly new.

    Marks the kept part in ``covered``. The object is clipped to the region.
    """
    if obj.is_empty:
        return None
    (row, col), (h, w) = obj.offset, obj.mask.shape
    r0, c0 = origin
    rh, rw = covered.shape
    top, left = max(row - r0, 0), max(col - c0, 0)
    bottom, right = min(row - r0 + h, rh), min(col - c0 + w, rw)
    if bottom <= top or right <= left:
        return None
    crop = obj.mask[top - (row - r0) : bottom - (row - r0), left - (col - c0) : right - (col - c0)]
    window = covered[top:bottom, left:right]
    new = crop & ~window
    area = int(crop.sum())
    if int(new.sum()) < max(min_area, area // 2):
        return None
    window |= new
    return ObjectMask(
        new,
        (top + r0, left + c0),
        score=obj.score,
        class_name=obj.class_name,
        class_score=obj.class_score,
        source="points",  # a grid of clicks, like the "points" mode of segment everything
    )


def labels_crop_objects(crop: LabelsCrop) -> list[ObjectMask]:
    """The objects of a job's ``LabelsCrop`` (``labels`` ``(h, w)`` uint32 at ``offset``,
    ``classes`` rows with ``id``, ``class_name``, ``score``), one per id, level-0.

    Each object's ``source`` is its row's (the concrete mode the job ran: ``"panoptic"``,
    ``"points"``, ...); ``"panoptic"`` only for rows without one (older servers)."""
    return crop.to_objects(source="panoptic")
