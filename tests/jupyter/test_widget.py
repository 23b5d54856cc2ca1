"""The widget driven through its traitlets and messages, as the browser drives it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import zarr

from napari_seem import Box, Points, PromptError, Scribble
from napari_seem.datasets.synthetic import synthetic_nuclei
from napari_seem.jupyter import SeemApp, SeemWidget

SHAPE = (192, 256)


class Sent:
    """Collects what the widget sends to the browser (custom messages)."""

    def __init__(self, widget: SeemWidget) -> None:
        self.messages: list[tuple[dict[str, Any], list[Any]]] = []
        original = widget.comm.send

        def send(data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
            if isinstance(data, dict) and data.get("method") == "custom":
                self.messages.append((data["content"], list(buffers or [])))
            original(data=data, metadata=metadata, buffers=buffers)

        widget.comm.send = send


@pytest.fixture
def widget() -> Any:
    image = synthetic_nuclei(SHAPE, n_objects=12, seed=1).image
    w = SeemWidget(image, vocabulary=["nucleus", "cell"], name="nuclei")
    yield w
    w.close()


def browser(widget: SeemWidget, **state: Any) -> None:
    """Apply a state update exactly as one arrives from the front-end."""
    widget._handle_msg(
        {
            "content": {"data": {"method": "update", "state": state, "buffer_paths": []}},
            "buffers": [],
        }
    )


def action(widget: SeemWidget, name: str) -> None:
    widget._handle_msg(
        {
            "content": {"data": {"method": "custom", "content": {"type": "action", "name": name}}},
            "buffers": [],
        }
    )
    widget.wait()


def test_state_is_binary_and_sized(widget: SeemWidget) -> None:
    state = widget.get_state()
    assert isinstance(state["overview"], bytes) and len(state["overview"]) == 192 * 256 * 4
    assert state["overview_shape"] == [192, 256] and state["overview_step"] == 1
    assert len(state["labels_overview"]) == 192 * 256 * 4
    assert isinstance(widget.labels, np.ndarray) and widget.labels.dtype == np.uint32


def test_prompts_from_the_browser_become_prompt_types(widget: SeemWidget) -> None:
    browser(
        widget,
        prompt_data=[
            {"kind": "point", "row": 90, "col": 120, "positive": True},
            {"kind": "point", "row": 10, "col": 10, "positive": False},
            {"kind": "box", "row0": 60, "col0": 80, "row1": 130, "col1": 170},
            {"kind": "scribble", "coords": [[95, 110], [98, 130]], "positive": True},
        ],
        text="nucleus",
    )
    (obj,) = widget.prompts.objects
    points, box, scribble = obj.visual
    assert isinstance(points, Points) and points.positive.tolist() == [True, False]
    assert isinstance(box, Box) and (box.row_min, box.col_max) == (60, 170)
    assert isinstance(scribble, Scribble)
    assert obj.text is not None and obj.text.text == "nucleus"


def test_segment_commit_undo_clear(widget: SeemWidget) -> None:
    browser(widget, prompt_data=[{"kind": "point", "row": 90, "col": 120, "positive": True}])
    action(widget, "segment")
    assert widget.error == "" and widget.preview is not None
    mh, mw = widget.preview_shape
    assert len(widget.preview_mask) == mh * mw > 0
    r0, c0, r1, c1 = widget.preview_box
    assert (r1 - r0, c1 - c0) == widget.preview.objects[0].mask.shape

    action(widget, "commit")
    labels = np.asarray(widget.labels)
    assert labels.max() == 1 and widget.prompt_data == [] and widget.preview is None
    assert np.array_equal(labels == 1, widget.results.objects[0].full(SHAPE))
    ids = np.frombuffer(widget.labels_overview, "<u4").reshape(SHAPE)
    assert np.array_equal(ids, labels)  # overview step 1: the overview is the labels
    assert [row["id"] for row in widget.class_table] == [1]

    # undo drops the last prompt first, then commits
    browser(widget, prompt_data=[{"kind": "point", "row": 30, "col": 40, "positive": True}])
    action(widget, "undo")
    assert widget.prompt_data == [] and int(np.asarray(widget.labels).max()) == 1
    action(widget, "undo")
    assert int(np.asarray(widget.labels).max()) == 0 and len(widget.results) == 0

    browser(widget, prompt_data=[{"kind": "point", "row": 30, "col": 40, "positive": True}])
    action(widget, "segment")
    action(widget, "clear")
    assert widget.prompt_data == [] and widget.preview is None and widget.preview_mask == b""


def test_live_mode_segments_on_each_prompt(widget: SeemWidget) -> None:
    browser(widget, live=True)
    browser(widget, prompt_data=[{"kind": "point", "row": 90, "col": 120, "positive": True}])
    widget.wait()
    first = widget.preview
    assert first is not None
    browser(
        widget,
        prompt_data=[
            *widget.prompt_data,
            {"kind": "point", "row": 20, "col": 200, "positive": False},
        ],
    )
    widget.wait()
    assert widget.preview is not first
    assert widget.preview.objects[0].prompt.visual[0].positive.tolist() == [True, False]


def test_text_alone_grounds(widget: SeemWidget) -> None:
    browser(widget, text="nucleus")
    action(widget, "segment")
    assert widget.preview is not None and widget.preview.objects[0].class_name == "nucleus"
    assert widget.preview_label.startswith("nucleus")


def test_bad_prompts_show_errors_not_exceptions(widget: SeemWidget) -> None:
    action(widget, "segment")
    assert "no prompt" in widget.error
    browser(widget, prompt_data=[{"kind": "point", "row": 10, "col": 10, "positive": False}])
    action(widget, "segment")
    assert "only negative" in widget.error
    with pytest.raises(PromptError, match="outside the image"):
        widget.add_prompt(Points.click(500, 5))


def test_view_requests_get_binary_crops(widget: SeemWidget) -> None:
    sent = Sent(widget)
    widget._handle_msg(
        {
            "content": {
                "data": {
                    "method": "custom",
                    "content": {
                        "type": "view",
                        "seq": 7,
                        "box": [10, 20, 110, 220],
                        "size": [50, 100],
                    },
                }
            },
            "buffers": [],
        }
    )
    content, buffers = sent.messages[-1]
    assert content["seq"] == 7 and content["step"] == 2 and content["box"][:2] == [10, 20]
    h, w = content["shape"]
    assert (h, w) == (50, 100)
    assert len(bytes(buffers[0])) == h * w * 4 and len(bytes(buffers[1])) == h * w * 4
    rgba = np.frombuffer(bytes(buffers[0]), np.uint8).reshape(h, w, 4)
    assert np.array_equal(rgba[..., 0], widget.source.read_rgb(10, 20, 110, 220)[::2, ::2, 0])


@pytest.mark.slow
def test_everything_progress_and_cancel() -> None:
    image = np.tile(synthetic_nuclei(SHAPE, n_objects=12, seed=1).image, (3, 2))
    widget = SeemWidget(image, vocabulary=["nucleus"])
    widget.object_mask_threshold = 0.0
    seen: list[float] = []
    widget.observe(lambda c: seen.append(c["new"]), names=["progress"])
    action(widget, "everything")
    assert seen[-1] == 1.0 and len(seen) >= 2 and widget.job == ""
    assert "committed" in widget.status
    count = len(widget.results)
    assert int(np.asarray(widget.labels).max()) == count
    action(widget, "undo")  # Everything is one undo step
    assert len(widget.results) == 0

    def cancel_after_first_tile(change: dict[str, Any]) -> None:
        if 0 < change["new"] < 1:  # the browser's Cancel button, pressed mid-job
            widget._handle_msg(
                {
                    "content": {
                        "data": {
                            "method": "custom",
                            "content": {"type": "action", "name": "cancel"},
                        }
                    },
                    "buffers": [],
                }
            )

    widget.observe(cancel_after_first_tile, names=["progress"])
    widget.everything(block=False).result(120)
    assert "cancelled" in widget.status and len(widget.results) == 0
    widget.close()


def test_huge_images_get_an_overview_and_zarr_labels() -> None:
    big = zarr.create_array(
        store=zarr.storage.MemoryStore(), shape=(6000, 5000), chunks=(1000, 1000), dtype="uint8"
    )
    big[2000:3000, 1000:2000] = 200
    widget = SeemWidget(big)
    assert widget.overview_step == 6 and widget.overview_shape == [1000, 834]
    assert isinstance(widget.labels, zarr.Array) and widget.labels.shape == (6000, 5000)
    overview = np.frombuffer(widget.overview, np.uint8).reshape(1000, 834, 4)
    assert overview[400, 200, 0] > overview[10, 10, 0]
    widget.close()


def test_referring_example_from_another_widget(widget: SeemWidget) -> None:
    other = SeemWidget(synthetic_nuclei(SHAPE, n_objects=12, seed=2).image, name="example")
    with pytest.raises(PromptError, match="own referring example"):
        widget.set_example_source(widget)
    widget.set_example_source(other)
    assert widget.example_label == "example"
    action(widget, "refer")
    assert "has no prompts" in widget.error
    other.add_prompt(Points.click(96, 128))
    action(widget, "refer")
    assert widget.error == "" and widget.preview.objects[0].source == "referring"
    other.close()


def test_app_controls_drive_the_canvas() -> None:
    image = synthetic_nuclei(SHAPE, n_objects=12, seed=1).image
    app = SeemApp(image, vocabulary=["nucleus"])
    assert app.mode.value == app.canvas.everything_mode == "auto"
    assert list(app.mode.options) == ["auto", "panoptic", "instance", "semantic", "points"]
    app.vocabulary.value = "nucleus, cell"
    assert app.canvas.vocabulary == ["nucleus", "cell"]
    app.mode.value = "instance"
    app.grounding.value = 0.2
    assert app.canvas.everything_mode == "instance" and app.canvas.grounding_threshold == 0.2
    app.canvas.job, app.canvas.progress = "everything", 0.5
    assert app.progress.value == 0.5 and not app.cancel_button.disabled
    app.canvas.job = ""
    assert app.cancel_button.disabled
    app.model_choice.value = "seem-tiny-focal"
    assert app.labels is app.canvas.labels
    app.canvas.close()


def test_everything_commits_objects_merged_across_tile_seams() -> None:
    from napari_seem.engine import Engine
    from napari_seem.model.build import build_seem
    from tests.engine._threshold import ThresholdPredictor

    scene = np.full((200, 300), 20, np.uint8)
    scene[80:112, 80:112] = 220  # across the seams of four 96-pixel tile cores
    predictor = ThresholdPredictor(build_seem("seem-tiny-focal", seed=0))
    with Engine(predictor, tile=128, halo=16) as engine:
        widget = SeemWidget(scene, model=engine, vocabulary=["blob"])
        seen: list[float] = []
        widget.observe(lambda c: seen.append(c["new"]), names=["progress"])
        widget.everything()
        assert "1 object(s) committed" in widget.status and seen[-1] == 1.0
        labels = np.asarray(widget.labels)
        assert set(np.unique(labels[80:112, 80:112])) == {1}
        assert int((labels > 0).sum()) == 32 * 32
        assert [row["class_name"] for row in widget.class_table] == ["blob"]
        widget.close()


def test_preview_of_crops_larger_than_their_objects(widget: SeemWidget) -> None:
    """A crop whose object does not fill it (e.g. nodata cleared from a grounding answer on a
    GeoTIFF) previews without error: the preview covers the crops, the object where it is."""
    from napari_seem.core.results import ObjectMask, SegmentationResult

    mask = np.zeros((50, 60), bool)
    mask[5:9, 7:12] = True  # tight bbox 4 x 5, crop 50 x 60
    other = np.ones((3, 3), bool)
    result = SegmentationResult(
        SHAPE, (ObjectMask(mask, (10, 20), score=0.9), ObjectMask(other, (100, 200), score=0.5))
    )
    widget._set_preview(result)
    assert widget.preview_box == [10.0, 20.0, 103.0, 203.0]
    mh, mw = widget.preview_shape
    assert (mh, mw) == (93, 183)  # small enough: not subsampled
    shown = np.frombuffer(widget.preview_mask, np.uint8).reshape(mh, mw).astype(bool)
    expected = np.zeros((93, 183), bool)
    expected[5:9, 7:12] = True
    expected[90:93, 180:183] = True
    assert np.array_equal(shown, expected)
