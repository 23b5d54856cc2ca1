"""Retake the napari pictures of ``docs/images`` with the shipped seem-lite model.

Run from the repository root: ``python docs/images/screenshots.py [NAME ...]`` (default:
every picture; names as in :data:`SHOTS`). It starts Xvfb when there is no display, opens a
shown napari viewer (``show=True``: a hidden viewer screenshots black) with the SEEM widget
on a seem-lite model process (the default model, CPU), and takes each picture on images
that ship with the package or with scikit-image (nothing downloaded): the synthetic nuclei
sample (touching nuclei of two sizes). The Jupyter picture is
taken by ``tests/jupyter/test_jupyterlab.py`` (``NAPARI_SEEM_SCREENSHOTS=1``).
Coordinates are level-0 ``(row, col)`` pixels.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).resolve().parent
sys.path.insert(0, str(OUT.parents[1]))  # benchmarks.gui_stall (start_xvfb)


def _spin(seconds: float, until: Callable[[], bool] | None = None) -> None:
    """Run the Qt event loop for ``seconds`` or until ``until()`` is true."""
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        QApplication.processEvents()
        if until is not None and until():
            return
        time.sleep(0.02)
    if until is not None:
        raise TimeoutError(f"gave up after {seconds:.0f} s")


def _isolated(labels: np.ndarray, count: int, *, margin: int = 4) -> list[tuple[int, int]]:
    """Centres of the ``count`` largest objects of ``labels`` that touch no other object."""
    from scipy import ndimage

    found = []
    for index in np.unique(labels[labels > 0]):
        mask = labels == index
        ring = ndimage.binary_dilation(mask, iterations=margin) & ~mask
        if (labels[ring] > 0).any():
            continue
        rows, cols = np.nonzero(mask)
        found.append((int(mask.sum()), int(np.median(rows)), int(np.median(cols))))
    found.sort(reverse=True)
    return [(r, c) for _, r, c in found[:count]]


class Session:
    """The viewer, the widget and the model process all pictures share."""

    def __init__(self) -> None:
        import napari

        from napari_seem._napari.backend import Backend, ModelChoice
        from napari_seem._napari.widget import SeemWidget

        self.viewer = napari.Viewer(show=True, title="napari")
        self.viewer.window.resize(1500, 1000)
        self.backend = Backend.start(ModelChoice(device="cpu"))
        self.widget = SeemWidget(self.viewer)
        self.viewer.window.add_dock_widget(self.widget, name="SEEM", area="right")
        self.widget.use_backend(self.backend)
        _spin(1.0)

    def reset(self) -> None:
        self.widget.clear_prompts()
        self.viewer.layers.clear()
        self.widget.text.value = ""
        _spin(0.3)

    def idle(self, timeout: float = 300.0) -> None:
        widget = self.widget
        _spin(timeout, lambda: not widget.busy and widget.long_runs.cancel_event is None)
        errors = [text for severity, text in widget.messages if severity == "error"]
        if errors:
            raise RuntimeError(errors[-1])

    def hover(self, row: float, col: float, *, plane: tuple[float, ...] = ()) -> None:
        """Put the cursor over level-0 ``(row, col)`` of "SEEM labels" (made the active
        layer) so the status bar names the object there."""
        labels = next(layer for layer in self.viewer.layers if layer.name == "SEEM labels")
        self.viewer.layers.selection.active = labels
        self.viewer.cursor.position = (*plane, row, col)
        self.viewer.update_status_from_cursor()

    def shoot(self, name: str) -> None:
        import imageio.v3 as iio

        _spin(0.8)
        iio.imwrite(OUT / f"{name}.png", self.viewer.screenshot(canvas_only=False, flash=False))
        print("wrote", OUT / f"{name}.png", flush=True)

    def nuclei(self, name: str = "nuclei") -> tuple[Any, np.ndarray]:
        """The napari nuclei sample as an image layer; returns it and its true labels."""
        image, truth = _nuclei_sample()
        layer = self.viewer.add_image(image, name=name, colormap="gray")
        self.widget.image.value = layer
        return layer, truth

    def click(self, row: float, col: float, *, segment: bool = True) -> None:
        points = self.widget.add_points_layer()
        assert points is not None
        points.add([row, col])
        if segment:
            self.widget.segment()
            self.idle()


def points(s: Session) -> None:
    """napari-points-preview / napari-points-commit: clicks named "nucleus"."""
    s.reset()
    _layer, truth = s.nuclei()
    centres = _isolated(truth, 4)
    s.widget.text.value = "nucleus"  # the click composed with the class name
    for row, col in centres[:3]:
        s.click(row, col)
        s.widget.commit()
    s.click(*centres[3])
    s.shoot("napari-points-preview")
    s.widget.commit()
    s.hover(*centres[1])
    s.shoot("napari-points-commit")


def box(s: Session) -> None:
    """napari-box-preview: a box around one nucleus of the sample."""
    s.reset()
    _layer, truth = s.nuclei()
    rows, cols = np.nonzero(truth == truth[_isolated(truth, 1)[0]])
    corners = [[rows.min() - 6.0, cols.min() - 6.0], [rows.max() + 6.0, cols.max() + 6.0]]
    shapes = s.widget.add_shapes_layer()
    assert shapes is not None
    shapes.add_rectangles(np.array(corners))
    s.widget.segment()
    s.idle()
    s.shoot("napari-box-preview")


def everything(s: Session) -> None:
    """napari-seem-lite-everything: every nucleus of the sample, named."""
    s.reset()
    _layer, truth = s.nuclei()
    s.widget.long_runs.vocabulary.value = "nucleus"
    s.widget.long_runs.scope.value = "whole image"
    s.widget.segment_everything()
    s.idle()
    s.hover(*_isolated(truth, 1)[0])
    s.shoot("napari-seem-lite-everything")


def progress(s: Session) -> None:
    """napari-everything-progress: the progress bar while a large image runs."""
    from napari_seem.datasets.synthetic import synthetic_nuclei

    s.reset()
    big = synthetic_nuclei((1024, 1024), n_objects=160, seed=11)
    layer = s.viewer.add_image(big.image, name="nuclei 1024", colormap="gray")
    s.widget.image.value = layer
    s.widget.long_runs.vocabulary.value = "nucleus"
    s.widget.long_runs.scope.value = "whole image"
    s.widget.segment_everything()
    runs = s.widget.long_runs
    _spin(300, lambda: runs.progress is not None and 0 < runs.progress.n < runs.progress.total)
    _spin(3.0)
    s.shoot("napari-everything-progress")
    runs.cancel()
    s.idle()


def propagate(s: Session) -> None:
    """napari-propagate: one nucleus followed through a 5-plane stack (it drifts)."""
    s.reset()
    data, truth = _nuclei_sample()
    planes = [np.roll(data, (3 * z, 2 * z), axis=(0, 1)) for z in range(5)]
    layer = s.viewer.add_image(np.stack(planes), name="stack", colormap="gray")
    s.widget.image.value = layer
    s.viewer.dims.set_point(0, 0)
    row, col = _isolated(truth, 1)[0]
    points = s.widget.add_points_layer()
    assert points is not None
    points.add([0.0, row, col])
    s.widget.segment()
    s.idle()
    s.widget.propagate()
    s.idle()
    s.viewer.dims.set_point(0, 3)
    s.hover(row + 9, col + 6, plane=(3,))
    s.shoot("napari-propagate")


def referring(s: Session) -> None:
    """napari-referring: a nucleus marked on a second image, found on the first."""
    from napari_seem.datasets.synthetic import synthetic_nuclei

    s.reset()
    layer, _truth = s.nuclei()
    other = synthetic_nuclei((256, 256), n_objects=12, seed=2)
    shift = float(layer.data.shape[1] + 40)
    example = s.viewer.add_image(other.image, name="example", translate=(0, shift))
    row, col = _isolated(other.labels, 1)[0]
    marks = s.viewer.add_points(
        np.array([[row, col + shift]]), name="example marks", size=8, face_color="#3ddc5a"
    )
    s.widget.image.value = layer
    s.widget.example_image.value = example
    s.widget.example_prompts.reset_choices()
    s.widget.example_prompts.value = marks
    s.widget.find_it_here()
    s.idle()
    s.viewer.reset_view()
    s.shoot("napari-referring")


def _nuclei_sample() -> tuple[np.ndarray, np.ndarray]:
    """The napari nuclei sample: ``(H, W)`` uint8 image and ``(H, W)`` true instance ids."""
    from napari_seem._napari.sample_data import synthetic_nuclei_sample

    (image, _, _), (truth, _, _) = synthetic_nuclei_sample()
    return np.asarray(image), np.asarray(truth)


SHOTS: dict[str, Callable[[Session], None]] = {
    "points": points,
    "box": box,
    "everything": everything,
    "progress": progress,
    "propagate": propagate,
    "referring": referring,
}


def main(argv: list[str]) -> int:
    from benchmarks.gui_stall import start_xvfb

    os.environ["QT_QPA_PLATFORM"] = "xcb"
    unknown = [name for name in argv if name not in SHOTS]
    if unknown:
        raise SystemExit(f"unknown picture(s) {unknown}; choose from {list(SHOTS)}")
    xvfb = start_xvfb()
    session = Session()
    try:
        for name in argv or list(SHOTS):
            SHOTS[name](session)
    finally:
        session.viewer.close()
        session.backend.close()
        if xvfb is not None:
            xvfb.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
