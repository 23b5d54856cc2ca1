"""A clicked object in the Jupyter widget is named from the vocabulary (issue 17, item 4):
with an empty text box it gets its best class of the vocabulary, never "background"; a
phrase in the text box names it instead. The same naming through the engine, the HTTP
server and the client (``vocabulary=`` of predict)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from napari_seem.core.prompts import ObjectPrompt, Points
from napari_seem.datasets.synthetic import synthetic_nuclei
from napari_seem.engine import Engine, InvalidRequestError
from napari_seem.jupyter import SeemWidget
from tests import tiny

model = tiny.model  # the tiny random model fixture (one per module)
SHAPE = (192, 256)
SCENE = synthetic_nuclei(SHAPE, n_objects=12, seed=1)


def _centre(label: int) -> tuple[int, int]:
    rows, cols = np.nonzero(SCENE.labels == label)
    return int(np.median(rows)), int(np.median(cols))


def _click_json(label: int) -> list[dict[str, Any]]:
    row, col = _centre(label)
    return [{"kind": "point", "row": row, "col": col, "positive": True}]


@pytest.fixture
def make_widget() -> Iterator[Any]:
    made: list[SeemWidget] = []

    def make(vocabulary: list[str]) -> SeemWidget:
        widget = SeemWidget(SCENE.image, vocabulary=vocabulary, name="nuclei")
        made.append(widget)
        return widget

    yield make
    for widget in made:
        widget.close()


def test_a_click_is_named_by_the_vocabulary_and_committed_with_it(make_widget: Any) -> None:
    widget = make_widget(["nucleus"])
    widget.prompt_data = _click_json(1)
    widget.segment()
    obj = widget.preview.objects[0]
    # one class: the best non-background class is that class, whatever the weights
    assert obj.class_name == "nucleus" and 0.0 < obj.class_score <= 1.0
    assert widget.preview_label.startswith("nucleus (")
    widget.commit()
    (row,) = widget.class_table
    assert row["class_name"] == "nucleus" and row["id"] == 1


def test_with_several_classes_the_name_is_one_of_them(make_widget: Any) -> None:
    widget = make_widget(["nucleus", "debris", "cell"])
    names = set()
    for label in (1, 2, 3, 4):
        widget.prompt_data = _click_json(label)
        widget.segment()
        obj = widget.preview.objects[0]
        names.add(obj.class_name)
        assert 0.0 < obj.class_score <= 1.0
        widget.commit()
    assert names <= {"nucleus", "debris", "cell"} and None not in names
    assert {r["class_name"] for r in widget.class_table} == names
    assert "background" not in names


def test_the_text_box_names_the_click_instead(make_widget: Any) -> None:
    widget = make_widget(["nucleus", "cell"])
    widget.prompt_data = _click_json(2)
    widget.text = "debris"
    widget.segment()
    assert widget.preview.objects[0].class_name == "debris"


def test_the_engine_names_from_a_vocabulary_and_refuses_a_bad_one(model: Any) -> None:
    click = ObjectPrompt(Points.click(*_centre(1)))
    with Engine(model, tile=128, halo=16) as engine:
        sid = engine.open_session(SCENE.image)
        assert engine.predict(sid, click).class_name is None  # no vocabulary: no class
        named = engine.predict(sid, click, vocabulary=["nucleus"])
        assert named.class_name == "nucleus"
        np.testing.assert_array_equal(named.mask, engine.predict(sid, click).mask)
        for bad in ([], ["nucleus", "nucleus"], [""], [3], ["x"] * 300):
            with pytest.raises(InvalidRequestError, match="vocabulary"):
                engine.predict(sid, click, vocabulary=bad)


def test_the_server_names_from_the_vocabulary(model: Any, tmp_path: Path) -> None:
    from napari_seem.remote.client import RemoteError, SeemClient
    from napari_seem.remote.server import create_app
    from tests.remote.harness import served, write_zarr

    path = write_zarr(tmp_path / "nuclei.zarr", SCENE.image)
    click = ObjectPrompt(Points.click(*_centre(1)))
    with Engine(model, tile=128, halo=16) as engine:
        app = create_app(engine, token="t0ken", allowed_roots=[tmp_path])
        with served(app) as url, SeemClient(url, "t0ken") as client:
            sid = client.open_session(path).result(60).session_id
            reply = client.predict_reply(sid, click, vocabulary=["nucleus"]).result(60)
            assert reply.class_name == "nucleus" and reply.class_score is not None
            assert client.predict(sid, click).result(60).class_name is None
            with pytest.raises(RemoteError) as info:
                client.predict(sid, click, vocabulary=["a", "a"]).result(60)
            assert info.value.status is not None and 400 <= info.value.status < 500
