"""The SEEM widget in a real (Xvfb) viewer with a real tiny model process.

Masks of the random-weight tiny model are arbitrary: these tests check the flows (layers,
ids, features, previews, keys, screenshots), not mask quality.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from napari_seem.datasets.synthetic import synthetic_nuclei
from tests._napari.conftest import wait_idle

pytestmark = pytest.mark.qt


def _setup(seem: tuple[Any, Any]) -> tuple[Any, Any, Any]:
    viewer, widget = seem
    viewer.window._qt_window.resize(1500, 950)
    scene = synthetic_nuclei((256, 256), n_objects=12, seed=1)
    image = viewer.add_image(scene.image, name="nuclei", colormap="gray")
    widget.image.value = image
    return viewer, widget, image


def _errors(widget: Any) -> list[str]:
    return [text for severity, text in widget.messages if severity == "error"]


def _saturated(shot: np.ndarray) -> float:
    """Fraction of coloured (not grey) pixels: overlays on a grey image."""
    rgb = shot[..., :3].astype(np.int32)
    return float(((rgb.max(axis=-1) - rgb.min(axis=-1)) > 60).mean())


def _orange(shot: np.ndarray) -> float:
    rgb = shot[..., :3].astype(np.int32)
    return float(((rgb[..., 0] - rgb[..., 2] > 70) & (rgb[..., 0] > 120)).mean())


def test_points_preview_commit_refine_undo(seem: Any, qtbot: Any, shoot: Any) -> None:
    viewer, widget, image = _setup(seem)
    before = shoot(viewer, "empty", canvas_only=True, docs=False)
    points = widget.add_points_layer()
    assert points.name == "SEEM points" and points.mode == "add"
    points.add([120.0, 100.0])  # what a click in add mode does
    widget.segment()
    wait_idle(qtbot, widget)
    assert not _errors(widget)
    preview = viewer.layers["SEEM preview"]
    assert preview.data.size < image.data.size  # a crop, not a full-image array
    assert preview.data.any()
    first_id = widget._object_id
    shot = shoot(viewer, "points-preview")
    assert _orange(shot) > _orange(before) + 0.005  # the orange preview is on screen

    # a second (negative) click refines the same object: same memory id
    widget._toggle_polarity(points)
    points.add([30.0, 30.0])
    assert points.features["positive"].tolist() == [True, False]
    widget.segment()
    wait_idle(qtbot, widget)
    assert widget._object_id == first_id and not _errors(widget)

    ids = widget.commit()
    assert ids == [1]
    labels = viewer.layers["SEEM labels"]
    assert labels.data.shape == image.data.shape and (labels.data == 1).any()
    row = labels.features[labels.features["index"] == 1].iloc[0]
    assert row["class_name"] == "object" and 0.0 <= row["score"] <= 1.0
    assert len(points.data) == 0 and widget._object_id is None  # prompts cleared
    shot = shoot(viewer, "points-commit", canvas_only=True)
    assert _saturated(shot) > 0.01  # the committed label colour shows

    widget.undo()
    assert not labels.data.any() and list(labels.features["index"]) == [0]


def test_a_click_is_named_from_the_vocabulary(seem: Any, qtbot: Any) -> None:
    """With the Text box empty, the Vocabulary names a clicked object by its best class
    (one class: that one, whatever the weights), in the preview and the class table."""
    viewer, widget, _ = _setup(seem)
    widget.vocabulary.value = "nucleus"
    points = widget.add_points_layer()
    points.add([120.0, 100.0])
    widget.segment()
    wait_idle(qtbot, widget)
    assert not _errors(widget)
    assert "'nucleus'" in widget.status.value
    assert widget.commit() == [1]
    labels = viewer.layers["SEEM labels"]
    assert labels.features[labels.features["index"] == 1].iloc[0]["class_name"] == "nucleus"


def test_box_and_scribble(seem: Any, qtbot: Any, shoot: Any) -> None:
    viewer, widget, _ = _setup(seem)
    shapes = widget.add_shapes_layer()
    assert shapes.name == "SEEM shapes" and shapes.mode == "add_rectangle"
    shapes.add_rectangles(np.array([[60.0, 60.0], [140.0, 150.0]]))
    widget.segment()
    wait_idle(qtbot, widget)
    assert not _errors(widget)
    (obj,) = widget._preview
    r0, c0, r1, c1 = obj.bbox
    assert r0 >= 60 and c0 >= 60 and r1 <= 141 and c1 <= 151  # a box bounds the object
    shoot(viewer, "box-preview")
    assert widget.commit() == [1]
    shapes.add_paths(np.array([[200.0, 30.0], [210.0, 60.0], [220.0, 90.0]]))
    widget.segment()
    wait_idle(qtbot, widget)
    assert not _errors(widget) and widget._preview
    assert widget.commit() == [2]
    assert list(viewer.layers["SEEM labels"].features["index"]) == [0, 1, 2]


def test_text_with_click_and_text_alone(seem: Any, qtbot: Any) -> None:
    viewer, widget, _ = _setup(seem)
    points = widget.add_points_layer()
    points.add([128.0, 128.0])
    widget.text.value = "nucleus"
    widget.segment()
    wait_idle(qtbot, widget)
    assert not _errors(widget)
    (obj,) = widget._preview
    assert obj.class_name == "nucleus"  # text composed with the click names the object
    (new_id,) = widget.commit()
    features = viewer.layers["SEEM labels"].features
    assert features.loc[features["index"] == new_id, "class_name"].item() == "nucleus"

    # text alone: grounding, every instance of the phrase (Enter in the text box runs it)
    widget.text.value = "nucleus"
    widget.text.native.returnPressed.emit()
    wait_idle(qtbot, widget)
    assert not _errors(widget)
    assert "object" in widget.status.value or "nothing" in widget.status.value
    if widget._preview:
        ids = widget.commit()
        assert len(ids) == len(set(ids)) >= 1


def test_mask_prompt_from_a_labels_layer(seem: Any, qtbot: Any) -> None:
    viewer, widget, image = _setup(seem)
    painted = viewer.add_labels(np.zeros(image.data.shape, np.uint8), name="painted")
    painted.data[100:130, 90:120] = 1
    widget.mask_layer.value = painted
    widget.segment()
    wait_idle(qtbot, widget)
    assert not _errors(widget) and widget._preview


def test_live_mode_runs_on_prompt_change(seem: Any, qtbot: Any) -> None:
    _, widget, _ = _setup(seem)
    widget.live.value = True
    points = widget.add_points_layer()
    points.add([60.0, 60.0])  # no Segment press: the debounced live run does it
    qtbot.waitUntil(lambda: bool(widget._preview), timeout=20000)
    assert not _errors(widget)


def test_keys_segment_commit_clear(seem: Any, qtbot: Any) -> None:
    viewer, widget, _ = _setup(seem)
    points = widget.add_points_layer()
    points.add([100.0, 100.0])
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, "s")
    qtbot.waitUntil(lambda: bool(widget._preview), timeout=20000)
    wait_idle(qtbot, widget)
    qtbot.keyClick(canvas, "c")
    assert (viewer.layers["SEEM labels"].data == 1).any()
    points.add([50.0, 50.0])
    from qtpy.QtCore import Qt

    qtbot.keyClick(canvas, "C", Qt.KeyboardModifier.ShiftModifier)
    assert len(points.data) == 0
    # T toggles the polarity of the next point
    qtbot.keyClick(canvas, "t")
    points.add([70.0, 70.0])
    assert points.features["positive"].tolist() == [False]


def test_referring_example_from_a_second_image(seem: Any, qtbot: Any, shoot: Any) -> None:
    viewer, widget, image = _setup(seem)
    other = synthetic_nuclei((256, 256), n_objects=12, seed=2)
    example = viewer.add_image(other.image, name="example", translate=(0, 300), colormap="gray")
    marks = viewer.add_points(
        np.array([[128.0, 428.0]]), name="example marks", size=8, face_color="#3ddc5a"
    )
    widget.image.value = image
    widget.example_image.value = example
    widget.example_prompts.reset_choices()
    widget.example_prompts.value = marks
    widget.find_it_here()
    wait_idle(qtbot, widget)
    assert not _errors(widget)
    viewer.reset_view()
    shoot(viewer, "referring")
    if widget._preview:
        assert widget.commit() == [1]


def test_multiscale_zarr_layer_by_path_and_on_disk_labels(
    seem: Any, qtbot: Any, backend: Any, monkeypatch: Any
) -> None:
    """An OME-Zarr pyramid read by the plugin opens in the model process BY PATH; prompts
    are level-0 pixels; a large target labels layer is a zarr array painted in place."""
    import zarr

    from napari_seem._napari import layers as L
    from napari_seem._napari.ome_zarr import ngff_multiscales

    viewer, widget = seem
    path = backend.readable / "pyramid.zarr"
    base = synthetic_nuclei((512, 512), n_objects=20, seed=7).image
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    for level in range(3):
        data = base[:: 2**level, :: 2**level]
        group.create_array(str(level), shape=data.shape, chunks=(128, 128), dtype="uint8")[:] = data
    group.attrs["multiscales"] = ngff_multiscales("yx", 3)
    (image,) = viewer.open(str(path), plugin="napari-seem")
    assert image.multiscale and image.data[0].shape == (512, 512)
    widget.image.value = image
    monkeypatch.setattr(L, "LARGE_LABELS_PIXELS", 1000)  # make 512 x 512 "large"
    points = widget.add_points_layer()
    points.add([300.0, 400.0])
    widget.segment()
    wait_idle(qtbot, widget)
    assert not _errors(widget)
    key = widget._ref(image).key
    assert (key, ()) in backend._sessions and key not in backend._opened  # by path, no copy
    (obj,) = widget._preview
    assert obj.bbox is not None and obj.bbox[2] <= 512 and obj.bbox[3] <= 512
    (new_id,) = widget.commit()
    target = viewer.layers["SEEM labels"]
    assert isinstance(target.data, zarr.Array) and target.data.shape == (512, 512)
    on_disk = zarr.open_array(target.data.store, mode="r")
    assert (np.asarray(on_disk[:]) == new_id).sum() == obj.area


def test_prefetch_follows_the_camera(seem: Any, qtbot: Any, backend: Any) -> None:
    viewer, widget, _ = _setup(seem)
    from napari_seem._napari.layers import camera_of

    camera = camera_of(viewer)
    camera.zoom = camera.zoom * 4
    camera.center = (0.0, 60.0, 60.0)
    qtbot.waitUntil(lambda: widget._prefetch_job is not None, timeout=20000)
    status = backend.client.job_status(widget._prefetch_job).result()
    assert status.kind == "encode_region" and status.total >= 1


def test_real_clicks_plain_is_positive_ctrl_is_negative(seem: Any, qtbot: Any) -> None:
    viewer, widget, _ = _setup(seem)
    points = widget.add_points_layer()
    viewer.reset_view()
    qtbot.wait(50)
    scene_canvas = viewer.window._qt_viewer.canvas._scene_canvas
    w, h = scene_canvas.size
    for modifiers in ((), ("Control",)):
        scene_canvas.events.mouse_press(pos=(w // 2, h // 2), modifiers=modifiers, button=1)
        scene_canvas.events.mouse_release(pos=(w // 2, h // 2), modifiers=modifiers, button=1)
        qtbot.wait(20)
    assert points.features["positive"].tolist() == [True, False]
    np.testing.assert_allclose(points.data[0], [127.5, 127.5], atol=2.0)  # the view's centre
    colours = np.asarray(points.face_color)[:, :3]
    assert colours[0][1] > colours[0][0] and colours[1][0] > colours[1][1]  # green, red
