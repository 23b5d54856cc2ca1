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

from napari_seem.app.backend import RemoteBackend, predict_answer
from napari_seem.app.everything import everything_in_box
from napari_seem.app.propagate import propagate
from napari_seem.core.labels import LabelsCrop
from napari_seem.core.modes import DEFAULT_EVERYTHING_MODE
from napari_seem.core.progress import Cancelled, Reporter, check_cancelled
from napari_seem.core.prompts import ObjectPrompt
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
        #: the one model protocol of the apps (see :mod:`napari_seem.app.backend`)
        self.model = RemoteBackend(client)
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
        #: called (from a worker thread) with a sentence for the user, e.g. an object cut
        #: at the tile limit; the widget shows it
        self.on_notice: Callable[[str], None] | None = None

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
            image_id = self.model.upload(image.array, axes=image.axes)
            with self._lock:
                self._opened[image.key] = (image_id, "upload")
        return self.model.open_upload(image_id, plane=plane)

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
        vocabulary: Sequence[str] | None = None,
    ) -> ObjectMask:
        """One object from visual (+ text) prompts; ``object_id`` keeps the memory and
        ``vocabulary`` names an object without text by its best class (never background).

        An object cut at the model's tile limit is returned as cut, and :attr:`on_notice`
        (when set) gets the sentence to show the user.
        """
        session = self.session(image, plane)
        answer = predict_answer(
            self.model, session, prompt, object_id=object_id, vocabulary=vocabulary
        )
        if answer.notice is not None and self.on_notice is not None:
            self.on_notice(answer.notice)
        return answer.mask

    def ground(
        self,
        image: ImageRef,
        plane: Sequence[int],
        text: str,
        *,
        box: tuple[int, int, int, int] | None = None,
    ) -> list[ObjectMask]:
        """Every instance a phrase names (text alone)."""
        return self.model.ground(self.session(image, plane), text, box=box)

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
        return self.model.refer(session, example_session, example_prompt, box=box)

    def prefetch(
        self, image: ImageRef, plane: Sequence[int], box: tuple[int, int, int, int]
    ) -> str:
        """Start encoding the tiles of ``box`` ahead of the next click; returns the job id."""
        return self.model.prefetch(self.session(image, plane), box)

    def cancel_job(self, job_id: str) -> None:
        self.model.cancel_job(job_id)

    # ------------------------------------------------------------------ weights

    def fine_tune(
        self,
        pairs: Sequence[TrainingPair],
        *,
        steps: int,
        reporter: Reporter | None,
        cancel: threading.Event,
        **options: Any,
    ) -> dict[str, Any]:
        """Fine-tune the model process's model on ``pairs`` (its ``"fine_tune"`` job), which
        then runs the new weights. Blocks.

        The labels travel as uploads (deleted afterwards); the images are the layers'
        sessions. ``options``: more job parameters (``tasks``, ``crops_per_image``, ...).
        ``reporter`` counts optimizer steps (the loss in its message).

        Returns:
            The job's info: ``weights`` (the file, on the model process's machine),
            ``steps``, ``loss``, ``seconds``, ``objects``...

        Raises:
            Cancelled: ``cancel`` was set; the model keeps its weights.
            JobFailed: the job failed in the model process (the model keeps its weights).
        """
        import contextlib

        uploads: list[str] = []
        try:
            data = []
            for pair in pairs:
                session = self.session(pair.image, pair.plane)
                labels_id = self.model.upload(np.ascontiguousarray(pair.labels))
                uploads.append(labels_id)
                names = {str(k): v for k, v in pair.classes.items()}
                data.append({"image": session, "labels": labels_id, "class_name": names})
            check_cancelled(cancel, "fine-tuning")
            started = self.client.start_fine_tune(
                str(data[0]["image"]), data, steps=steps, **options
            ).result()
            status = self.model.follow(
                started.job_id,
                reporter=reporter,
                cancel=cancel,
                what="fine-tuning",
                unit="steps",
                interval=0.2,
            )
            self.info = self.client.info().result()
            return dict(getattr(status, "info", None) or {})
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
        reporter: Reporter | None,
        cancel: threading.Event,
        object_mask_threshold: float = 0.4,
        step: int = 64,
        min_area: int = 16,
        mode: str = DEFAULT_EVERYTHING_MODE,
    ) -> list[ObjectMask]:
        """Segment every object in ``box`` (default the whole plane); see
        :func:`napari_seem.app.everything.everything_in_box` (the ``"segment"`` job, or a
        grid of clicks every ``step`` pixels without a vocabulary or on an older server).

        Raises:
            Cancelled: ``cancel`` was set; objects found so far are lost.
        """
        return everything_in_box(
            self.model,
            self.session(image, plane),
            image.image_shape,
            vocabulary,
            box=box,
            reporter=reporter,
            cancel=cancel,
            object_mask_threshold=object_mask_threshold,
            step=step,
            min_area=min_area,
            mode=mode,
        )

    def propagate(
        self,
        image: ImageRef,
        start_plane: Sequence[int],
        start: ObjectMask,
        *,
        axis: int = 0,
        direction: int = 1,
        reporter: Reporter | None,
        cancel: threading.Event,
        on_plane: Callable[[tuple[int, ...], ObjectMask], None],
        min_area: int = 8,
    ) -> int:
        """Follow one object through a stack from ``start_plane``; see
        :func:`napari_seem.app.propagate.propagate` (the previous plane's mask is the
        example for the next). Returns the number of planes it was found on."""
        return propagate(
            self.model,
            lambda plane: self.session(image, plane),
            image.plane_shape,
            tuple(int(p) for p in start_plane),
            start,
            axis=axis,
            direction=direction,
            reporter=reporter,
            cancel=cancel,
            on_plane=on_plane,
            min_area=min_area,
        )


def labels_crop_objects(crop: LabelsCrop) -> list[ObjectMask]:
    """The objects of a job's ``LabelsCrop`` (``labels`` ``(h, w)`` uint32 at ``offset``,
    ``classes`` rows with ``id``, ``class_name``, ``score``), one per id, level-0.

    Each object's ``source`` is its row's (the concrete mode the job ran: ``"panoptic"``,
    ``"points"``, ...); ``"panoptic"`` only for rows without one (older servers)."""
    return crop.to_objects(source="panoptic")
