"""The SEEM dock widget (Plugins -> SEEM): a thin magicgui Container.

The widget holds the prompt controls and implements :class:`~napari_seem._napari.host.Host`
for its panels: ``model_panel`` (model process, prefetch), ``example`` (referring example),
``long_runs`` (segment everything, propagate) and ``finetune``. Model work runs on the
backend's threads (:mod:`~napari_seem._napari.backend` over :mod:`napari_seem.app`); results
come back through :class:`~napari_seem._napari.qt_bridge.MainThread`; commits and undo are
:mod:`~napari_seem._napari.commits`.

Keys (bound in code on the viewer and on the prompt layers): ``S`` segment, ``C`` commit,
``Shift-C`` clear prompts, ``T`` toggle the polarity of new points; Ctrl-click in the
points layer adds a negative point (Alt-drag is napari's zoom box).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    Label,
    LineEdit,
    PushButton,
)

from napari_seem._napari import layers as L
from napari_seem._napari import prompt_layers as P
from napari_seem._napari.backend import Backend, ImageRef, ModelChoice
from napari_seem._napari.commits import CommitLog
from napari_seem._napari.example_panel import ExamplePanel
from napari_seem._napari.finetune_panel import FineTunePanel
from napari_seem._napari.host import group, header, row
from napari_seem._napari.long_runs import LongRuns
from napari_seem._napari.model_panel import ModelPanel
from napari_seem._napari.qt_bridge import MainThread
from napari_seem.core.progress import Cancelled
from napari_seem.core.prompts import ObjectPrompt, PromptError, TextPrompt
from napari_seem.core.results import ObjectMask
from napari_seem.remote.client import RemoteError, ServerUnavailableError

__all__ = ["SeemWidget"]

T = TypeVar("T")
LIVE_DELAY_MS = 350
PREFETCH_DELAY_MS = 500


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
        self._commits = CommitLog()
        self._object_id: str | None = None
        self._preview: list[ObjectMask] = []
        self._preview_where: tuple[Any, tuple[int, ...]] | None = None
        self._generation = 0
        self._versions: dict[int, int] = {}
        self.busy = False
        # the first commit builds a labels layer with a pandas feature table; importing
        # pandas there stalled the GUI thread for ~0.6 s (benchmarks/gui_stall.py), so it is
        # imported in the background now
        threading.Thread(target=_warm_imports, name="seem-warm-imports", daemon=True).start()
        self.model_panel = ModelPanel(self, model or ModelChoice())
        self.long_runs = LongRuns(self)
        self.example = ExamplePanel(self)
        self._build_controls()
        self.finetune = FineTunePanel(self)
        self.status = Label(value="Choose an image, add points or shapes, press Segment.")
        self._lay_out()
        self._connect_controls()
        layers = self.viewer.layers
        camera = L.camera_of(self.viewer)
        self._viewer_events: list[tuple[Any, Callable[..., None]]] = [
            (layers.events.inserted, self._refresh_choices),
            (layers.events.removed, self._refresh_choices),
            (layers.events.reordered, self._refresh_choices),
            (camera.events.center, self._camera_moved),
            (camera.events.zoom, self._camera_moved),
        ]
        self._live_timer = QTimer(self.native)  # parented: stops with the widget
        self._live_timer.setSingleShot(True)
        self._live_timer.setInterval(LIVE_DELAY_MS)
        self._live_timer.timeout.connect(self._live_run)
        self._prefetch_timer = QTimer(self.native)
        self._prefetch_timer.setSingleShot(True)
        self._prefetch_timer.setInterval(PREFETCH_DELAY_MS)
        self._prefetch_timer.timeout.connect(self.model_panel.prefetch_visible)
        for emitter, handler in self._viewer_events:
            emitter.connect(handler)
        self.native.destroyed.connect(self._disconnect)
        self._bind_keys(self.viewer)

    def _build_controls(self) -> None:
        """The prompt and referring-example controls (the panels build their own)."""
        models, runs = self.model_panel, self.long_runs
        # the panels' controls, under the names scripts and tests know
        self.model_choice, self.checkpoint = models.model_choice, models.checkpoint
        self.url, self.token = models.url, models.token
        self.connect_button, self.model_status = models.connect_button, models.model_status
        self.prefetch = models.prefetch
        self.vocabulary, self.scope = runs.vocabulary, runs.scope
        self.everything_mode, self.min_score = runs.everything_mode, runs.min_score
        self.everything_button, self.cancel_button = runs.everything_button, runs.cancel_button
        self.direction, self.propagate_button = runs.direction, runs.propagate_button
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
        example = self.example
        self.example_image, self.example_prompts = example.example_image, example.example_prompts
        self.find_button = example.find_button

    def _lay_out(self) -> None:
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

    def _connect_controls(self) -> None:
        self.connect_button.changed.connect(self.connect)
        self.points_button.changed.connect(self.add_points_layer)
        self.shapes_button.changed.connect(self.add_shapes_layer)
        self.segment_button.changed.connect(self.segment)
        self.commit_button.changed.connect(self.commit)
        self.clear_button.changed.connect(self.clear_prompts)
        self.undo_button.changed.connect(self.undo)
        self.text.native.returnPressed.connect(self.segment)
        self.image.changed.connect(self._image_changed)

    # ------------------------------------------------------------------ host (see host.py)

    @property
    def main(self) -> MainThread:
        return self._main

    @property
    def backend(self) -> Backend | None:
        return self.model_panel.backend

    @property
    def _backend(self) -> Backend | None:  # the name tests and benchmarks read
        return self.model_panel.backend

    @property
    def _progress(self) -> Any:  # the long run's progress bar (None when idle)
        return self.long_runs.progress

    @property
    def _prefetch_job(self) -> str | None:
        return self.model_panel.prefetch_job

    @property
    def commits(self) -> CommitLog:
        return self._commits

    def image_ref(self, image: Any) -> ImageRef:
        """How the model process sees ``image`` (its pixels' version included)."""
        return L.image_ref(image, self._versions.get(id(image), 0))

    def plane_of(self, image: Any) -> tuple[int, ...]:
        return L.current_plane(image, self.viewer.dims.point)

    def preview(self) -> tuple[ObjectMask, Any, tuple[int, ...]] | None:
        if not self._preview or self._preview_where is None:
            return None
        image, plane = self._preview_where
        return self._preview[0], image, plane

    def with_backend(
        self, then: Callable[[Backend], None], *, on_error: Callable[[], None] | None = None
    ) -> None:
        self._with_backend(then, on_error=on_error)

    def _with_backend(
        self, then: Callable[[Backend], None], *, on_error: Callable[[], None] | None = None
    ) -> None:
        """Call ``then(backend)`` on the GUI thread once the model process is up."""
        self.model_panel.with_backend(then, on_error=on_error)

    def _ref(self, image: Any) -> ImageRef:
        return self.image_ref(image)

    # ------------------------------------------------------------------ choices

    def _image_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        return P.image_choices(self.viewer)

    def _target_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        return P.target_choices(self.viewer)

    def _mask_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        return P.mask_choices(self.viewer)

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

    # ------------------------------------------------------------------ notifications

    def notify(self, text: str, severity: str = "info") -> None:
        """Show a napari notification and the widget status line."""
        from napari.utils.notifications import show_error, show_info, show_warning

        self.messages.append((severity, text))
        self.status.value = text
        {"error": show_error, "warning": show_warning}.get(severity, show_info)(text)

    def fail(self, exc: BaseException, what: str) -> None:
        """Report a failed request (see :meth:`Host.fail`)."""
        if isinstance(exc, Cancelled):
            self.notify(f"{what}: cancelled; nothing was committed.", "warning")
            return
        if isinstance(exc, ServerUnavailableError):
            self.model_panel.drop()
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

    def use_backend(self, backend: Backend) -> None:
        """Use an already running model process (scripts, notebooks, tests)."""
        self.model_panel.use(backend)

    def connect(self, *_: Any) -> None:
        """(Re)start the model process with the chosen model."""
        self.model_panel.drop()
        self._with_backend(lambda backend: None)

    def run(
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
                    self.fail(exc, what)
                    return
                done(f.result())

            self._main.when_done(future, finish)

        self.busy = True
        self._with_backend(start, on_error=failed)

    # ------------------------------------------------------------------ layers and prompts

    def current_image(self) -> Any | None:
        layer = self.image.value
        if layer is None or layer not in self.viewer.layers:
            images = P.layers_of(self.viewer, "Image")
            layer = images[0] if images else None
        return layer

    def require_image(self) -> Any | None:
        image = self.current_image()
        if image is None:
            self.notify(
                "No image layer: open an image (File > Open, or File > Open Sample > SEEM) "
                "and choose it under Image.",
                "error",
            )
        return image

    def _data_changed(self, layer: Any) -> None:
        old = self._ref(layer).key
        self._versions[id(layer)] = self._versions.get(id(layer), 0) + 1
        if self.backend is not None:
            self.backend.forget(old)

    def _image_changed(self, *_: Any) -> None:
        self._new_object()

    def add_points_layer(self, *_: Any) -> Any | None:
        """Create (or select) the "SEEM points" layer over the chosen image."""
        image = self.require_image()
        if image is None:
            return None
        layer = L.ensure_points_layer(self.viewer, image)
        self._watch_prompt_layer(layer)
        return layer

    def add_shapes_layer(self, *_: Any) -> Any | None:
        """Create (or select) the "SEEM shapes" layer over the chosen image."""
        image = self.require_image()
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
            layer.mouse_drag_callbacks.append(P.polarity_on_press)

    def _bind_keys(self, target: Any) -> None:
        if target is self.viewer:
            target.bind_key("t", lambda *_: self._toggle_points_polarity(), overwrite=True)
        target.bind_key("s", lambda *_: self.segment(), overwrite=True)
        target.bind_key("c", lambda *_: self.commit(), overwrite=True)
        target.bind_key("Shift-C", lambda *_: self.clear_prompts(), overwrite=True)

    def _toggle_points_polarity(self) -> None:
        layer = P.find_layer(self.viewer, L.POINTS_NAME, "Points")
        if layer is not None:
            self._toggle_polarity(layer)

    def _toggle_polarity(self, layer: Any) -> None:
        self.status.value = P.toggle_polarity(layer)

    def _prompts_changed(self, event: Any = None) -> None:
        if self.live.value:
            self._live_timer.start()

    def _live_run(self) -> None:
        if P.has_prompts(self.viewer, str(self.text.value)):
            self.segment()

    def _new_object(self) -> None:
        self._object_id = None
        self._preview = []
        self._preview_where = None
        L.hide_preview(self.viewer)

    # ------------------------------------------------------------------ segment

    def segment(self, *_: Any) -> None:
        """Segment the object the prompts describe (clicks, shapes, mask, text)."""
        image = self.require_image()
        if image is None:
            return
        plane = self.plane_of(image)
        try:
            visual = L.prompts_from_layers(
                image,
                plane,
                self.viewer.dims.point,
                points=P.find_layer(self.viewer, L.POINTS_NAME, "Points"),
                shapes=P.find_layer(self.viewer, L.SHAPES_NAME, "Shapes"),
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
        ref = self.image_ref(image)
        self._generation += 1  # supersedes a pending request even when refused below
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
            self._object_id = object_id = self._object_id or uuid.uuid4().hex
            names = None if text is not None else self.long_runs.vocabulary_names() or None

            def work(backend: Backend) -> list[ObjectMask]:
                return [backend.predict(ref, plane, prompt, object_id=object_id, vocabulary=names)]

        else:
            assert text is not None

            def work(backend: Backend) -> list[ObjectMask]:
                return backend.ground(ref, plane, text)

        self.request_preview("Segment", work, image, plane)

    def request_preview(
        self,
        what: str,
        work: Callable[[Backend], list[ObjectMask]],
        image: Any,
        plane: tuple[int, ...],
    ) -> None:
        """Run ``work`` and preview its objects; a newer request supersedes it."""
        self._generation += 1
        show = lambda objs: self._show(image, plane, objs)  # noqa: E731
        self.run(what, work, show, generation=self._generation)

    def _show(self, image: Any, plane: tuple[int, ...], objects: list[ObjectMask]) -> None:
        self._preview = [o for o in objects if not o.is_empty]
        self._preview_where = (image, plane)
        L.show_preview(self.viewer, image, self._preview, plane)
        P.keep_prompt_layer_active(self.viewer)
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

    # ------------------------------------------------------------------ commit / undo / clear

    def target_layer(self, image: Any) -> Any:
        """The chosen labels layer, or a new "SEEM labels" layer over ``image``."""
        target = self.target.value
        if target is None or target not in self.viewer.layers:
            target = P.find_layer(self.viewer, P.TARGET_NAME, "Labels")
            if target is None:
                target = L.new_target_labels(self.viewer, image, P.TARGET_NAME)
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
        P.keep_prompt_layer_active(self.viewer, always=True)
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
        P.clear_prompt_layers(self.viewer)
        self._live_timer.stop()
        self._generation += 1
        self._new_object()

    # ------------------------------------------------------------------ referring example

    def find_it_here(self, *_: Any) -> None:
        """Segment, on the chosen image, the object marked on the example image."""
        self.example.find_it_here()

    # ------------------------------------------------------------------ long runs

    def cancel(self, *_: Any) -> None:
        """Stop the running "Segment everything" or "Propagate" (between steps)."""
        self.long_runs.cancel()

    def segment_everything(self, *_: Any) -> None:
        """Every object in the view (or the whole image), named from the vocabulary."""
        self.long_runs.segment_everything()

    def propagate(self, *_: Any) -> None:
        """Follow the previewed object through the stack, committing it on every plane."""
        self.long_runs.propagate()

    def _camera_moved(self, *_: Any) -> None:
        if self.prefetch.value and self.backend is not None:
            self._prefetch_timer.start()

    # ------------------------------------------------------------------ teardown

    def _disconnect(self, *_: Any) -> None:
        """The Qt widget is gone: stop listening to the viewer (it may outlive us)."""
        for emitter, handler in self._viewer_events:
            emitter.disconnect(handler)
        self._viewer_events = []
        for key in ("s", "c", "Shift-C", "t"):
            self.viewer.bind_key(key, None, overwrite=True)
        self.model_panel.drop()  # stops the model process this widget started

    def close_backend(self) -> None:
        """Stop the model process this widget started (napari calls this on close)."""
        self.model_panel.drop()
