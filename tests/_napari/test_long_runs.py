"""Long runs in the widget: segment everything (progress, Cancel) and propagation on a stack,
while the Qt event loop keeps turning."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from napari_seem.datasets.synthetic import synthetic_nuclei
from tests._napari.conftest import wait_idle

pytestmark = [pytest.mark.qt, pytest.mark.slow]


def _errors(widget: Any) -> list[str]:
    return [text for severity, text in widget.messages if severity == "error"]


class TickMeter:
    """Records the gaps between ticks of a 20 ms QTimer (the GUI event loop's pulse)."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.stamps: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(20)
        self.timer.timeout.connect(lambda: self.stamps.append(time.monotonic()))
        self.timer.start()

    def stop(self) -> float:
        self.timer.stop()
        return float(np.diff(self.stamps).max()) if len(self.stamps) > 1 else float("inf")


def test_everything_with_vocabulary_cancel_midway_never_freezes(
    seem: Any, qtbot: Any, shoot: Any
) -> None:
    viewer, widget = seem
    viewer.window._qt_window.resize(1500, 950)
    # 1280 x 1280 with the module's tile 256 / halo 32 (core 192): 49 tiles of the job, so
    # that a fast machine is still mid-job when the cancel comes
    scene = synthetic_nuclei((1280, 1280), n_objects=160, seed=3)
    image = viewer.add_image(scene.image, name="nuclei", colormap="gray")
    widget.image.value = image
    widget.vocabulary.value = "nucleus, background"
    widget.scope.value = "whole image"
    meter = TickMeter()
    widget.segment_everything()
    assert widget.cancel_button.enabled and not widget.everything_button.enabled
    # the target layer is made at the press (napari's add_labels is one GUI step of a few
    # hundred ms that cannot be split): nothing but painting in pieces is left for later
    assert "SEEM labels" in viewer.layers
    qtbot.waitUntil(lambda: widget._progress is not None and widget._progress.n >= 3, timeout=60000)
    assert widget._progress.total == 49  # the engine's segment job counts tiles
    gap = meter.stop()
    assert gap < 0.5, f"the GUI event loop stalled for {gap:.2f} s while the job ran"
    assert len(meter.stamps) > 20
    shoot(viewer, "everything-progress")  # (a screenshot blocks the loop: not measured)
    meter = TickMeter()
    widget.cancel()
    wait_idle(qtbot, widget, timeout=60000)
    qtbot.wait(200)  # a cancel that ends at once leaves no ticks to measure: keep the loop running
    gap = meter.stop()
    assert gap < 0.5, f"the GUI event loop stalled for {gap:.2f} s while cancelling"
    assert any("cancelled" in text for _, text in widget.messages)
    assert not _errors(widget)
    assert widget._progress is None and widget.everything_button.enabled
    # nothing committed by a cancelled run; its empty target stays (removing a layer is
    # another long GUI step) for the next commits
    assert not viewer.layers["SEEM labels"].data.any()


def test_everything_on_a_region_commits_a_class_table(seem: Any, qtbot: Any, shoot: Any) -> None:
    viewer, widget = seem
    viewer.window._qt_window.resize(1500, 950)
    # 320 x 320: 2 x 2 tiles of the module's model process (tile 256, halo 32)
    scene = synthetic_nuclei((320, 320), n_objects=14, seed=4)
    image = viewer.add_image(scene.image, name="nuclei", colormap="gray")
    widget.image.value = image
    widget.vocabulary.value = "nucleus, cell"
    # "auto": panoptic on the tiny model (no prompt window)
    assert widget.everything_mode.value == "auto"
    assert list(widget.everything_mode.choices) == [
        "auto",
        "panoptic",
        "instance",
        "semantic",
        "points",
    ]
    # random weights: about 1/3 probability per class (2 terms + background); keep them
    widget.min_score.value = 0.0
    widget.scope.value = "whole image"
    widget.segment_everything()
    wait_idle(qtbot, widget, timeout=60000)
    assert not _errors(widget)
    assert widget._progress is None
    labels = viewer.layers["SEEM labels"]
    ids = sorted(set(np.unique(labels.data)) - {0})
    assert ids, "segment everything committed nothing"
    table = labels.features[labels.features["index"] > 0]
    assert sorted(table["index"]) == ids
    assert set(table["source"]) == {"panoptic"}  # the engine's job, not a grid of clicks
    names = set(table["class_name"])
    assert names and names <= {"nucleus", "cell"}, names
    shot = shoot(viewer, "everything")
    rgb = shot[..., :3].astype(int)
    assert ((rgb.max(-1) - rgb.min(-1)) > 60).mean() > 0.01
    widget.undo()
    assert not labels.data.any()


def test_propagate_through_a_stack(seem: Any, qtbot: Any, shoot: Any) -> None:
    viewer, widget = seem
    viewer.window._qt_window.resize(1500, 950)
    planes = [synthetic_nuclei((128, 128), n_objects=6, seed=5).image for _ in range(5)]
    image = viewer.add_image(np.stack(planes), name="stack", colormap="gray")
    widget.image.value = image
    viewer.dims.set_point(0, 1)
    points = widget.add_points_layer()
    points.add([1.0, 64.0, 64.0])
    widget.segment()
    wait_idle(qtbot, widget)
    assert widget._preview and widget._preview_where[1] == (1,)
    meter = TickMeter()
    widget.propagate()
    wait_idle(qtbot, widget, timeout=60000)
    assert meter.stop() < 0.5
    assert not _errors(widget)
    labels = viewer.layers["SEEM labels"]
    assert labels.data.shape == (5, 128, 128)
    on = [bool((labels.data[z] == 1).any()) for z in range(5)]
    assert on[1] and not on[0]  # forward from plane 1 only
    found = int(widget.status.value.split("to ")[1].split(" ")[0])
    assert on[2 : 2 + found] == [True] * found and not any(on[2 + found :])
    viewer.dims.set_point(0, 2)
    shoot(viewer, "propagate")
    widget.undo()  # the whole propagation is one undo step with its start commit
    assert not (labels.data == 1)[2:].any()
