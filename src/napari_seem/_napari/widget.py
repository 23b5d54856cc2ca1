"""The SEEM dock widget (Plugins -> SEEM): a thin magicgui Container.

The widget builds controls and wires signals; model work happens in the model process
through :class:`~napari_seem._napari.backend.Backend` on worker threads, and results come
back to the GUI thread through :class:`~napari_seem._napari.qt_bridge.MainThread`. Layer
<-> prompt conversion is in :mod:`~napari_seem._napari.layers` / ``convert``; commits and
undo in :mod:`~napari_seem._napari.commits`; the "Fine-tune" section in
:mod:`~napari_seem._napari.finetune_panel`.

Keys (bound in code on the viewer and on the prompt layers): ``S`` segment, ``C`` commit,
``Shift-C`` clear prompts, ``T`` toggle the polarity of new points; Ctrl-click in the
points layer adds a negative point (Alt-drag is napari's zoom box).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from magicgui.types import FileDialogMode
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    Password,
    PushButton,
)

from napari_seem._napari import layers as L
from napari_seem._napari.backend import Backend, ImageRef, ModelChoice
from napari_seem._napari.commits import CommitLog
from napari_seem._napari.finetune_panel import FineTunePanel
from napari_seem._napari.qt_bridge import MainThread
from napari_seem.core.modes import DEFAULT_EVERYTHING_MODE, EVERYTHING_MODES
from napari_seem.core.progress import Cancelled, Progress
from napari_seem.core.prompts import ObjectPrompt, PromptError, TextPrompt
from napari_seem.core.results import ObjectMask
from napari_seem.core.variants import DEFAULT_VARIANT, VARIANT_SUMMARIES
from napari_seem.remote.client import RemoteError, ServerUnavailableError

__all__ = ["SeemWidget"]

T = TypeVar("T")
REMOTE = "remote"
TARGET_NAME = "SEEM labels"
LIVE_DELAY_MS = 350
PREFETCH_DELAY_MS = 500


def _model_choices() -> list[tuple[str, str]]:
    out = [(f"default: {DEFAULT_VARIANT}", DEFAULT_VARIANT)]
    for name, summary in VARIANT_SUMMARIES.items():
        if name != DEFAULT_VARIANT:
            out.append((f"{name} ({summary.backbone}, {summary.weights})", name))
    out.append(("remote server (URL + token)", REMOTE))
    return out


def _warm_imports() -> None:
    """Import what the GUI thread needs later (commit tables, zarr labels) off that thread."""
    import pandas  # noqa: F401
    import zarr  # noqa: F401


class SeemWidget(Container):
    """Promptable segmentation of the chosen image layer with SEEM.

    Args:
        napari_viewer: the viewer (napari passes it).
        model: the initial model choice (default: the embedded default variant).
    """

    def __init__(self, napari_viewer: Any, *, model: ModelChoice | None = None) -> None:
        super().__init__(labels=False)
        from qtpy.QtCore import QTimer

        self.viewer = napari_viewer
        self.messages: list[tuple[str, str]] = []  # (severity, text) of every notification
        self._main = MainThread()
        self._starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seem-start")
        self._backend: Backend | None = None
        self._backend_future: Future[Backend] | None = None
        self._owns_backend = False
        self._model = model or ModelChoice()
        self._commits = CommitLog()
        self._object_id: str | None = None
        self._preview: list[ObjectMask] = []
        self._preview_where: tuple[Any, tuple[int, ...]] | None = None
        self._generation = 0
        self._versions: dict[int, int] = {}
        self._cancel: threading.Event | None = None
        self._progress: Any = None
        self._prefetch_job: str | None = None
        self.busy = False
        # the first commit builds a labels layer with a pandas feature table; importing
        # pandas there stalled the GUI thread for ~0.6 s (benchmarks/gui_stall.py), so it is
        # imported in the background now
        threading.Thread(target=_warm_imports, name="seem-warm-imports", daemon=True).start()

        # ---- model
        initial = REMOTE if self._model.url else self._model.variant
        self.model_choice = ComboBox(label="Model", choices=_model_choices(), value=initial)
        self.checkpoint = FileEdit(
            label="Checkpoint", mode=FileDialogMode.EXISTING_FILE, filter="*.pt *.pth *.safetensors"
        )
        self.url = LineEdit(label="Server URL", value=self._model.url or "")
        self.token = Password(label="Token", value=self._model.token or "")
        self.connect_button = PushButton(text="Connect")
        self.model_status = Label(value="model: not started (starts on first use)")
        # ---- image and prompts
        self.image = ComboBox(label="Image", choices=self._image_choices)
        self.target = ComboBox(label="Labels", choices=self._target_choices)
        self.mask_layer = ComboBox(label="Mask prompt", choices=self._mask_choices)
        self.points_button = PushButton(text="Points (click)")
        self.shapes_button = PushButton(text="Shapes (box/scribble)")
        self.text = LineEdit(label="Text")
        self.text.native.setPlaceholderText("class or phrase, e.g. nucleus (Enter runs)")
        self.live = CheckBox(text="Live (re-run on every prompt change)", value=False)
        self.segment_button = PushButton(text="Segment [S]")
        self.commit_button = PushButton(text="Commit [C]")
        self.clear_button = PushButton(text="Clear [Shift-C]")
        self.undo_button = PushButton(text="Undo commit")
        # ---- referring example
        self.example_image = ComboBox(label="Example image", choices=self._image_choices)
        self.example_prompts = ComboBox(label="Example marks", choices=self._prompt_choices)
        self.find_button = PushButton(text="Find it here")
        # ---- everything / stacks
        self.vocabulary = LineEdit(label="Vocabulary")
        self.vocabulary.native.setPlaceholderText("comma-separated classes, e.g. nucleus, cell")
        self.scope = ComboBox(label="Region", choices=["current view", "whole image"])
        self.everything_mode = ComboBox(
            label="Mode", choices=list(EVERYTHING_MODES), value=DEFAULT_EVERYTHING_MODE
        )
        self.everything_mode.tooltip = (
            "auto: points for models that decode prompts in windows (seem-lite), else "
            "panoptic; panoptic: separate objects; instance: detections (may overlap); "
            "semantic: one object per class; points: prompt a grid of points"
        )
        self.min_score = FloatSpinBox(
            label="Min. class score", value=0.4, min=0.0, max=1.0, step=0.05
        )
        self.min_score.tooltip = (
            "Segment everything (panoptic) keeps objects whose class probability exceeds "
            "this (lower finds more; 0.8 is strict)"
        )
        self.everything_button = PushButton(text="Segment everything")
        self.direction = ComboBox(label="Direction", choices=["forward", "backward"])
        self.propagate_button = PushButton(text="Propagate through stack")
        self.prefetch = CheckBox(text="Prefetch the visible region", value=True)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.finetune = FineTunePanel(self)
        self.status = Label(value="Choose an image, add points or shapes, press Segment.")

        def header(text: str) -> Label:
            label = Label(value=text)
            label.native.setStyleSheet("font-weight: bold; margin-top: 6px;")
            return label

        def row(*items: Any) -> Container:
            return Container(widgets=list(items), layout="horizontal", labels=False)

        def group(title: str, *items: Any) -> Container:
            box = Container(widgets=list(items), labels=True)
            box.native.setObjectName(title)
            return box

        self.extend(
            [
                header("Model"),
                group("model", self.model_choice, self.checkpoint, self.url, self.token),
                row(self.connect_button, self.model_status),
                header("Prompts"),
                group("image", self.image, self.target, self.mask_layer, self.text),
                row(self.points_button, self.shapes_button),
                self.live,
                row(self.segment_button, self.commit_button),
                row(self.clear_button, self.undo_button),
                header("Referring example (another image)"),
                group("example", self.example_image, self.example_prompts),
                self.find_button,
                header("Segment everything"),
                group(
                    "everything", self.vocabulary, self.scope, self.everything_mode, self.min_score
                ),
                row(self.everything_button, self.cancel_button),
                header("Stacks (z / t)"),
                row(self.direction, self.propagate_button),
                self.prefetch,
                self.finetune,
                self.status,
            ]
        )
        self.native.setMaximumWidth(460)  # leave the canvas the room
        self.status.native.setWordWrap(True)
        self.status.native.setMinimumHeight(64)
        self.model_status.native.setWordWrap(True)
        self._update_model_fields()

        # ---- signals
        self.model_choice.changed.connect(self._update_model_fields)
        self.connect_button.changed.connect(self.connect)
        self.points_button.changed.connect(self.add_points_layer)
        self.shapes_button.changed.connect(self.add_shapes_layer)
        self.segment_button.changed.connect(self.segment)
        self.commit_button.changed.connect(self.commit)
        self.clear_button.changed.connect(self.clear_prompts)
        self.undo_button.changed.connect(self.undo)
        self.find_button.changed.connect(self.find_it_here)
        self.everything_button.changed.connect(self.segment_everything)
        self.propagate_button.changed.connect(self.propagate)
        self.cancel_button.changed.connect(self.cancel)
        self.text.native.returnPressed.connect(self.segment)
        self.image.changed.connect(self._image_changed)
        layers = self.viewer.layers
        self._viewer_events: list[tuple[Any, Callable[..., None]]] = [
            (layers.events.inserted, self._refresh_choices),
            (layers.events.removed, self._refresh_choices),
            (layers.events.reordered, self._refresh_choices),
        ]

        self._live_timer = QTimer(self.native)  # parented: stops with the widget
        self._live_timer.setSingleShot(True)
        self._live_timer.setInterval(LIVE_DELAY_MS)
        self._live_timer.timeout.connect(self._live_run)
        self._prefetch_timer = QTimer(self.native)
        self._prefetch_timer.setSingleShot(True)
        self._prefetch_timer.setInterval(PREFETCH_DELAY_MS)
        self._prefetch_timer.timeout.connect(self._prefetch_run)
        camera = L.camera_of(self.viewer)
        self._viewer_events += [
            (camera.events.center, self._camera_moved),
            (camera.events.zoom, self._camera_moved),
        ]
        for emitter, handler in self._viewer_events:
            emitter.connect(handler)
        self.native.destroyed.connect(self._disconnect)
        self._bind_keys(self.viewer)

    # ------------------------------------------------------------------ choices

    def _layers_of(self, kind: str) -> list[Any]:
        return [layer for layer in self.viewer.layers if type(layer).__name__ == kind]

    def _image_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in self._layers_of("Image")]

    def _target_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        labels = [
            (layer.name, layer)
            for layer in self._layers_of("Labels")
            if layer.name != L.PREVIEW_NAME
        ]
        return [(f"new '{TARGET_NAME}'", None), *labels]

    def _mask_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        return [("none", None), *self._target_choices()[1:]]

    def _prompt_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        found = self._layers_of("Points") + self._layers_of("Shapes")
        return [("none", None), *[(layer.name, layer) for layer in found]]

    def _refresh_choices(self, event: Any = None) -> None:
        target = self.target.value
        for combo in (self.image, self.target, self.mask_layer, self.example_image):
            combo.reset_choices()
        self.example_prompts.reset_choices()
        if event is not None and getattr(event, "type", "") == "inserted":
            layer = event.value
            if type(layer).__name__ in ("Points", "Shapes"):
                self._watch_prompt_layer(layer)
            if type(layer).__name__ == "Image":
                layer.events.data.connect(lambda e, lay=layer: self._data_changed(lay))
        if target is not None and target in self.viewer.layers:
            self.target.value = target
        self.finetune.refresh()

    def _update_model_fields(self, *_: Any) -> None:
        value = self.model_choice.value
        self.url.visible = self.token.visible = value == REMOTE
        self.checkpoint.visible = value not in (REMOTE, DEFAULT_VARIANT)

    # ------------------------------------------------------------------ notifications

    def notify(self, text: str, severity: str = "info") -> None:
        """Show a napari notification and the widget status line."""
        from napari.utils.notifications import show_error, show_info, show_warning

        self.messages.append((severity, text))
        self.status.value = text
        {"error": show_error, "warning": show_warning}.get(severity, show_info)(text)

    def _fail(self, exc: BaseException, what: str) -> None:
        if isinstance(exc, Cancelled):
            self.notify(f"{what}: cancelled; nothing was committed.", "warning")
            return
        if isinstance(exc, ServerUnavailableError):
            self._drop_backend()
            self.notify(
                f"{what} failed: {exc}\n\nYour committed labels are kept. Press Segment or "
                "Connect again to start a new model process.",
                "error",
            )
            return
        if isinstance(exc, RemoteError):
            self.notify(f"{what} failed in the model process: {exc.message}", "error")
            return
        self.notify(f"{what} failed: {exc}", "error")

    # ------------------------------------------------------------------ model process

    def _choice(self) -> ModelChoice:
        value = self.model_choice.value
        if value == REMOTE:
            url = str(self.url.value).strip()
            if not url:
                raise ValueError("enter the server URL (http://host:port) and its token")
            return ModelChoice(url=url, token=str(self.token.value).strip() or None)
        path = str(self.checkpoint.value or "").strip()
        checkpoint = path if path not in ("", ".") else None
        base = self._model
        return ModelChoice(
            variant=value,
            checkpoint=checkpoint,
            tile=base.tile,
            halo=base.halo,
            device=base.device,
            read_roots=base.read_roots,
        )

    def use_backend(self, backend: Backend) -> None:
        """Use an already running model process (scripts, notebooks, tests)."""
        self._drop_backend()
        self._backend, self._backend_future = backend, None
        self._owns_backend = False  # the caller closes it
        info = backend.info
        self.model_status.value = (
            f"model: {info.model} on {info.device} (weights: {info.checkpoint})"
        )
        if info.model in list(self.model_choice.choices or ()):  # show the running model
            with self.model_choice.changed.blocked():
                self.model_choice.value = info.model

    def connect(self, *_: Any) -> None:
        """(Re)start the model process with the chosen model."""
        self._drop_backend()
        self._with_backend(lambda backend: None)

    def _drop_backend(self) -> None:
        backend, self._backend, self._backend_future = self._backend, None, None
        self._prefetch_job = None
        if backend is not None and self._owns_backend:
            threading.Thread(target=backend.close, daemon=True).start()
        self.model_status.value = "model: not running (starts on next use)"

    def _download_progress(self, done: int, total: int | None) -> None:
        """Weights download progress (from the starting thread)."""
        size = f" of {total / 1e6:.0f} MB" if total else ""
        text = f"model: downloading official weights, {done / 1e6:.0f} MB{size}..."
        self._main.later(lambda: setattr(self.model_status, "value", text))

    def _with_backend(
        self, then: Callable[[Backend], None], *, on_error: Callable[[], None] | None = None
    ) -> None:
        """Call ``then(backend)`` on the GUI thread once the model process is up."""
        if self._backend is not None and self._backend.alive:
            then(self._backend)
            return
        if self._backend is not None:
            process = self._backend.client.process
            code = None if process is None else process.poll()
            self._drop_backend()
            self.notify(
                f"The model process stopped (exit code {code}); starting a new one. Your "
                "committed labels are kept; the open image is sent to the new process.",
                "error",
            )
        if self._backend_future is None:
            try:
                choice = self._choice()
            except ValueError as exc:
                if on_error is not None:
                    on_error()
                self.notify(str(exc), "error")
                return
            self._model = choice
            self.model_status.value = f"model: starting {choice.describe()}..."
            self._backend_future = self._starter.submit(
                Backend.start, choice, download=self._download_progress
            )
        future = self._backend_future

        def ready(f: Future[Backend]) -> None:
            if f is not self._backend_future:
                return
            exc = f.exception()
            if exc is not None:
                self._backend_future = None
                if on_error is not None:
                    on_error()
                self.model_status.value = "model: failed to start"
                self.notify(
                    f"The model process did not start ({self._model.describe()}): {exc}\n"
                    "Check the checkpoint path and the variant (or the URL and token); an "
                    "official variant without a checkpoint downloads its weights once.",
                    "error",
                )
                return
            if self._backend is None:
                self._backend = f.result()
                self._owns_backend = True
                info = self._backend.info
                self.model_status.value = (
                    f"model: {info.model} on {info.device} (weights: {info.checkpoint})"
                )
            then(self._backend)

        self._main.when_done(future, ready)

    def _run(
        self,
        what: str,
        work: Callable[[Backend], T],
        done: Callable[[T], None],
        *,
        generation: int | None = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        """Run ``work(backend)`` on a worker thread; ``done(result)`` on the GUI thread.

        A ``generation`` older than the latest request means a newer one superseded it and
        its result is dropped (live mode fires often).
        """

        def failed() -> None:
            self.busy = False
            if on_error is not None:
                on_error()

        def start(backend: Backend) -> None:
            future = backend.submit(work, backend)

            def finish(f: Future[T]) -> None:
                self.busy = False
                if generation is not None and generation != self._generation:
                    return
                exc = f.exception()
                if exc is not None:
                    failed()
                    self._fail(exc, what)
                    return
                done(f.result())

            self._main.when_done(future, finish)

        self.busy = True
        self._with_backend(start, on_error=failed)

    # ------------------------------------------------------------------ layers and prompts

    def current_image(self) -> Any | None:
        layer = self.image.value
        if layer is None or layer not in self.viewer.layers:
            images = self._layers_of("Image")
            layer = images[0] if images else None
        return layer

    def _require_image(self) -> Any | None:
        image = self.current_image()
        if image is None:
            self.notify(
                "No image layer: open an image (File > Open, or File > Open Sample > SEEM) "
                "and choose it under Image.",
                "error",
            )
        return image

    def _ref(self, image: Any) -> ImageRef:
        return L.image_ref(image, self._versions.get(id(image), 0))

    def _plane(self, image: Any) -> tuple[int, ...]:
        return L.current_plane(image, self.viewer.dims.point)

    def _data_changed(self, layer: Any) -> None:
        old = self._ref(layer).key
        self._versions[id(layer)] = self._versions.get(id(layer), 0) + 1
        if self._backend is not None:
            self._backend.forget(old)

    def _image_changed(self, *_: Any) -> None:
        self._new_object()

    def add_points_layer(self, *_: Any) -> Any | None:
        """Create (or select) the "SEEM points" layer over the chosen image."""
        image = self._require_image()
        if image is None:
            return None
        layer = L.ensure_points_layer(self.viewer, image)
        self._watch_prompt_layer(layer)
        return layer

    def add_shapes_layer(self, *_: Any) -> Any | None:
        """Create (or select) the "SEEM shapes" layer over the chosen image."""
        image = self._require_image()
        if image is None:
            return None
        layer = L.ensure_shapes_layer(self.viewer, image)
        self._watch_prompt_layer(layer)
        return layer

    def _watch_prompt_layer(self, layer: Any) -> None:
        if layer.metadata.get("_seem_watched") or layer.name not in (
            L.POINTS_NAME,
            L.SHAPES_NAME,
        ):
            return
        layer.metadata["_seem_watched"] = True
        layer.events.data.connect(self._prompts_changed)
        self._bind_keys(layer)
        if layer.name == L.POINTS_NAME:
            layer.bind_key("t", self._toggle_polarity, overwrite=True)
            layer.mouse_drag_callbacks.append(_polarity_on_press)

    def _bind_keys(self, target: Any) -> None:
        if target is self.viewer:
            target.bind_key("t", lambda *_: self._toggle_points_polarity(), overwrite=True)
        target.bind_key("s", lambda *_: self.segment(), overwrite=True)
        target.bind_key("c", lambda *_: self.commit(), overwrite=True)
        target.bind_key("Shift-C", lambda *_: self.clear_prompts(), overwrite=True)

    def _toggle_points_polarity(self) -> None:
        layer = self._prompt_layer(L.POINTS_NAME, "Points")
        if layer is not None:
            self._toggle_polarity(layer)

    def _toggle_polarity(self, layer: Any) -> None:
        negative = not layer.metadata.get("seem_negative", False)
        layer.metadata["seem_negative"] = negative
        L.set_polarity(layer, not negative)
        self.status.value = (
            "New points are NEGATIVE (not this). Press T for positive."
            if negative
            else "New points are positive. Press T (or Ctrl-click) for negative."
        )

    def _prompt_layer(self, name: str, kind: str) -> Any | None:
        for layer in self.viewer.layers:
            if layer.name == name and type(layer).__name__ == kind:
                return layer
        return None

    def _prompts_changed(self, event: Any = None) -> None:
        if self.live.value:
            self._live_timer.start()

    def _live_run(self) -> None:
        if self._has_prompts():
            self.segment()

    def _has_prompts(self) -> bool:
        points = self._prompt_layer(L.POINTS_NAME, "Points")
        shapes = self._prompt_layer(L.SHAPES_NAME, "Shapes")
        return bool(
            (points is not None and len(points.data))
            or (shapes is not None and len(shapes.data))
            or str(self.text.value).strip()
        )

    def _new_object(self) -> None:
        self._object_id = None
        self._preview = []
        self._preview_where = None
        L.hide_preview(self.viewer)

    # ------------------------------------------------------------------ segment

    def segment(self, *_: Any) -> None:
        """Segment the object the prompts describe (clicks, shapes, mask, text)."""
        image = self._require_image()
        if image is None:
            return
        plane = self._plane(image)
        try:
            visual = L.prompts_from_layers(
                image,
                plane,
                self.viewer.dims.point,
                points=self._prompt_layer(L.POINTS_NAME, "Points"),
                shapes=self._prompt_layer(L.SHAPES_NAME, "Shapes"),
                mask_labels=self.mask_layer.value,
            )
        except (PromptError, ValueError) as exc:
            self.notify(f"Cannot use the prompts: {exc}", "error")
            return
        text = str(self.text.value).strip() or None
        if not visual and text is None:
            self.notify(
                "Nothing to segment: click on the object (Points), draw a box or scribble "
                "(Shapes), choose a mask prompt, or type a text.",
                "warning",
            )
            return
        ref = self._ref(image)
        self._generation += 1
        generation = self._generation
        self.status.value = "Segmenting..."
        if not any(p.has_positive for p in visual) and text is None:
            self.notify(
                "Only negative prompts: add a positive click (or a box) on the object, or a "
                "text, so SEEM knows what to segment.",
                "warning",
            )
            return
        if any(p.has_positive for p in visual):
            prompt = ObjectPrompt(tuple(visual), None if text is None else TextPrompt(text))
            object_id = self._object_id or uuid.uuid4().hex
            self._object_id = object_id

            def work(backend: Backend) -> list[ObjectMask]:
                return [backend.predict(ref, plane, prompt, object_id=object_id)]

        else:
            assert text is not None

            def work(backend: Backend) -> list[ObjectMask]:
                return backend.ground(ref, plane, text)

        self._run(
            "Segment",
            work,
            lambda objs: self._show(image, plane, objs),
            generation=generation,
        )

    def _show(self, image: Any, plane: tuple[int, ...], objects: list[ObjectMask]) -> None:
        self._preview = [o for o in objects if not o.is_empty]
        self._preview_where = (image, plane)
        L.show_preview(self.viewer, image, self._preview, plane)
        self._keep_prompt_layer_active()
        if not self._preview:
            self.status.value = "The model found nothing for these prompts: add or move a click."
            return
        best = self._preview[0]
        name = f" '{best.class_name}'" if best.class_name else ""
        count = f"{len(self._preview)} objects" if len(self._preview) > 1 else "object"
        self.status.value = (
            f"Preview: {count}{name}, score {best.score:.2f}, {best.area} px. "
            "Commit [C], refine with more clicks, or Clear [Shift-C]."
        )

    def _keep_prompt_layer_active(self, *, always: bool = False) -> None:
        """Give the keys and clicks back to the prompt layer after a layer was added."""
        active = self.viewer.layers.selection.active
        is_prompt = active is not None and active.name in (L.POINTS_NAME, L.SHAPES_NAME)
        on_preview = active is not None and active.name == L.PREVIEW_NAME
        if (always and not is_prompt) or on_preview:
            for name, kind in ((L.POINTS_NAME, "Points"), (L.SHAPES_NAME, "Shapes")):
                layer = self._prompt_layer(name, kind)
                if layer is not None:
                    self.viewer.layers.selection.active = layer
                    return

    # ------------------------------------------------------------------ commit / undo / clear

    def target_layer(self, image: Any) -> Any:
        """The chosen labels layer, or a new "SEEM labels" layer over ``image``."""
        target = self.target.value
        if target is None or target not in self.viewer.layers:
            target = self._prompt_layer(TARGET_NAME, "Labels")
            if target is None:
                target = L.new_target_labels(self.viewer, image, TARGET_NAME)
            self.target.reset_choices()
            self.target.value = target
        self.finetune.remember(target, image)  # a default training layer over ``image``
        return target

    def commit(self, *_: Any) -> list[int]:
        """Paint the preview into the target labels with new ids; clears the prompts."""
        if not self._preview or self._preview_where is None:
            self.notify("Nothing to commit: Segment first (the preview is orange).", "warning")
            return []
        image, plane = self._preview_where
        target = self.target_layer(image)
        if getattr(target, "multiscale", False):
            self.notify(
                f"Labels layer {target.name!r} is multiscale and cannot be painted: choose "
                "another target or 'new'.",
                "error",
            )
            return []
        text = str(self.text.value).strip() or None
        ids = self._commits.commit(target, self._preview, plane, default_class=text)
        self._keep_prompt_layer_active(always=True)
        self.clear_prompts()
        self.status.value = f"Committed id(s) {ids} into {target.name!r}. Undo with 'Undo commit'."
        return ids

    def undo(self, *_: Any) -> None:
        layer = self._commits.undo()
        self.status.value = (
            "Nothing to undo." if layer is None else f"Undid the last commit in {layer.name!r}."
        )

    def clear_prompts(self, *_: Any) -> None:
        """Remove all points and shapes and the preview; the next object starts afresh."""
        points = self._prompt_layer(L.POINTS_NAME, "Points")
        if points is not None and len(points.data):
            points.selected_data = set()
            points.data = points.data[:0]
        shapes = self._prompt_layer(L.SHAPES_NAME, "Shapes")
        if shapes is not None and len(shapes.data):
            shapes.selected_data = set(range(len(shapes.data)))
            shapes.remove_selected()
        self._live_timer.stop()
        self._generation += 1
        self._new_object()

    # ------------------------------------------------------------------ referring example

    def find_it_here(self, *_: Any) -> None:
        """Segment, on the chosen image, the object marked on the example image."""
        image = self._require_image()
        example = self.example_image.value
        marks = self.example_prompts.value
        if image is None:
            return
        if example is None or example is image or marks is None:
            self.notify(
                "Choose an example image (another image layer) and the points or shapes "
                "layer that marks the example object on it.",
                "error",
            )
            return
        example_plane = self._plane(example)
        kind = type(marks).__name__
        try:
            visual = L.prompts_from_layers(
                example,
                example_plane,
                self.viewer.dims.point,
                points=marks if kind == "Points" else None,
                shapes=marks if kind == "Shapes" else None,
            )
            prompt = ObjectPrompt(tuple(visual))
        except (PromptError, ValueError) as exc:
            self.notify(f"Cannot use the example marks: {exc}", "error")
            return
        ref, example_ref, plane = self._ref(image), self._ref(example), self._plane(image)
        self._generation += 1

        def work(backend: Backend) -> list[ObjectMask]:
            return backend.refer(ref, plane, example_ref, example_plane, prompt)[:1]

        self._run(
            "Find it here",
            work,
            lambda objs: self._show(image, plane, objs),
            generation=self._generation,
        )

    # ------------------------------------------------------------------ long runs

    def _start_long(self, title: str, total: int = 0) -> threading.Event:
        from napari.utils import progress

        self._cancel = threading.Event()
        self._progress = progress(total=total or 1, desc=title)
        self.cancel_button.enabled = True
        self.everything_button.enabled = self.propagate_button.enabled = False
        return self._cancel

    def _report(self, progress: Progress) -> None:
        """Progress from a worker thread (marshalled to the GUI thread)."""
        done, total = progress.done, max(progress.total, 1)

        def update() -> None:
            bar = self._progress
            if bar is None:
                return
            if bar.total != total:
                bar.total = total
            bar.n = done
            bar.refresh()
            self.status.value = f"{bar.desc}: {done} / {total}"

        self._main.later(update)

    def _end_long(self) -> None:
        if self._progress is not None:
            self._progress.close()
        self._progress = None
        self._cancel = None
        self.cancel_button.enabled = False
        self.everything_button.enabled = self.propagate_button.enabled = True

    def cancel(self, *_: Any) -> None:
        """Stop the running "Segment everything" or "Propagate" (between steps)."""
        if self._cancel is not None:
            self._cancel.set()
            self.status.value = "Cancelling..."

    def segment_everything(self, *_: Any) -> None:
        """Every object in the view (or the whole image), named from the vocabulary."""
        image = self._require_image()
        if image is None or self._cancel is not None:
            return
        vocabulary = [v.strip() for v in str(self.vocabulary.value).split(",") if v.strip()]
        box = None
        if self.scope.value == "current view":
            box = L.visible_box(self.viewer, image)
        plane, ref = self._plane(image), self._ref(image)
        threshold = float(self.min_score.value)
        mode = str(self.everything_mode.value)
        cancel = self._start_long("SEEM: segment everything")

        def work(backend: Backend) -> list[ObjectMask]:
            return backend.segment_everything(
                ref,
                plane,
                vocabulary,
                box=box,
                reporter=self._report,
                cancel=cancel,
                object_mask_threshold=threshold,
                mode=mode,
            )

        def done(objects: list[ObjectMask]) -> None:
            self._end_long()
            target = self.target_layer(image)
            ids = self._commits.commit(target, objects, plane, default_class=None)
            self.status.value = (
                f"Segment everything: {len(ids)} object(s) committed into {target.name!r} "
                "(one undo step)."
            )

        self._run("Segment everything", work, done, on_error=self._end_long)

    def propagate(self, *_: Any) -> None:
        """Follow the previewed object through the stack, committing it on every plane."""
        if self._cancel is not None:
            return
        if not self._preview or self._preview_where is None:
            self.notify(
                "Propagate needs an object: segment it on this plane first (the orange "
                "preview), then press Propagate.",
                "warning",
            )
            return
        image, plane = self._preview_where
        if not plane:
            self.notify("Propagate works on stacks (z or t); this image is 2-D.", "error")
            return
        start = self._preview[0]
        ids = self.commit()
        if not ids:
            return
        label_id = ids[0]
        target = self.target_layer(image)
        step = 1 if self.direction.value == "forward" else -1
        axis = len(plane) - 1  # the innermost stack axis (z of a t, z stack)
        ref = self._ref(image)
        cancel = self._start_long("SEEM: propagate")

        def on_plane(where: tuple[int, ...], obj: ObjectMask) -> None:
            self._main.later(lambda: self._commits.extend(target, obj, where, label_id))

        def work(backend: Backend) -> int:
            return backend.propagate(
                ref,
                plane,
                start,
                axis=axis,
                direction=step,
                reporter=self._report,
                cancel=cancel,
                on_plane=on_plane,
            )

        def done(count: int) -> None:
            self._end_long()
            self.status.value = (
                f"Propagated id {label_id} to {count} more plane(s) "
                "(stopped where the object is gone)."
            )

        self._run("Propagate", work, done, on_error=self._end_long)

    # ------------------------------------------------------------------ prefetch

    def _camera_moved(self, *_: Any) -> None:
        if self.prefetch.value and self._backend is not None:
            self._prefetch_timer.start()

    def _prefetch_run(self) -> None:
        backend, image = self._backend, self.current_image()
        if backend is None or image is None or not backend.alive:
            return
        box = L.visible_box(self.viewer, image)
        if box is None:
            return
        ref, plane, previous = self._ref(image), self._plane(image), self._prefetch_job

        def work(b: Backend) -> str:
            if previous is not None:
                b.cancel_job(previous)
            return b.prefetch(ref, plane, box)

        def started(job_id: str) -> None:
            self._prefetch_job = job_id

        future = backend.submit(work, backend)
        self._main.when_done(
            future, lambda f: started(f.result()) if f.exception() is None else None
        )

    # ------------------------------------------------------------------ teardown

    def _disconnect(self, *_: Any) -> None:
        """The Qt widget is gone: stop listening to the viewer (it may outlive us)."""
        for emitter, handler in self._viewer_events:
            emitter.disconnect(handler)
        self._viewer_events = []
        for key in ("s", "c", "Shift-C", "t"):
            self.viewer.bind_key(key, None, overwrite=True)
        self._drop_backend()  # stops the model process this widget started

    def close_backend(self) -> None:
        """Stop the model process this widget started (napari calls this on close)."""
        self._drop_backend()


def _polarity_on_press(layer: Any, event: Any) -> None:
    """Ctrl-click adds a negative point; a plain click follows the ``T`` toggle."""
    negative = bool(layer.metadata.get("seem_negative", False))
    if "Control" in getattr(event, "modifiers", ()):
        negative = not negative
    L.set_polarity(layer, not negative)
