"""Images opened on a :class:`~napari_seem.app.backend.ModelBackend`, as the scripting API
and the Jupyter widget use them.

:class:`Backend` wraps one model backend (in-process engine or SeemClient) and speaks in
:class:`ImageHandle` s: an image plane opened on the model, with this process's lazy view
of its pixels. Coordinates are level-0 ``(row, col)`` pixels of the plane.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from napari_seem.app.backend import (
    Answer,
    LocalBackend,
    ModelBackend,
    RemoteBackend,
    predict_answer,
)
from napari_seem.core.io import ImageSource, ImageSourceError, open_image
from napari_seem.core.modes import (
    DEFAULT_EVERYTHING_MODE,
    EverythingMode,
    resolve_everything_mode,
)
from napari_seem.core.progress import Reporter, pair_reporter
from napari_seem.core.prompts import ObjectPrompt, PromptError, ReferringExample
from napari_seem.core.results import ObjectMask, SegmentationResult

if TYPE_CHECKING:
    from napari_seem.engine import Engine
    from napari_seem.remote.client import SeemClient

__all__ = ["Backend", "ImageHandle", "ProgressCallback", "overview_rgb"]

#: ``progress(done, total)``: work units (tiles) finished so far.
ProgressCallback = Callable[[int, int], None]


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
    """One model behind the API and the Jupyter widget: an in-process Engine or a SeemClient.

    Args:
        engine: an in-process engine (wrapped in a :class:`LocalBackend`), or
        client: a client of a model server (wrapped in a :class:`RemoteBackend`), or
        model: any :class:`ModelBackend`.

    Every method blocks; call them from a worker thread in UIs.
    """

    def __init__(
        self,
        *,
        engine: Engine | None = None,
        client: SeemClient | None = None,
        model: ModelBackend | None = None,
    ) -> None:
        if sum(x is not None for x in (engine, client, model)) != 1:
            raise ValueError("a Backend wraps exactly one Engine, SeemClient or ModelBackend")
        if engine is not None:
            model = LocalBackend(engine)
        elif client is not None:
            model = RemoteBackend(client)
        assert model is not None
        self.model: ModelBackend = model

    @property
    def engine(self) -> Engine | None:
        """The in-process engine, or ``None`` for a server."""
        return self.model.engine if isinstance(self.model, LocalBackend) else None

    @property
    def client(self) -> SeemClient | None:
        """The server's client, or ``None`` for an in-process engine."""
        return self.model.client if isinstance(self.model, RemoteBackend) else None

    @property
    def name(self) -> str:
        return self.model.name

    # ---- images ---------------------------------------------------------------------------

    def open(
        self,
        image: Any,
        *,
        bands: Sequence[int] | None = None,
        plane: Sequence[int] = (),
    ) -> ImageHandle:
        """Open ``image`` (array or path) on the model; ``plane`` picks a stack's plane."""
        try:
            source = image if isinstance(image, ImageSource) else open_image(image, bands=bands)
        except ImageSourceError as exc:
            raise PromptError(f"cannot open the image: {exc}") from None
        raw = source.levels[0].array if isinstance(image, ImageSource) else image
        r, g, b = source.bands
        plane_t = tuple(int(p) for p in plane)
        if len(plane_t) != len(source.plane_shape):
            raise PromptError(
                f"the image has plane axes {source.plane_axes!r} of sizes {source.plane_shape}: "
                f"pass plane= with one index per axis (got {plane_t})"
            )
        sid = self.model.open_image(raw, bands=(int(r), int(g), int(b)), plane=plane_t)
        return ImageHandle(sid, source, plane_t, source.spatial_shape)

    def close(self, handle: ImageHandle) -> None:
        self.model.close_session(handle.session_id)

    # ---- tasks ----------------------------------------------------------------------------

    def predict(
        self, handle: ImageHandle, prompt: ObjectPrompt, *, object_id: str | None = None
    ) -> ObjectMask:
        """One object's mask (level-0 crop + offset); ``object_id`` keeps round memory."""
        return self.model.predict(handle.session_id, prompt, object_id=object_id)

    def predict_answer(
        self,
        handle: ImageHandle,
        prompt: ObjectPrompt,
        *,
        object_id: str | None = None,
        vocabulary: Sequence[str] | None = None,
    ) -> Answer:
        """:meth:`predict` with whether the object was cut at the model's tile limit;
        ``vocabulary`` names a text-less object by its best class."""
        return predict_answer(
            self.model, handle.session_id, prompt, object_id=object_id, vocabulary=vocabulary
        )

    def use_weights(self, path: str | Path | None) -> str:
        """Run this model with a fine-tuned weight file (``None``: its base weights again);
        returns the checkpoint id now in use. Every image open on the model gets a fresh
        feature cache; a server reads ``path`` on ITS machine."""
        return self.model.use_weights(path)

    def forget(self, handle: ImageHandle, object_id: str) -> None:
        self.model.forget_object(handle.session_id, object_id)

    def ground(
        self, handle: ImageHandle, texts: Sequence[str], *, threshold: float = 0.05
    ) -> list[ObjectMask]:
        """Every instance of each phrase on the image."""
        found: list[ObjectMask] = []
        for text in texts:
            found += self.model.ground(handle.session_id, text, threshold=threshold)
        return found

    def refer(self, handle: ImageHandle, example: ReferringExample) -> list[ObjectMask]:
        """What ``example`` marks on another image, found on this one."""
        if example.image is None:
            raise PromptError(
                "the referring example has no pixels: build it with "
                "ReferringExample.from_image(other_image, prompts) (or pick it from another "
                "widget)"
            )
        other = self.open(example.image)
        try:
            prompt = ObjectPrompt(example.visual, label=example.label)
            found = self.model.refer(handle.session_id, other.session_id, prompt)
        finally:
            self.close(other)
        return [named(obj, example.label) for obj in found]

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
        reporter: Reporter | None = None,
    ) -> SegmentationResult:
        """Generic segmentation of the plane with progress and cancel: the engine's
        ``"segment"`` job (tiles decoded in the model process, objects crossing tile
        seams merged into one, see :mod:`napari_seem.engine.kinds.segment`).

        ``mode``: as in :func:`napari_seem.segment_everything` (``"auto"`` runs ``"points"``
        for models that decode prompts in windows, else ``"panoptic"``). ``progress(done,
        total)`` counts tiles (``reporter``, a :data:`~napari_seem.core.progress.Reporter`,
        instead: the apps' shape); ``cancel`` stops the job before its next tile.

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
        crop = self._segment(handle, params, reporter or pair_reporter(progress), cancel)
        # rows carry the concrete mode the job ran; the fallback (rows without a source:
        # older servers, which run panoptic for "auto") names it as well as it can
        engine = self.engine
        source = resolve_everything_mode(mode, None if engine is None else engine.predictor)
        return SegmentationResult(
            handle.image_shape, tuple(crop.to_objects(source=source)), plane=handle.plane
        )

    def _segment(
        self,
        handle: ImageHandle,
        params: dict[str, Any],
        reporter: Reporter | None,
        cancel: threading.Event | None,
    ) -> Any:
        if self.client is None:
            return self.model.segment(handle.session_id, params, reporter=reporter, cancel=cancel)
        from napari_seem.remote.client import RemoteError

        try:
            return self.model.segment(handle.session_id, params, reporter=reporter, cancel=cancel)
        except RemoteError as exc:  # the server refused the parameters
            if exc.status is not None and 400 <= exc.status < 500:
                raise PromptError(exc.message) from None
            raise


def named(obj: ObjectMask, name: str | None) -> ObjectMask:
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
