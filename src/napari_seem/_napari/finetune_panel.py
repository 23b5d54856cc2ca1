"""The "Fine-tune" section of the SEEM dock widget.

It trains the model process's model on the objects committed so far (the model process's
``"fine_tune"`` job, see :mod:`napari_seem.engine.kinds.fine_tune`); when it finishes, the
model runs the new weights, so every later prediction uses them.

- **Labels layers**: the labels layers to learn from, each over its image. Default: every
  labels layer the widget committed objects into (over the image it segmented); other
  labels layers pair with the image layer of their shape. Each plane with objects is one
  training image (at most :data:`MAX_PLANES` planes of a stack).
- **Class**: the class of objects whose table row names none (rows named ``object`` by a
  commit without text count as unnamed); other rows keep their own class. Defaults to the
  most common named class of the chosen layers' tables, else ``object``.
- **Steps**, **Fine-tune**, a progress bar with the running loss, **Cancel** (the model
  keeps its weights), **Use base weights**, **Save weights as…** (the file in use, copied
  from the model process).

The section is folded away behind its check box until wanted (the dock stays short).

Labels layers are only read (a copy of each plane is sent): nothing here ever writes into
them, whether fine-tuning succeeds, fails or is cancelled.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    Container,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    Select,
    SpinBox,
)

from napari_seem._napari import layers as L
from napari_seem._napari.backend import Backend, ImageRef, TrainingPair
from napari_seem._napari.host import Host
from napari_seem.core.progress import Cancelled, Progress

__all__ = ["DEFAULT_STEPS", "MAX_PLANES", "FineTunePanel"]

DEFAULT_STEPS = 100
#: Most planes of one stacked labels layer used for training.
MAX_PLANES = 16
_UNNAMED = ("", "object", "background")


@dataclass(frozen=True, eq=False)
class _Source:
    """A chosen labels layer as read on the GUI thread (the pixels are read later)."""

    name: str
    image: ImageRef
    data: Any
    plane_shape: tuple[int, ...]
    classes: dict[int, str]


class FineTunePanel(Container):
    """Fine-tune the model on committed labels; ``owner`` is the widget, seen through the
    :class:`~napari_seem._napari.host.Host` protocol."""

    def __init__(self, owner: Host) -> None:
        super().__init__(labels=False)
        self.owner = owner
        self._images: dict[int, tuple[Any, Any]] = {}  # id(labels) -> (labels, image)
        self._cancel: threading.Event | None = None
        self._auto_class = "object"
        self.last_info: dict[str, Any] | None = None
        self.layers = Select(label="Labels layers", choices=self._choices, allow_multiple=True)
        self.layers.tooltip = (
            "Labels to learn from (default: every layer objects were committed into). "
            "Each must lie over an image layer of its shape."
        )
        self.layers.native.setMaximumHeight(64)
        self.class_name = LineEdit(label="Class", value="object")
        self.class_name.tooltip = (
            "Class of objects whose table row names none (commits without text are "
            "'object'); named rows keep their class"
        )
        self.steps = SpinBox(label="Steps", value=DEFAULT_STEPS, min=1, max=100_000, step=10)
        self.steps.tooltip = "Optimizer steps (a CPU does a few per second on seem-lite)"
        self.fine_tune_button = PushButton(text="Fine-tune")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=DEFAULT_STEPS)
        self.loss = Label(value="")
        self.base_button = PushButton(text="Use base weights")
        self.save_button = PushButton(text="Save weights as…")
        self.show_button = CheckBox(text="Fine-tune the model on the committed labels")
        self.show_button.native.setStyleSheet("font-weight: bold;")
        self.body = Container(
            widgets=[
                Container(widgets=[self.layers], labels=True),
                _row(self.class_name, self.steps, labels=True),
                _row(self.fine_tune_button, self.cancel_button),
                self.progress,
                self.loss,
                _row(self.base_button, self.save_button),
            ],
            labels=False,
        )
        self.extend([self.show_button, self.body])
        self.margins = (0, 0, 0, 0)
        self.body.visible = False
        self.show_button.changed.connect(lambda shown: setattr(self.body, "visible", shown))
        self.fine_tune_button.changed.connect(self.fine_tune)
        self.cancel_button.changed.connect(self.cancel)
        self.base_button.changed.connect(self.use_base_weights)
        self.save_button.changed.connect(self.save_weights)
        self.layers.changed.connect(self._update_class)

    # ------------------------------------------------------------------ choices

    @property
    def running(self) -> bool:
        """A fine-tune is in progress."""
        return self._cancel is not None

    def remember(self, labels: Any, image: Any) -> None:
        """``labels`` receives commits of objects segmented on ``image`` (the widget calls
        this): it becomes a default training layer over that image."""
        self._images[id(labels)] = (labels, image)
        self.refresh()
        if labels in self._layer_choices() and labels not in self.layers.value:
            self.layers.value = [*self.layers.value, labels]

    def refresh(self, *_: Any) -> None:
        """Layers were added or removed: update the choices (and the class default)."""
        self.layers.reset_choices()
        self._update_class()

    def _labels_layers(self) -> list[Any]:
        return [
            layer
            for layer in self.owner.viewer.layers
            if type(layer).__name__ == "Labels" and layer.name != L.PREVIEW_NAME
        ]

    def image_of(self, labels: Any) -> Any | None:
        """The image layer ``labels`` lies over: the one committed from, else the image
        layer of the same shape (the widget's current image first)."""
        layers = self.owner.viewer.layers
        known = self._images.get(id(labels))
        if known is not None and known[0] is labels and known[1] in layers:
            return known[1]
        shape = tuple(np.shape(_level0(labels)))
        current = self.owner.current_image()
        images = [layer for layer in layers if type(layer).__name__ == "Image"]
        if current in images:
            images.remove(current)
            images.insert(0, current)
        for image in images:
            if (*L.plane_shape(image), *L.image_shape(image)) == shape:
                return image
        return None

    def _choices(self, _: Any = None) -> list[tuple[str, Any]]:
        out = []
        for layer in self._labels_layers():
            image = self.image_of(layer)
            if image is not None:
                out.append((f"{layer.name}  (on {image.name})", layer))
        return out

    def _layer_choices(self) -> list[Any]:
        return [layer for _, layer in self._choices()]

    def default_layers(self) -> list[Any]:
        """The labels layers objects were committed into (still open, with objects)."""
        layers = self._layer_choices()
        return [
            labels
            for labels, _ in self._images.values()
            if labels in layers and _committed_ids(labels)
        ]

    def chosen_layers(self) -> list[Any]:
        """The layers to train on: the selection, else :meth:`default_layers`."""
        chosen = [layer for layer in self.layers.value if layer in self._layer_choices()]
        return chosen or self.default_layers()

    def _update_class(self, *_: Any) -> None:
        named: Counter[str] = Counter()
        for layer in self.chosen_layers():
            named.update(n for n in _table(layer).values() if n.lower() not in _UNNAMED)
        default = named.most_common(1)[0][0] if named else "object"
        if str(self.class_name.value).strip() in (self._auto_class, ""):
            self.class_name.value = default
        self._auto_class = default

    # ------------------------------------------------------------------ actions

    def fine_tune(self, *_: Any) -> None:
        """Fine-tune on the chosen labels layers (a worker thread; the GUI keeps running)."""
        owner = self.owner
        if self._cancel is not None:
            return
        sources = []
        for layer in self.chosen_layers():
            image = self.image_of(layer)
            if image is None or getattr(layer, "multiscale", False):
                continue
            sources.append(
                _Source(
                    layer.name,
                    owner.image_ref(image),
                    layer.data,
                    L.plane_shape(image),
                    _table(layer),
                )
            )
        if not sources:
            owner.notify(
                "Nothing to fine-tune on: segment and commit some objects first (or choose "
                "a labels layer drawn over an image layer).",
                "warning",
            )
            return
        steps = int(self.steps.value)
        default = str(self.class_name.value).strip() or "object"
        cancel = self._begin(steps)
        start = time.monotonic()

        def work(backend: Backend) -> dict[str, Any]:
            pairs = _read_pairs(sources, default)
            return backend.fine_tune(pairs, steps=steps, reporter=self._report, cancel=cancel)

        def done(info: dict[str, Any]) -> None:
            self._end()
            self.last_info = info
            seconds = time.monotonic() - start
            loss = info.get("loss")
            shown = "n/a" if loss is None else f"{loss:.3f}"
            self.progress.value = self.progress.max
            self.loss.value = f"final loss {shown}"
            owner.notify(
                f"Fine-tuned on {info.get('objects', '?')} object(s) in {seconds:.1f} s "
                f"({info.get('steps', steps)} steps, loss {shown}); session now uses "
                f"{info.get('weights')}"
            )
            backend = owner.backend
            if backend is not None:
                name = Path(str(info.get("weights"))).name
                owner.model_status.value = (
                    f"model: {backend.info.model} on {backend.info.device} (weights: {name}, "
                    "fine-tuned)"
                )

        self._start(work, done, "Fine-tune")

    def cancel(self, *_: Any) -> None:
        """Stop a running fine-tune (at its next step); the model keeps its weights."""
        if self._cancel is not None:
            self._cancel.set()
            self.loss.value = "cancelling..."

    def use_base_weights(self, *_: Any) -> None:
        """Switch the model process back to the weights it started with."""
        if self._cancel is not None:
            return

        def done(checkpoint: str) -> None:
            self._idle()
            self.last_info = None
            self.owner.notify(f"The session now uses the base weights ({checkpoint}).")
            backend = self.owner.backend
            if backend is not None:
                info = backend.info
                self.owner.model_status.value = (
                    f"model: {info.model} on {info.device} (weights: {info.checkpoint})"
                )

        self._busy()
        self._start(lambda backend: backend.use_base_weights(), done, "Use base weights")

    def save_weights(self, *_: Any, path: str | Path | None = None) -> None:
        """Ask where to save the weights in use (a file dialog), then copy them there."""
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            chosen, _filter = QFileDialog.getSaveFileName(
                self.native,
                "Save fine-tuned weights as",
                "seem-finetuned.safetensors",
                "Weights (*.safetensors)",
            )
            if not chosen:
                return
            path = chosen
        self.save_weights_to(path)

    def save_weights_to(self, path: str | Path) -> None:
        """Copy the weight file the model runs with to ``path`` (on this machine)."""
        if self._cancel is not None:
            return
        target = Path(path)
        if target.suffix != ".safetensors":
            target = target.with_name(target.name + ".safetensors")

        def done(saved: Path) -> None:
            self._idle()
            self.owner.notify(f"Saved the fine-tuned weights to {saved}.")

        self._busy()
        self._start(lambda backend: backend.save_weights(target), done, "Save weights")

    # ------------------------------------------------------------------ plumbing

    def _begin(self, steps: int) -> threading.Event:
        self._cancel = threading.Event()
        self.progress.max = steps
        self.progress.value = 0
        self.loss.value = "starting..."
        self._buttons(running=True)
        return self._cancel

    def _busy(self) -> None:
        self._cancel = threading.Event()
        self._buttons(running=True)
        self.cancel_button.enabled = False

    def _end(self) -> None:
        self._idle()

    def _idle(self) -> None:
        self._cancel = None
        self._buttons(running=False)

    def _buttons(self, *, running: bool) -> None:
        self.fine_tune_button.enabled = not running
        self.base_button.enabled = self.save_button.enabled = not running
        self.cancel_button.enabled = running

    def _report(self, progress: Progress) -> None:
        """Progress from the worker thread (marshalled to the GUI thread)."""
        done, total, message = progress.done, max(progress.total, 1), progress.message

        def update() -> None:
            if self._cancel is None:
                return
            self.progress.max = max(total, 1)
            self.progress.value = min(done, max(total, 1))
            if message and not self._cancel.is_set():
                self.loss.value = message

        self.owner.main.later(update)

    def _start(self, work: Any, done: Any, what: str) -> None:
        """``work(backend)`` on a backend thread, then ``done(result)`` on the GUI thread;
        failures are reported and leave the panel idle."""
        owner = self.owner

        def failed(exc: BaseException) -> None:
            self._idle()
            if isinstance(exc, Cancelled):
                self.loss.value = "cancelled"
                owner.notify(
                    f"{what}: cancelled; the model keeps its weights and your labels are "
                    "unchanged.",
                    "warning",
                )
                return
            owner.fail(exc, what)
            if what == "Fine-tune":
                self.loss.value = "failed: the model keeps its weights"

        def start(backend: Backend) -> None:
            future = backend.submit(work, backend)

            def finish(f: Future[Any]) -> None:
                exc = f.exception()
                if exc is not None:
                    failed(exc)
                    return
                done(f.result())

            owner.main.when_done(future, finish)

        owner.with_backend(start, on_error=self._idle)


def _row(*items: Any, labels: bool = False) -> Container:
    return Container(widgets=list(items), layout="horizontal", labels=labels)


def _level0(layer: Any) -> Any:
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def _table(layer: Any) -> dict[int, str]:
    """``{id: class_name}`` of a labels layer's feature table (ids > 0 only)."""
    features = layer.features
    if "index" not in features or "class_name" not in features or not len(features):
        return {}
    out = {}
    for index, name in zip(features["index"], features["class_name"], strict=True):
        try:
            key = int(index)
        except (TypeError, ValueError):
            continue
        if key > 0 and isinstance(name, str):
            out[key] = name.strip()
    return out


def _committed_ids(layer: Any) -> bool:
    """Whether the layer holds objects (its table, else its in-memory pixels)."""
    if _table(layer):
        return True
    data = _level0(layer)
    return isinstance(data, np.ndarray) and bool(data.any())


def _read_pairs(sources: Sequence[_Source], default: str) -> list[TrainingPair]:
    """Copies of the planes with objects, each id named (worker thread; read only)."""
    pairs = []
    for source in sources:
        planes = list(np.ndindex(*source.plane_shape)) if source.plane_shape else [()]
        used = 0
        for plane in planes:
            if used == MAX_PLANES:
                break
            labels = np.array(source.data[plane] if plane else source.data, copy=True)
            if labels.dtype.kind not in "iu":
                raise ValueError(
                    f"labels layer {source.name!r} holds {labels.dtype} values: fine-tuning "
                    "needs integer object ids"
                )
            ids = np.unique(labels)
            ids = ids[ids > 0]
            if ids.size == 0:
                continue
            classes = {}
            for value in ids.tolist():
                name = source.classes.get(int(value), "")
                classes[int(value)] = default if name.lower() in _UNNAMED else name
            pairs.append(TrainingPair(source.image, tuple(int(p) for p in plane), labels, classes))
            used += 1
    if not pairs:
        raise ValueError(
            "the chosen labels layers hold no objects: segment and commit some objects first"
        )
    return pairs
