"""The "Fine-tune" section of the SEEM widget in a real (Xvfb) viewer with a real model
process: committed labels go in, the model process switches to the new weights, and the
committed labels layer is never touched (success, cancel, base weights, save).

The model is the tiny random test model: these tests check the flow, not mask quality.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from napari_seem.datasets.synthetic import synthetic_nuclei
from tests._napari.conftest import wait_idle

pytestmark = pytest.mark.qt


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The module's model process; its temporary folders (staging, weights) live under
    this test's tmp dir."""
    from napari_seem._napari.backend import Backend, ModelChoice

    scratch = tmp_path_factory.mktemp("finetune-process")
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(scratch)  # the child inherits it
    try:
        choice = ModelChoice(variant="seem-tiny-focal", tile=256, halo=32, device="cpu")
        started = Backend.start(choice)
    finally:
        if old is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old
    yield started
    started.close()


def _errors(widget: Any) -> list[str]:
    return [text for severity, text in widget.messages if severity == "error"]


def _click_score(widget: Any, qtbot: Any, where: tuple[float, float]) -> float:
    points = widget.add_points_layer()
    points.add(list(where))
    widget.segment()
    wait_idle(qtbot, widget)
    assert not _errors(widget), widget.messages
    score = float(widget._preview[0].score)
    widget.clear_prompts()
    return score


def _wait_panel(qtbot: Any, panel: Any, timeout: int = 90000) -> None:
    qtbot.waitUntil(lambda: not panel.running, timeout=timeout)


def test_fine_tune_from_the_panel_switches_weights_and_keeps_labels(
    seem: tuple[Any, Any], qtbot: Any, backend: Any, tmp_path: Path
) -> None:
    viewer, widget = seem
    scene = synthetic_nuclei((160, 160), n_objects=8, radius=(9.0, 14.0), seed=2)
    image = viewer.add_image(scene.image, name="nuclei", colormap="gray")
    widget.image.value = image
    centres = [np.argwhere(scene.labels == i).mean(axis=0) for i in (1, 2)]
    first_score = _click_score(widget, qtbot, tuple(centres[0]))

    for centre in centres:  # two committed objects named by the text
        points = widget.add_points_layer()
        points.add(list(centre))
        widget.text.value = "nucleus"
        widget.segment()
        wait_idle(qtbot, widget)
        assert widget.commit(), widget.messages
    widget.text.value = ""
    labels = viewer.layers["SEEM labels"]
    data_before = labels.data.copy()
    features_before = labels.features.copy()
    panel = widget.finetune
    assert panel.chosen_layers() == [labels] and panel.image_of(labels) is image
    assert panel.class_name.value == "nucleus"  # from the class table
    assert panel.steps.value == 100  # the default

    panel.steps.value = 3
    panel.fine_tune()
    assert panel.running and panel.cancel_button.enabled
    _wait_panel(qtbot, panel)
    assert not _errors(widget), widget.messages
    info = panel.last_info
    assert info is not None and info["steps"] == 3 and info["objects"] >= 1
    assert "session now uses" in widget.status.value and info["weights"] in widget.status.value
    assert " s (" in widget.status.value  # the time taken
    assert panel.progress.value == panel.progress.max == 3
    assert backend.weights_path() == info["weights"]
    assert "fine-tuned" in widget.model_status.value
    # committed labels untouched
    np.testing.assert_array_equal(labels.data, data_before)
    pd.testing.assert_frame_equal(labels.features, features_before)
    # the next prediction uses the new weights
    assert _click_score(widget, qtbot, tuple(centres[0])) != pytest.approx(first_score, abs=1e-6)

    panel.save_weights_to(tmp_path / "mine.safetensors")
    _wait_panel(qtbot, panel)
    saved = tmp_path / "mine.safetensors"
    assert saved.read_bytes() == Path(info["weights"]).read_bytes()
    assert "Saved the fine-tuned weights" in widget.status.value

    # cancel mid-run: the fine-tuned weights stay, the labels too
    panel.steps.value = 5000
    panel.fine_tune()
    qtbot.waitUntil(lambda: panel.progress.value >= 1, timeout=60000)
    panel.cancel()
    _wait_panel(qtbot, panel)
    assert "cancelled" in widget.status.value and not _errors(widget)
    assert backend.weights_path() == info["weights"]
    np.testing.assert_array_equal(labels.data, data_before)
    pd.testing.assert_frame_equal(labels.features, features_before)

    panel.use_base_weights()
    _wait_panel(qtbot, panel)
    assert backend.weights_path() is None and "base weights" in widget.status.value
    assert _click_score(widget, qtbot, tuple(centres[0])) == pytest.approx(first_score, abs=1e-6)


def test_fine_tune_without_committed_labels_says_what_to_do(
    seem: tuple[Any, Any], qtbot: Any
) -> None:
    viewer, widget = seem
    viewer.add_image(np.zeros((64, 64), np.uint8), name="blank")
    viewer.add_labels(np.zeros((64, 64), np.uint32), name="empty")
    panel = widget.finetune
    assert panel.chosen_layers() == []  # nothing was committed
    panel.fine_tune()
    assert not panel.running
    assert "commit some objects" in widget.status.value
    panel.layers.value = [viewer.layers["empty"]]  # chosen, but without objects
    panel.fine_tune()
    _wait_panel(qtbot, panel)
    assert "hold no objects" in widget.status.value
