"""The "Segment everything" and "Stacks" sections: long runs with progress and Cancel.

:class:`LongRuns` builds the controls, runs "Segment everything" (the engine's
``"segment"`` job, see :mod:`napari_seem.app.everything`) and "Propagate through stack"
(see :mod:`napari_seem.app.propagate`) on a worker thread, shows a napari progress bar fed
by a :data:`~napari_seem.core.progress.Reporter`, and commits what they find through the
widget (:class:`~napari_seem._napari.host.Host`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from typing import Any

from magicgui.widgets import ComboBox, FloatSpinBox, LineEdit, PushButton

from napari_seem._napari import layers as L
from napari_seem._napari.backend import Backend
from napari_seem._napari.host import Host
from napari_seem.core.modes import DEFAULT_EVERYTHING_MODE, EVERYTHING_MODES
from napari_seem.core.progress import Progress
from napari_seem.core.results import ObjectMask

__all__ = ["PIECE_S", "REDRAW_S", "LongRuns"]

#: Most seconds one GUI event-loop turn spends painting committed objects (the rest of
#: a large commit follows on the next turns, so the viewer keeps drawing).
PIECE_S = 0.015

#: Fewest seconds between two progress redraws (bar and status line).
REDRAW_S = 0.25


def _warm_labels() -> None:
    """Import and build once, off the GUI thread, what the first napari Labels layer of a
    session pays for: pandas (its feature table) and napari's default label colormap.

    No layer is built here: a layer's constructor reaches napari's shared unit registry
    (pint), and building that from this thread while the GUI thread adds an image layer
    raced (``UndefinedUnitError: 'pixel'``).
    """
    import pandas  # noqa: F401  (the layer's feature table)
    from napari.utils.colormaps import direct_colormap, label_colormap

    label_colormap(49, 0.5, background_value=0)  # what Labels() builds by default
    direct_colormap({0: "transparent", None: "black"})


class LongRuns:
    """Segment everything and propagation, one at a time, with a progress bar and Cancel."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.cancel_event: threading.Event | None = None
        self.progress: Any = None  # the napari progress bar of the run, None when idle
        self._latest: Progress | None = None  # a report not shown yet (see report)
        self._shown_at = 0.0  # time.monotonic() of the last progress redraw
        self._report_lock = threading.Lock()
        self.vocabulary = LineEdit(label="Vocabulary")
        self.vocabulary.native.setPlaceholderText("comma-separated classes, e.g. nucleus, cell")
        self.vocabulary.tooltip = (
            "Classes for Segment everything; they also name a clicked object when the Text "
            "box is empty (its best class of them)"
        )
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
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        # the first labels layer of a session pays for imports (pandas) and napari's first
        # label colormap: pay them here, off the GUI thread, not at the press
        threading.Thread(target=_warm_labels, name="seem-warm", daemon=True).start()
        self.everything_button.changed.connect(self.segment_everything)
        self.propagate_button.changed.connect(self.propagate)
        self.cancel_button.changed.connect(self.cancel)

    # ------------------------------------------------------------------ progress

    def vocabulary_names(self) -> list[str]:
        """The class names typed in the Vocabulary box (comma-separated), in order."""
        return [v.strip() for v in str(self.vocabulary.value).split(",") if v.strip()]

    def _start(self, title: str) -> threading.Event:
        from napari.utils import progress

        self.cancel_event = threading.Event()
        self.progress = progress(total=1, desc=title)
        self.cancel_button.enabled = True
        self.everything_button.enabled = self.propagate_button.enabled = False
        return self.cancel_event

    def report(self, progress: Progress) -> None:
        """Progress from a worker thread, shown on the GUI thread at most every
        :data:`REDRAW_S` seconds (each redraw lays out the dock: many a second would stall
        the viewer); the newest report wins."""
        with self._report_lock:
            fresh = self._latest is None
            self._latest = progress
        if not fresh:
            return  # an update is already on its way and will show this report

        def update() -> None:
            with self._report_lock:
                latest, self._latest = self._latest, None
            self._shown_at = time.monotonic()
            bar = self.progress
            if bar is None or latest is None:
                return
            done, total = latest.done, max(latest.total, 1)
            if bar.total != total:
                bar.total = total
            bar.n = done
            bar.refresh()
            self.host.status.value = f"{bar.desc}: {done} / {total}"

        wait = max(0.0, self._shown_at + REDRAW_S - time.monotonic())
        self.host.main.later(lambda: self._after(wait, update))

    @staticmethod
    def _after(seconds: float, fn: Callable[[], None]) -> None:
        from qtpy.QtCore import QTimer

        QTimer.singleShot(int(seconds * 1000), fn)

    def _end(self) -> None:
        if self.progress is not None:
            self.progress.close()
        self.progress = None
        self.cancel_event = None
        self.cancel_button.enabled = False
        self.everything_button.enabled = self.propagate_button.enabled = True

    def cancel(self, *_: Any) -> None:
        """Stop the running "Segment everything" or "Propagate" (between steps)."""
        if self.cancel_event is not None:
            self.cancel_event.set()
            self.host.status.value = "Cancelling..."

    # ------------------------------------------------------------------ runs

    def segment_everything(self, *_: Any) -> None:
        """Every object in the view (or the whole image), named from the vocabulary."""
        host = self.host
        image = host.require_image()
        if image is None or self.cancel_event is not None:
            return
        vocabulary = self.vocabulary_names()
        box = L.visible_box(host.viewer, image) if self.scope.value == "current view" else None
        plane, ref = host.plane_of(image), host.image_ref(image)
        threshold = float(self.min_score.value)
        mode = str(self.everything_mode.value)
        # napari's add_labels (vispy visuals, layer controls: a few hundred ms in one GUI
        # step that cannot be split) happens here, at the press, so that nothing but
        # painting in pieces is left for the GUI while the job runs and when it ends. A run
        # that commits nothing leaves the (empty) target: removing a layer is such a step
        # too, and the layer is where the next commits go
        target = host.target_layer(image)
        cancel = self._start("SEEM: segment everything")

        def work(backend: Backend) -> list[ObjectMask]:
            return backend.segment_everything(
                ref,
                plane,
                vocabulary,
                box=box,
                reporter=self.report,
                cancel=cancel,
                object_mask_threshold=threshold,
                mode=mode,
            )

        def committed(ids: list[int]) -> None:
            self._end()
            host.status.value = (
                f"Segment everything: {len(ids)} object(s) committed into {target.name!r} "
                "(one undo step)."
            )

        def done(objects: list[ObjectMask]) -> None:
            steps = host.commits.commit_steps(target, objects, plane, default_class=None)
            self._commit_in_pieces(steps, len(objects), committed)

        host.run("Segment everything", work, done, on_error=self._end)

    def _commit_in_pieces(
        self,
        steps: Generator[int, None, list[int]],
        total: int,
        finished: Callable[[list[int]], None],
    ) -> None:
        """Drive ``steps`` (:meth:`CommitLog.commit_steps`) on the GUI thread, at most
        :data:`PIECE_S` seconds per event-loop turn, then call ``finished(ids)``."""
        from qtpy.QtCore import QTimer

        def turn() -> None:
            start = time.perf_counter()
            try:
                while True:
                    handled = next(steps)
                    if time.perf_counter() - start > PIECE_S:
                        self.host.status.value = f"Committing: {handled} / {total} objects"
                        QTimer.singleShot(0, turn)
                        return
            except StopIteration as stop:
                finished(list(stop.value))

        turn()

    def propagate(self, *_: Any) -> None:
        """Follow the previewed object through the stack, committing it on every plane."""
        host = self.host
        if self.cancel_event is not None:
            return
        preview = host.preview()
        if preview is None:
            host.notify(
                "Propagate needs an object: segment it on this plane first (the orange "
                "preview), then press Propagate.",
                "warning",
            )
            return
        start, image, plane = preview
        if not plane:
            host.notify("Propagate works on stacks (z or t); this image is 2-D.", "error")
            return
        ids = host.commit()
        if not ids:
            return
        label_id = ids[0]
        target = host.target_layer(image)
        step = 1 if self.direction.value == "forward" else -1
        axis = len(plane) - 1  # the innermost stack axis (z of a t, z stack)
        ref = host.image_ref(image)
        cancel = self._start("SEEM: propagate")

        def on_plane(where: tuple[int, ...], obj: ObjectMask) -> None:
            host.main.later(lambda: host.commits.extend(target, obj, where, label_id))

        def work(backend: Backend) -> int:
            return backend.propagate(
                ref,
                plane,
                start,
                axis=axis,
                direction=step,
                reporter=self.report,
                cancel=cancel,
                on_plane=on_plane,
            )

        def done(count: int) -> None:
            self._end()
            host.status.value = (
                f"Propagated id {label_id} to {count} more plane(s) "
                "(stopped where the object is gone)."
            )

        host.run("Propagate", work, done, on_error=self._end)
