"""The ``"segment"`` job kind through a real server on 127.0.0.1: seam-aware labels over a
region, progress in tiles, cancel, levels, ``out`` stores and refused parameters.

Two engines: one on :class:`ThresholdPredictor` (real encoder, deterministic answers: the
bright rectangles below are the objects) and one on the tiny random SEEM model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import zarr

from napari_seem.core.labels import LabelsCrop, decode_labels
from napari_seem.core.tiling import TileGrid
from napari_seem.datasets.synthetic import synthetic_nuclei
from napari_seem.engine import Engine, InvalidRequestError
from napari_seem.model.seem import SeemModel
from napari_seem.predict.predictor import SeemPredictor
from napari_seem.remote.client import RemoteError, SeemClient
from napari_seem.remote.server import create_app
from tests.engine._threshold import ThresholdPredictor
from tests.ome import write_ome_zarr
from tests.remote.harness import served, wait_for_job

SHAPE = (200, 300)
TILE, HALO = 128, 16  # core 96: a 3 x 4 grid, seams at rows 96, 192 and cols 96, 192, 288
TOKEN = "segment-job-token"
YX = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
# (r0, c0, r1, c1): a big object over the four tiles around the seam crossing (96, 96),
# a big one over the column seam at 192, and a small one inside one tile
CROSS = (80, 80, 112, 112)
SEAM = (20, 180, 44, 210)
SMALL = (150, 10, 160, 20)
TOTAL_TILES = 12


def _scene() -> np.ndarray:
    image = np.full(SHAPE, 20, np.uint8)
    for r0, c0, r1, c1 in (CROSS, SEAM, SMALL):
        image[r0:r1, c0:c1] = 220
    return image


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("segment-roots")
    image = _scene()
    arr = zarr.create_array(
        store=str(root / "scene.zarr"), shape=SHAPE, chunks=(64, 64), dtype="u1"
    )
    arr[...] = image
    (root / "pyramid.ome.zarr").mkdir()
    write_ome_zarr(root / "pyramid.ome.zarr", image, YX, "0.4")
    return root


@pytest.fixture(scope="module")
def engine(model: SeemModel) -> Iterator[Engine]:
    with Engine(ThresholdPredictor(model), tile=TILE, halo=HALO) as engine:
        yield engine


@pytest.fixture(scope="module")
def client(engine: Engine, data_dir: Path) -> Iterator[SeemClient]:
    app = create_app(engine, token=TOKEN, allowed_roots=[data_dir])
    with served(app) as url, SeemClient(url, TOKEN) as client:
        client.base_url = url  # type: ignore[attr-defined]
        yield client


@pytest.fixture(scope="module")
def session(client: SeemClient, data_dir: Path) -> str:
    return client.open_session(data_dir / "scene.zarr").result(60).session_id


def _wait(client: SeemClient, job_id: str, timeout: float = 180) -> Any:
    return wait_for_job(client, job_id, timeout)


def _segment(client: SeemClient, session: str, **params: Any) -> tuple[Any, LabelsCrop]:
    box = params.pop("box", None)
    started = client.start_job(session, kind="segment", box=box, params=params).result(30)
    status = _wait(client, started.job_id)
    assert status.state == "done", status
    return status, client.job_result(started.job_id).result(30)


def _ids(labels: np.ndarray, box: tuple[int, int, int, int], offset: tuple[int, int] = (0, 0)):
    r0, c0, r1, c1 = box
    return set(np.unique(labels[r0 - offset[0] : r1 - offset[0], c0 - offset[1] : c1 - offset[1]]))


def _row(crop: LabelsCrop, label: int) -> dict[str, Any]:
    (row,) = [r for r in crop.classes if r["id"] == label]
    return dict(row)


def _remote(future: Any) -> RemoteError:
    with pytest.raises(RemoteError) as info:
        future.result(60)
    return info.value


# ------------------------------------------------------------------------ known objects


def test_objects_crossing_seams_get_one_id_and_named_classes(
    client: SeemClient, session: str, engine: Engine
) -> None:
    calls = len(engine.predictor.everything_calls)  # type: ignore[attr-defined]
    status, crop = _segment(client, session, vocabulary=["blob", "speck"])
    assert (status.done, status.total) == (TOTAL_TILES, TOTAL_TILES)
    assert len(engine.predictor.everything_calls) - calls == TOTAL_TILES  # type: ignore[attr-defined]
    assert crop.labels.shape == SHAPE and crop.offset == (0, 0) and crop.image_shape == SHAPE
    assert crop.output is None
    expected = np.zeros(SHAPE, bool)
    for r0, c0, r1, c1 in (CROSS, SEAM, SMALL):
        expected[r0:r1, c0:c1] = True
    np.testing.assert_array_equal(crop.labels > 0, expected)
    ids = {}
    for name, box in {"cross": CROSS, "seam": SEAM, "small": SMALL}.items():
        found = _ids(crop.labels, box)
        assert len(found) == 1 and 0 not in found, (name, found)
        ids[name] = found.pop()
    assert len(set(ids.values())) == 3
    cross, seam, small = (_row(crop, ids[k]) for k in ("cross", "seam", "small"))
    assert cross["pieces"] == 4 and seam["pieces"] == 2 and small["pieces"] == 1
    assert cross["class_name"] == seam["class_name"] == "blob" and small["class_name"] == "speck"
    assert cross["area"] == 32 * 32 and cross["bbox"] == list(CROSS)
    assert small["bbox"] == list(SMALL) and small["score"] == pytest.approx(0.8)
    assert {r["source"] for r in crop.classes} == {"panoptic"}
    assert sorted(r["id"] for r in crop.classes) == sorted(ids.values())


def test_progress_events_count_tiles(client: SeemClient, session: str) -> None:
    started = client.start_job(
        session, kind="segment", box=(0, 0, 100, 100), params={"vocabulary": "blob, speck"}
    ).result(30)
    assert (started.kind, started.total) == ("segment", 4)  # 2 x 2 cores of 96
    _wait(client, started.job_id)
    events = client.job_events(started.job_id).result(30)
    done = [e.done for e in events if e.state == "running"]
    assert done == sorted(done) and done[-1] == 4 and {e.total for e in events} == {4}
    assert [e.done for e in events if e.state == "running" and e.done > 0] == [1, 2, 3, 4]
    assert events[-1].state == "done"
    crop = client.job_result(started.job_id).result(30)
    assert crop.labels.shape == (100, 100) and crop.offset == (0, 0)
    # the cross object reaches beyond the box: cut to it, and its row describes that part
    (label,) = _ids(crop.labels, (80, 80, 100, 100))
    assert _row(crop, label)["bbox"] == [80, 80, 100, 100]
    assert _row(crop, label)["area"] == 20 * 20


def test_a_box_gives_a_crop_at_its_offset(client: SeemClient, session: str) -> None:
    box = (10, 150, 130, 260)
    status, crop = _segment(client, session, vocabulary=["blob"], box=list(box))
    assert status.total == 4  # rows 0..1 x cols 1..2 of the grid
    assert crop.offset == (10, 150) and crop.labels.shape == (120, 110)
    (label,) = _ids(crop.labels, SEAM, crop.offset)
    assert label > 0 and _row(crop, label)["bbox"] == list(SEAM)
    assert (crop.labels > 0).sum() == (SEAM[2] - SEAM[0]) * (SEAM[3] - SEAM[1])


@pytest.mark.parametrize(
    ("mode", "ran"),
    [("points", "points"), ("auto", "panoptic"), (None, "panoptic"), ("semantic", "semantic")],
)
def test_modes_run_and_name_the_concrete_mode(
    client: SeemClient, session: str, engine: Engine, mode: str | None, ran: str
) -> None:
    """``"auto"`` (also the default) runs what the model does best: ``"panoptic"`` for a
    model without a prompt window (the tiny one); rows name the mode that ran."""
    calls = engine.predictor.everything_calls  # type: ignore[attr-defined]
    before = len(calls)
    params: dict[str, Any] = {"vocabulary": ["blob"], "box": [10, 150, 130, 260]}
    if mode is not None:
        params["mode"] = mode
    status, crop = _segment(client, session, **params)
    assert status.total == 4
    assert {c["mode"] for c in calls[before:]} == {ran}
    assert crop.classes and {r["source"] for r in crop.classes} == {ran}


def test_auto_runs_points_for_a_model_with_a_prompt_window(
    client: SeemClient, session: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine.predictor.model, "prompt_window", 64)
    calls = engine.predictor.everything_calls  # type: ignore[attr-defined]
    before = len(calls)
    _, crop = _segment(client, session, vocabulary=["blob"], box=[10, 150, 130, 260])
    assert {c["mode"] for c in calls[before:]} == {"points"}
    assert {r["source"] for r in crop.classes} == {"points"}


def test_a_bad_mode_names_the_valid_modes(client: SeemClient, session: str) -> None:
    error = _remote(
        client.start_job(session, kind="segment", params={"vocabulary": ["a"], "mode": "all"})
    )
    assert (error.status, error.type) == (400, "InvalidRequestError")
    assert error.message == (
        "mode must be one of 'auto', 'panoptic', 'instance', 'semantic', 'points'; got 'all'"
    )


def test_text_finds_every_instance_with_the_phrase(client: SeemClient, session: str) -> None:
    _, crop = _segment(client, session, text="bright thing")
    labels = {next(iter(_ids(crop.labels, box))) for box in (CROSS, SEAM, SMALL)}
    assert len(labels) == 3 and 0 not in labels
    assert {r["class_name"] for r in crop.classes} == {"bright thing"}
    assert {r["source"] for r in crop.classes} == {"grounding"}


def test_a_coarser_level_answers_in_level0_pixels(client: SeemClient, data_dir: Path) -> None:
    sid = client.open_session(data_dir / "pyramid.ome.zarr", level=1).result(60).session_id
    try:
        status, crop = _segment(client, sid, vocabulary=["blob", "speck"])
    finally:
        client.close_session(sid).result(30)
    level_tiles = len(TileGrid.for_model((100, 150), model_input=TILE, halo=HALO))
    assert status.total == level_tiles == 2  # level 1 is 100 x 150: one row of two tiles
    assert crop.labels.shape == SHAPE and crop.offset == (0, 0)
    for box in (CROSS, SEAM, SMALL):  # even bounds: exact after 2x decimation + upsampling
        found = _ids(crop.labels, box)
        assert len(found) == 1 and 0 not in found
        r0, c0, r1, c1 = box
        (label,) = found
        assert (crop.labels == label).sum() == (r1 - r0) * (c1 - c0)
        assert _row(crop, label)["bbox"] == list(box)


def test_cancel_between_tiles(client: SeemClient, engine: Engine, data_dir: Path) -> None:
    sid = client.open_session(data_dir / "scene.zarr").result(60).session_id
    with engine.model_lock:  # the first tile waits here until we have cancelled
        job = client.start_job(sid, kind="segment", params={"vocabulary": ["blob"]}).result(30)
        client.cancel_job(job.job_id).result(30)
    final = _wait(client, job.job_id)
    assert final.state == "cancelled" and final.done < final.total == TOTAL_TILES
    error = _remote(client.job_result(job.job_id))
    assert error.status == 409 and "cancelled" in error.message
    client.close_session(sid).result(30)


def test_out_writes_a_resumable_store_inside_the_roots(
    client: SeemClient, session: str, data_dir: Path
) -> None:
    out = data_dir / "runs" / "scene-labels.zarr"
    _, crop = _segment(client, session, vocabulary=["blob", "speck"], out=str(out))
    assert crop.labels.shape == (0, 0) and crop.classes == ()
    assert crop.output is not None
    assert Path(crop.output["labels"]) == out.resolve() and crop.output["objects"] == 3
    assert crop.output["shape"] == list(SHAPE) and crop.output["level"] == 0
    labels = np.asarray(zarr.open_array(str(out), mode="r")[...])
    _, whole = _segment(client, session, vocabulary=["blob", "speck"])
    np.testing.assert_array_equal(labels, whole.labels)
    assert Path(crop.output["class_table"]).is_file()
    # the same job again finds the finished run: nothing is segmented twice
    _, again = _segment(client, session, vocabulary=["blob", "speck"], out=str(out))
    assert again.output is not None and again.output["tiles_skipped"] == TOTAL_TILES
    # another configuration on the same store is refused when the job runs
    started = client.start_job(
        session, kind="segment", params={"vocabulary": ["other"], "out": str(out)}
    ).result(30)
    failed = _wait(client, started.job_id)
    assert failed.state == "failed" and "different configuration" in (failed.error or "")


def test_labels_payload_carries_the_output_record() -> None:
    crop = LabelsCrop(np.zeros((0, 0), np.uint32), (5, 6), (10, 10), output={"labels": "x"})
    back = decode_labels(crop.to_bytes())
    assert back.output == {"labels": "x"} and back.offset == (5, 6)
    plain = decode_labels(LabelsCrop(np.ones((2, 2), np.uint32), (0, 0), (3, 3)).to_bytes())
    assert plain.output is None


# ------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("params", "box", "message"),
    [
        ({"vocabulary": ["a"], "mode": "everything"}, None, "mode must be one of"),
        ({"vocabulary": []}, None, "at least one non-empty class name"),
        ({"vocabulary": ["a", " "]}, None, "at least one non-empty class name"),
        ({"vocabulary": ["a", "a"]}, None, "repeats"),
        ({"vocabulary": [1, 2]}, None, "list of class names"),
        ({"vocabulary": ["a"], "text": "b"}, None, "exactly one of vocabulary"),
        ({}, None, "exactly one of vocabulary"),
        ({"text": "  "}, None, "non-empty phrase"),
        ({"vocabulary": ["a"]}, (0, 0, 999, 999), "outside the image"),
        ({"vocabulary": ["a"]}, (50, 50, 50, 60), "empty or outside"),
        ({"vocabulary": ["a"], "tile": 64}, None, "unknown ['tile']"),
        ({"vocabulary": ["a"], "object_mask_threshold": 2}, None, "between 0 and 1"),
        ({"vocabulary": ["a"], "min_area": -1}, None, "non-negative integer"),
    ],
)
def test_bad_params_are_400_with_a_message(
    client: SeemClient,
    session: str,
    params: dict[str, Any],
    box: tuple[int, int, int, int] | None,
    message: str,
) -> None:
    error = _remote(client.start_job(session, kind="segment", box=box, params=params))
    assert (error.status, error.type) == (400, "InvalidRequestError")
    assert message in error.message


def test_out_outside_the_roots_is_403_and_existing_data_is_never_overwritten(
    client: SeemClient, session: str, data_dir: Path, tmp_path: Path
) -> None:
    for out in (str(tmp_path / "labels.zarr"), str(data_dir / ".." / "escape.zarr"), "s3://b/x"):
        error = _remote(
            client.start_job(session, kind="segment", params={"vocabulary": ["a"], "out": out})
        )
        assert (error.status, error.type) == (403, "PathNotAllowed")
        assert "allowed roots" in error.message and "output path" in error.message
    assert not (tmp_path / "labels.zarr").exists()
    image = str(data_dir / "scene.zarr")  # inside the roots, but not a labels run
    error = _remote(
        client.start_job(session, kind="segment", params={"vocabulary": ["a"], "out": image})
    )
    assert error.status == 400 and "never overwrites" in error.message
    assert zarr.open_array(image, mode="r").shape == SHAPE
    raw = httpx.post(
        f"{client.base_url}/sessions/{session}/jobs",  # type: ignore[attr-defined]
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={"kind": "segment", "params": {"vocabulary": ["a"], "out": 5}},
        timeout=30,
    )
    assert raw.status_code == 400 and "zarr path" in raw.json()["error"]["message"]


def test_a_region_too_large_for_a_crop_asks_for_out(
    client: SeemClient, session: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "max_result_pixels", 100 * 100)
    error = _remote(client.start_job(session, kind="segment", params={"vocabulary": ["a"]}))
    assert error.status == 400
    assert "out=" in error.message and "napari-seem segment" in error.message
    small = client.start_job(
        session, kind="segment", box=(0, 0, 100, 100), params={"vocabulary": ["a"]}
    ).result(30)
    assert _wait(client, small.job_id).state == "done"


def test_old_kinds_are_unchanged_and_unknown_kinds_keep_their_message(
    client: SeemClient, session: str
) -> None:
    error = _remote(client.start_job(session, kind="segment_all", params={}))
    assert error.status == 400 and "unknown job kind" in error.message
    assert "'segment'" in error.message and "'encode_region'" in error.message


# ------------------------------------------------------------------------ the SEEM model


def test_tiny_seem_model_segments_a_region_through_the_server(
    model: SeemModel, data_dir: Path
) -> None:
    image = synthetic_nuclei(SHAPE, n_objects=12, seed=1).image
    with Engine(SeemPredictor(model, short_side=None), tile=TILE, halo=HALO) as seem:
        app = create_app(seem, token=TOKEN, allowed_roots=[data_dir])
        with served(app) as url, SeemClient(url, TOKEN) as client:
            image_id = client.upload_image(image).result(60)
            sid = client.open_session(image_id=image_id).result(60).session_id
            status, crop = _segment(
                client,
                sid,
                vocabulary=["nucleus", "background"],
                object_mask_threshold=0.0,
                min_area=1,
            )
            assert (status.done, status.total) == (TOTAL_TILES, TOTAL_TILES)
            assert crop.labels.shape == SHAPE and crop.labels.dtype == np.uint32
            present = set(np.unique(crop.labels)) - {0}
            assert present, "a threshold of 0 keeps some query on every tile"
            assert {r["id"] for r in crop.classes} == present
            assert {r["class_name"] for r in crop.classes} <= {"nucleus", "background"}
            for row in crop.classes:
                r0, c0, r1, c1 = row["bbox"]
                assert row["area"] == int((crop.labels[r0:r1, c0:c1] == row["id"]).sum())


def test_in_process_refusals_are_invalid_request_errors(engine: Engine) -> None:
    sid = engine.open_session(_scene())
    try:
        with pytest.raises(InvalidRequestError, match="exactly one of"):
            engine.start_job("segment", sid)
        assert "segment" in engine.job_kinds
    finally:
        engine.close_session(sid)
