"""``SeemWidget``: an anywidget canvas for SEEM prompts on (huge) images in Jupyter.

The browser shows a subsampled overview of the image plane plus, when zoomed in, a view
crop fetched from Python on pan / zoom; it draws the prompts, the preview mask and the
committed labels, and sends every prompt and button press back here. Images and masks
travel as raw bytes (binary traitlets and message buffers), never as base64 JSON.

Browser -> Python:

- ``prompt_data`` (synced list): the current object's prompts, level-0 ``(row, col)``
  (see :func:`napari_seem._jupyter.state.prompt_from_json`);
- custom messages ``{"type": "action", "name": ...}`` (segment, commit, undo, clear,
  everything, refer, cancel) and ``{"type": "view", "box", "size", "seq"}`` (a crop for
  the canvas).

Python -> browser: synced traitlets (overview, labels overview, preview mask, class table,
status, progress) and ``{"type": "view"}`` replies with buffers ``[rgba, labels]``.

All model work runs on one worker thread, so the kernel stays responsive; Python callers
get blocking methods (``segment()`` ...) and :meth:`SeemWidget.wait`.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import anywidget
import numpy as np
import traitlets as t

from napari_seem._jupyter.state import (
    LabelStore,
    object_prompt,
    prompt_from_json,
    prompt_to_json,
    read_view,
    rgba_bytes,
    subsampled_mask,
)
from napari_seem.api import get_backend
from napari_seem.app.images import Backend, ImageHandle, overview_rgb
from napari_seem.core.io import ImageSource, ImageSourceError, open_image
from napari_seem.core.modes import (
    DEFAULT_EVERYTHING_MODE,
    EVERYTHING_MODES,
    EverythingMode,
)
from napari_seem.core.progress import Cancelled, Progress
from napari_seem.core.prompts import (
    Box,
    Points,
    PromptError,
    PromptSet,
    ReferringExample,
    Scribble,
    TextPrompt,
    VisualPrompt,
)
from napari_seem.core.results import SegmentationResult

__all__ = ["SeemWidget"]

_STATIC = Path(__file__).parent / "static"
_log = logging.getLogger(__name__)
#: Long side of the overview image sent to the browser.
OVERVIEW_SIDE = 1024
#: Longest side of a view crop (the browser asks for its canvas size, capped here).
VIEW_SIDE = 2048


class SeemWidget(anywidget.AnyWidget):
    """Click, box and scribble prompts on an image; SEEM answers with masks.

    Args:
        image: numpy / zarr / dask array or path (as :func:`napari_seem.core.io.open_image`).
        model: the engine (see :func:`napari_seem.api.get_backend`): None for the
            cached default model, a variant name, a SeemPredictor, an Engine or a SeemClient.
        plane: the plane of a stack, ``(z,)``.
        bands: three channel indices for R, G, B of a multi-band image.
        labels: where committed objects are painted: an ``(H, W)`` integer numpy array or
            writable zarr array; default a new uint32 numpy array (zarr for huge images).
        vocabulary: class names used by Everything and to name a clicked object: with an
            empty text box it gets its best class of this list (never "background"); a
            phrase in the text box composes with the click and names it instead.
        name: shown to other widgets that pick this one as a referring example.
        height: canvas height in CSS pixels.

    Python state: :attr:`labels`, :attr:`prompts`, :attr:`results`, :attr:`preview`.
    """

    _esm = _STATIC / "widget.js"
    _css = _STATIC / "widget.css"

    # --- image (Python -> browser) ---
    image_shape = t.List(t.Int(), default_value=[1, 1]).tag(sync=True)
    overview = t.Bytes(b"").tag(sync=True)  # (oh, ow, 4) RGBA uint8
    overview_shape = t.List(t.Int(), default_value=[1, 1]).tag(sync=True)  # (oh, ow)
    overview_step = t.Int(1).tag(sync=True)  # level-0 pixels per overview pixel
    labels_overview = t.Bytes(b"").tag(sync=True)  # (oh, ow) uint32 little-endian
    height = t.Int(480).tag(sync=True)
    title = t.Unicode("").tag(sync=True)

    # --- prompts (browser <-> Python) ---
    prompt_data: t.List[dict[str, Any]] = t.List(t.Dict()).tag(sync=True)
    text = t.Unicode("").tag(sync=True)
    mode = t.Enum(("point", "scribble", "pan"), default_value="point").tag(sync=True)
    live = t.Bool(False).tag(sync=True)

    # --- answers (Python -> browser) ---
    preview_mask = t.Bytes(b"").tag(sync=True)  # (mh, mw) uint8 0/1
    preview_shape: t.List[int] = t.List(t.Int(), default_value=[0, 0]).tag(sync=True)  # (mh, mw)
    preview_box: t.List[float] = t.List(t.Float(), default_value=[0.0] * 4).tag(
        sync=True
    )  # level-0
    preview_label = t.Unicode("").tag(sync=True)
    class_table: t.List[dict[str, Any]] = t.List(t.Dict()).tag(sync=True)
    status = t.Unicode("").tag(sync=True)
    error = t.Unicode("").tag(sync=True)
    busy = t.Bool(False).tag(sync=True)
    job = t.Unicode("").tag(sync=True)  # "" or the running long job ("everything")
    progress = t.Float(0.0).tag(sync=True)  # 0..1 of the running job
    example_label = t.Unicode("").tag(sync=True)  # "" when no example source is linked

    # --- settings (Python only; SeemApp binds controls to them) ---
    vocabulary = t.List(t.Unicode(), default_value=["object"])
    everything_mode = t.Enum(EVERYTHING_MODES, default_value=DEFAULT_EVERYTHING_MODE)
    grounding_threshold = t.Float(0.05)
    object_mask_threshold = t.Float(0.4)
    overlap_threshold = t.Float(0.8)

    def __init__(
        self,
        image: Any,
        *,
        model: Any = None,
        plane: Sequence[int] = (),
        bands: Sequence[int] | None = None,
        labels: Any = None,
        vocabulary: Sequence[str] | None = None,
        name: str | None = None,
        height: int = 480,
    ) -> None:
        try:
            source = image if isinstance(image, ImageSource) else open_image(image, bands=bands)
        except ImageSourceError as exc:
            raise PromptError(f"cannot open the image: {exc}") from None
        self._image = image
        self._source = source
        self._bands = tuple(source.bands)
        self._plane = tuple(int(p) for p in plane)
        if len(self._plane) != len(source.plane_shape):
            raise PromptError(
                f"the image has plane axes {source.plane_axes!r} of sizes {source.plane_shape}: "
                f"pass plane= with one index per axis (got {self._plane})"
            )
        shape = source.spatial_shape
        self._store = LabelStore(shape, labels)
        self._model = model
        self._backend: Backend | None = None
        self._handle: ImageHandle | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seem-widget")
        self._lock = threading.RLock()  # preview / store / object id
        self._pending: Future[Any] | None = None
        self._cancel = threading.Event()
        self._preview: SegmentationResult | None = None
        self._object_id = uuid.uuid4().hex
        self._example_source: SeemWidget | None = None
        self._last_view: dict[str, Any] | None = None
        rgb, step = overview_rgb(source, self._plane, OVERVIEW_SIDE)
        super().__init__(
            image_shape=list(shape),
            overview=rgba_bytes(rgb),
            overview_shape=[int(rgb.shape[0]), int(rgb.shape[1])],
            overview_step=int(step),
            height=int(height),
            title=name or "",
        )
        overview_hw = (int(rgb.shape[0]), int(rgb.shape[1]))
        self._overview_labels: np.ndarray[Any, np.dtype[np.uint32]] = np.zeros(
            overview_hw, np.uint32
        )
        self._refresh_labels([(0, 0, shape[0], shape[1])])
        if vocabulary is not None:
            self.vocabulary = list(vocabulary)
        self.on_msg(self._on_custom)
        self.observe(self._on_prompts, names=["prompt_data"])

    # ------------------------------------------------------------------ Python state

    @property
    def labels(self) -> Any:
        """The committed label image: ``(H, W)`` uint32 numpy or zarr; 0 = background,
        id ``k`` = the ``k``-th committed object (``results.class_table()`` names it)."""
        return self._store.labels

    @property
    def results(self) -> SegmentationResult:
        """The committed objects in commit order (object ``k - 1`` is label id ``k``)."""
        with self._lock:
            return self._store.result()

    @property
    def preview(self) -> SegmentationResult | None:
        """The last answer not yet committed (None when there is none)."""
        return self._preview

    @property
    def prompts(self) -> PromptSet:
        """The current prompts: the object being prompted (clicks, boxes, scribbles and the
        composed text) or, without visual prompts, the text as a grounding query."""
        shape = (int(self.image_shape[0]), int(self.image_shape[1]))
        obj = object_prompt(self.prompt_data, self.text)
        if obj is not None:
            return PromptSet(shape, (obj,), plane=self._plane)
        texts = (TextPrompt(self.text),) if self.text.strip() else ()
        return PromptSet(shape, texts=texts, plane=self._plane)

    @property
    def source(self) -> ImageSource:
        return self._source

    # ------------------------------------------------------------------ prompts from Python

    def add_prompt(self, prompt: VisualPrompt | dict[str, Any]) -> None:
        """Add a click / box / scribble (level-0) as if drawn in the browser."""
        items = [prompt] if isinstance(prompt, dict) else prompt_to_json(prompt)
        shape = (int(self.image_shape[0]), int(self.image_shape[1]))
        for item in items:
            prompt_from_json(item).check_fits(shape)
        self.prompt_data = [*self.prompt_data, *items]

    def set_example_source(self, other: SeemWidget | None) -> None:
        """Use the prompts drawn on ``other`` as the referring example ("Refer" button)."""
        if other is self:
            raise PromptError("a widget cannot be its own referring example: pick another one")
        self._example_source = other
        self.example_label = "" if other is None else (other.title or "another image")

    def set_model(self, model: Any) -> None:
        """Switch the engine (a variant name, Engine, SeemClient...); prompts are kept."""
        self.wait()
        with self._lock:
            if self._backend is not None and self._handle is not None:
                self._backend.close(self._handle)
            self._model, self._backend, self._handle = model, None, None

    def use_weights(self, path: str | Path | None) -> str:
        """Run the engine behind this widget with a fine-tuned weight file (from
        :func:`napari_seem.fine_tune` or the engine's ``fine_tune`` job); ``None`` goes
        back to the base weights. Returns the checkpoint id in use.

        The engine is shared: every widget and ``napari_seem.segment`` call on the same
        model uses the new weights. Prompts, the preview and committed labels are kept.
        """
        self.wait()
        with self._lock:
            if self._backend is None:
                self._backend = get_backend(self._model)
            backend = self._backend
        try:
            checkpoint = backend.use_weights(path)
        except PromptError as exc:
            self.error = str(exc)
            raise
        self.error = ""
        self.status = (
            "model: base weights"
            if path is None
            else f"model: fine-tuned weights {Path(path).name}"
        )
        return checkpoint

    # ------------------------------------------------------------------ actions

    def segment(self, *, block: bool = True) -> Future[Any]:
        """Answer the current prompts: one object from the visual prompts (with the text
        composed), or every instance of the text when there are no visual prompts."""
        return self._submit("segment", self._do_segment, block)

    def refer(self, *, block: bool = True) -> Future[Any]:
        """Find on this image the object marked on the linked example widget."""
        return self._submit("refer", self._do_refer, block)

    def everything(self, *, block: bool = True) -> Future[Any]:
        """Segment everything of ``vocabulary`` and commit it (one undo step): the engine's
        ``"segment"`` job, tile by tile with objects merged across tile seams."""
        self._cancel.clear()
        return self._submit("everything", self._do_everything, block)

    def cancel(self) -> None:
        """Stop a running Everything before its next tile."""
        self._cancel.set()

    def commit(self) -> None:
        """Paint the preview into :attr:`labels` and start a new object."""
        with self._lock:
            preview = self._preview
            if preview is None or not preview.objects:
                self.status = "nothing to commit: segment first"
                return
            boxes = self._store.commit(preview.objects)
            self._forget_object()
            self._set_preview(None)
            self.prompt_data = []
        self._refresh_labels(boxes)
        self.status = (
            f"committed {len(preview.objects)} object(s); {len(self._store.objects)} in all"
        )

    def undo(self) -> None:
        """Drop the last prompt of the current object, else revert the last commit."""
        with self._lock:
            if self.prompt_data:
                self.prompt_data = self.prompt_data[:-1]  # live mode re-segments
                if not self.prompt_data:
                    self._set_preview(None)
                    self._forget_object()
                self.status = "removed the last prompt"
                return
            boxes = self._store.undo()
        if boxes:
            self._refresh_labels(boxes)
            self.status = f"undid the last commit; {len(self._store.objects)} object(s) left"
        else:
            self.status = "nothing to undo"

    def clear(self) -> None:
        """Drop the current prompts and preview (committed labels stay)."""
        with self._lock:
            self.prompt_data = []
            self.text = ""
            self._set_preview(None)
            self._forget_object()
        self.status = "cleared"

    def wait(self, timeout: float | None = None) -> None:
        """Block until the queued model work has finished (re-raises its error)."""
        pending = self._pending
        if pending is not None:
            pending.result(timeout)

    def close(self) -> None:
        self._cancel.set()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._backend is not None and self._handle is not None:
            self._backend.close(self._handle)
        super().close()

    # ------------------------------------------------------------------ worker

    def _submit(self, name: str, work: Callable[[], str], block: bool) -> Future[Any]:
        def run() -> None:
            self.busy = True
            self.error = ""
            self.status = f"{name}…"
            try:
                self.status = work()
            except Cancelled as exc:
                self.status = str(exc)
            except PromptError as exc:
                self.error = str(exc)
                self.status = ""
            except Exception as exc:
                _log.exception("%s failed", name)
                self.error = f"{name} failed: {type(exc).__name__}: {exc}"
                self.status = ""
                raise
            finally:
                self.busy = False

        future = self._executor.submit(run)
        self._pending = future
        if block:
            future.result()
        return future

    def _ensure_open(self) -> tuple[Backend, ImageHandle]:
        with self._lock:
            if self._backend is None:
                self._backend = get_backend(self._model)
            if self._handle is None:
                self.status = f"opening the image on {self._backend.name}…"
                image = self._source if isinstance(self._image, ImageSource) else self._image
                self._handle = self._backend.open(image, bands=self._bands, plane=self._plane)
            return self._backend, self._handle

    def _do_segment(self) -> str:
        backend, handle = self._ensure_open()
        with self._lock:
            obj = object_prompt(self.prompt_data, self.text)
            text = self.text.strip()
            object_id = self._object_id
            names = [v.strip() for v in self.vocabulary if v.strip()] or None
        notice = None
        if obj is not None:
            vocabulary = None if obj.text is not None else names  # the text names it
            answer = backend.predict_answer(handle, obj, object_id=object_id, vocabulary=vocabulary)
            found, notice = [answer.mask], answer.notice
        elif text:
            found = backend.ground(handle, [text], threshold=self.grounding_threshold)
        else:
            raise PromptError(
                "no prompt: click on the object, drag a box, scribble, or type a phrase"
            )
        self._set_preview(SegmentationResult(handle.image_shape, tuple(found)))
        areas = ", ".join(f"{o.area} px" for o in found[:3])
        said = f"{len(found)} mask(s): {areas}" if found else "no mask found"
        return said if notice is None else f"{said}. {notice}"

    def _do_refer(self) -> str:
        other = self._example_source
        if other is None:
            raise PromptError("no example: link another widget with set_example_source(other)")
        example = other.example()
        backend, handle = self._ensure_open()
        found = backend.refer(handle, example)
        self._set_preview(SegmentationResult(handle.image_shape, tuple(found)))
        return (
            f"found {len(found)} object(s) like the example on {other.title or 'the other image'}"
        )

    def example(self) -> ReferringExample:
        """This widget's current prompts as a referring example for another image.

        Large images are read at overview resolution; the prompts are scaled with them.
        """
        obj = object_prompt(self.prompt_data, "")
        if obj is None:
            raise PromptError(
                f"the example image {self.title or ''!s} has no prompts: mark the example "
                "object there first"
            )
        rgb, step = overview_rgb(self._source, self._plane, 1024)
        visual = tuple(_scaled(p, 1.0 / step) for p in obj.visual)
        return ReferringExample.from_image(rgb, visual, label=self.title or None)

    def _do_everything(self) -> str:
        backend, handle = self._ensure_open()
        self.job, self.progress = "everything", 0.0

        def report(progress: Progress) -> None:
            self.progress = progress.done / max(progress.total, 1)
            self.status = f"everything: tile {progress.done} of {progress.total}"

        try:
            result = backend.everything(
                handle,
                list(self.vocabulary),
                mode=cast(EverythingMode, self.everything_mode),
                object_mask_threshold=self.object_mask_threshold,
                overlap_threshold=self.overlap_threshold,
                reporter=report,
                cancel=self._cancel,
            )
        finally:
            self.job = ""
        with self._lock:
            boxes = self._store.commit(result.objects)
        self._refresh_labels(boxes)
        return f"everything: {len(result.objects)} object(s) committed"

    # ------------------------------------------------------------------ browser messages

    def _on_prompts(self, change: dict[str, Any]) -> None:
        if self.live and change["new"]:
            self.segment(block=False)

    def _on_custom(self, _widget: Any, content: dict[str, Any], buffers: list[Any]) -> None:
        kind = content.get("type")
        if kind == "view":
            self._last_view = content
            self._send_view(content)
        elif kind == "action":
            name = content.get("name")
            actions: dict[str, Callable[[], Any]] = {
                "segment": lambda: self.segment(block=False),
                "refer": lambda: self.refer(block=False),
                "everything": lambda: self.everything(block=False),
                "cancel": self.cancel,
                "commit": self.commit,
                "undo": self.undo,
                "clear": self.clear,
            }
            action = actions.get(str(name))
            if action is None:
                self.error = f"unknown action {name!r}"
                return
            action()

    def _send_view(self, request: dict[str, Any]) -> None:
        try:
            size = [min(int(v), VIEW_SIDE) for v in request["size"]]
            view = read_view(self._source, self._plane, request["box"], size)
        except (KeyError, TypeError, ValueError) as exc:
            self.error = f"cannot read the view: {exc}"
            return
        labels = self._store.subsample(view.box, view.step)
        h, w = view.rgb.shape[:2]
        self.send(
            {
                "type": "view",
                "seq": request.get("seq", 0),
                "box": list(view.box),
                "step": view.step,
                "shape": [h, w],
            },
            buffers=[rgba_bytes(view.rgb), labels[:h, :w].astype("<u4").tobytes()],
        )

    # ------------------------------------------------------------------ drawing state

    def _set_preview(self, result: SegmentationResult | None) -> None:
        self._preview = result
        if result is None or not any(not o.is_empty for o in result.objects):
            with self.hold_sync():
                self.preview_mask = b""
                self.preview_shape = [0, 0]
                self.preview_box = [0.0, 0.0, 0.0, 0.0]
                self.preview_label = ""
            return
        objects = [o for o in result.objects if not o.is_empty]
        # the crops' extents (a crop may be larger than its object's tight bbox, e.g. after
        # nodata pixels were cleared from it)
        boxes = np.array(
            [
                (*o.offset, o.offset[0] + o.mask.shape[0], o.offset[1] + o.mask.shape[1])
                for o in objects
            ]
        )
        r0, c0 = boxes[:, 0].min(), boxes[:, 1].min()
        r1, c1 = boxes[:, 2].max(), boxes[:, 3].max()
        union = np.zeros((r1 - r0, c1 - c0), bool)
        for obj in objects:
            (row, col), (h, w) = obj.offset, obj.mask.shape
            union[row - r0 : row - r0 + h, col - c0 : col - c0 + w] |= obj.mask
        small, _ = subsampled_mask(union)
        best = max(objects, key=lambda o: o.score)
        label = best.class_name or "object"
        with self.hold_sync():
            self.preview_mask = small.tobytes()
            self.preview_shape = [int(small.shape[0]), int(small.shape[1])]
            self.preview_box = [float(r0), float(c0), float(r1), float(c1)]
            self.preview_label = f"{label} ({best.score:.2f})" + (
                f" +{len(objects) - 1}" if len(objects) > 1 else ""
            )

    def _refresh_labels(self, boxes: Sequence[tuple[int, int, int, int]]) -> None:
        """Update the labels overview (and the open view) where ``boxes`` changed."""
        step = int(self.overview_step)
        oh, ow = self._overview_labels.shape
        for r0, c0, r1, c1 in boxes:
            i0, j0 = -(-r0 // step), -(-c0 // step)  # first overview pixel inside the box
            i1, j1 = min(oh, -(-r1 // step)), min(ow, -(-c1 // step))
            if i1 > i0 and j1 > j0:
                box = (i0 * step, j0 * step, r1, c1)
                part = self._store.subsample(box, step)
                self._overview_labels[i0:i1, j0:j1] = part[: i1 - i0, : j1 - j0]
        with self.hold_sync():
            self.labels_overview = self._overview_labels.astype("<u4").tobytes()
            self.class_table = self._store.class_table()
        if self._last_view is not None:
            self._send_view(self._last_view)

    def _forget_object(self) -> None:
        if self._backend is not None and self._handle is not None:
            self._backend.forget(self._handle, self._object_id)
        self._object_id = uuid.uuid4().hex


def _scaled(prompt: VisualPrompt, factor: float) -> VisualPrompt:
    """A click / box / scribble with its coordinates multiplied by ``factor``."""
    if factor == 1.0:
        return prompt
    if isinstance(prompt, Points):
        return Points(prompt.coords * factor, prompt.positive)
    if isinstance(prompt, Box):
        return Box(
            prompt.row_min * factor,
            prompt.col_min * factor,
            max(prompt.row_max * factor, prompt.row_min * factor + 1),
            max(prompt.col_max * factor, prompt.col_min * factor + 1),
        )
    if isinstance(prompt, Scribble):
        return Scribble(prompt.vertices * factor, positive=prompt.positive)
    raise PromptError(f"{type(prompt).__name__} prompts cannot be used in an example")
