"""Levels, uploads, grounding, referring and pluggable jobs: in process and over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from skimage.measure import label

from napari_seem.core.labels import LabelsCrop, decode_labels
from napari_seem.core.prompts import (
    Box,
    MaskPrompt,
    ObjectPrompt,
    Points,
    ReferringExample,
    Scribble,
)
from napari_seem.core.results import ObjectMask, SegmentationResult
from napari_seem.core.tiling import TileGrid
from napari_seem.datasets.synthetic import synthetic_nuclei
from napari_seem.engine import Engine, InvalidRequestError
from napari_seem.engine.errors import ImageTooLargeError, UnknownImageError
from napari_seem.engine.instances import TilePiece, merge_pieces
from napari_seem.engine.jobs import JobPlan, JobRecord
from napari_seem.engine.levels import LevelFrame
from napari_seem.engine.sessions import Session
from napari_seem.model.seem import SeemModel
from napari_seem.remote.client import RemoteError, SeemClient
from napari_seem.remote.protocol import ArrayPayloadError, decode_array, encode_array
from napari_seem.remote.server import create_app
from tests.engine._threshold import ThresholdPredictor
from tests.ome import write_ome_zarr
from tests.remote.harness import raw_request, served
from tests.tiny import SHAPE

TILE, HALO = 128, 16  # core 96
TOKEN = "api-test-token"
YX = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api")


@pytest.fixture(scope="module")
def pyramid(data_dir: Path, image: np.ndarray) -> Path:
    """An NGFF 0.4 OME-Zarr pyramid: levels 0, 1, 2 are 2x decimations."""
    path = data_dir / "pyramid.ome.zarr"
    path.mkdir()
    write_ome_zarr(path, image, YX, "0.4")
    return path


@pytest.fixture(scope="module")
def engine(model: SeemModel) -> Iterator[Engine]:
    with Engine(model, tile=TILE, halo=HALO, max_upload_bytes=2_000_000) as engine:
        yield engine


@pytest.fixture(scope="module")
def url(engine: Engine, data_dir: Path) -> Iterator[str]:
    with served(create_app(engine, token=TOKEN, allowed_roots=[data_dir])) as base:
        yield base


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[SeemClient]:
    with SeemClient(url, TOKEN) as client:
        yield client


def _raw(url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return raw_request(url, TOKEN, method, path, **kwargs)


def _remote(future: Any) -> RemoteError:
    with pytest.raises(RemoteError) as info:
        future.result(120)
    return info.value


def _nucleus_click(index: int = 1) -> ObjectPrompt:
    labels = synthetic_nuclei(SHAPE, n_objects=12, seed=1).labels
    rows, cols = np.nonzero(labels == index)
    return ObjectPrompt(Points.click(int(rows.mean()), int(cols.mean())))


# ---------------------------------------------------------------------------------- levels


def test_level_frame_maps_prompts_and_masks() -> None:
    frame = LevelFrame(1, (200, 300), (100, 150), (2.0, 2.0))
    # pixel centres align: level-0 pixels 10 and 11 are both inside level pixel 5
    assert np.allclose(frame.coords_to_level([(10.5, 14.5), (0, 0)]), [(5.0, 7.0), (-0.25, -0.25)])
    box = frame.visual_to_level(Box(10, 20, 30, 40))
    assert isinstance(box, Box) and box.bounds() == (4.75, 9.75, 14.75, 19.75)
    scribble = frame.visual_to_level(Scribble([(10, 10), (20, 30)], width=6))
    assert isinstance(scribble, Scribble) and scribble.width == 3.0
    one = np.zeros((1, 1), bool)
    one[0, 0] = True
    tiny = frame.visual_to_level(MaskPrompt(one, (11, 13), positive=False))
    assert isinstance(tiny, MaskPrompt) and not tiny.positive  # never vanishes
    assert tiny.offset == (5, 6) and tiny.mask.sum() == 1
    # a level pixel becomes the 2 x 2 block of level-0 pixels it covers
    mask, offset = frame.crop_to_level0(np.ones((1, 2), bool), (5, 7))
    assert offset == (10, 14) and mask.shape == (2, 4) and mask.all()
    # the last level row covers the rest of an odd-sized level 0
    odd = LevelFrame(1, (201, 300), (100, 150), (2.0, 2.0))
    mask, offset = odd.crop_to_level0(np.ones((1, 1), bool), (99, 0))
    assert offset == (198, 0) and mask.shape == (3, 2)
    identity = LevelFrame(0, (5, 5), (5, 5), (1.0, 1.0))
    assert identity.prompt_to_level(_nucleus_click()) == _nucleus_click()


def test_a_coarser_level_answers_in_level0_pixels(
    model: SeemModel, image: np.ndarray, pyramid: Path
) -> None:
    click = _nucleus_click()
    with Engine(model, tile=TILE, halo=HALO) as engine:
        sid = engine.open_session(pyramid, level=1)
        info = engine.session_info(sid)
        assert (info.image_shape, info.level, info.level_shape) == (SHAPE, 1, (100, 150))
        assert (
            info.grid_shape
            == TileGrid.for_model((100, 150), model_input=TILE, halo=HALO).grid_shape
        )
        answer = engine.predict(sid, click, object_id="a")
        # the same model on the level-1 array itself, the click mapped by hand
        direct = engine.open_session(np.ascontiguousarray(image[::2, ::2]))
        (r, c) = click.visual[0].coords[0]  # type: ignore[attr-defined]
        small = engine.predict(
            direct, ObjectPrompt(Points.click((r + 0.5) / 2 - 0.5, (c + 0.5) / 2 - 0.5))
        )
    assert answer.prompt == click and answer.score == pytest.approx(small.score)
    assert answer.offset == (2 * small.offset[0], 2 * small.offset[1])
    expected = small.mask.repeat(2, axis=0).repeat(2, axis=1)
    np.testing.assert_array_equal(answer.mask, expected)
    answer.check_fits(SHAPE)


def test_levels_through_the_server(client: SeemClient, url: str, pyramid: Path) -> None:
    reply = client.open_session(pyramid, level=2).result(60)
    assert (reply.level, reply.level_shape, reply.image_shape) == (2, (50, 75), SHAPE)
    obj = client.predict(reply.session_id, _nucleus_click()).result(120)
    assert obj.mask.ndim == 2 and obj.offset[0] % 4 == 0 and obj.offset[1] % 4 == 0
    error = _remote(client.open_session(pyramid, level=3))
    assert error.status == 400 and "levels 0..2" in error.message
    bad = _raw(url, "POST", "/sessions", json={"path": str(pyramid), "level": -1})
    assert bad.status_code == 422


# ---------------------------------------------------------------------------------- uploads


def test_array_payload_round_trips_and_refuses_lies() -> None:
    array = np.arange(2 * 3 * 4, dtype=">u2").reshape(2, 3, 4)  # big-endian in, LE on the wire
    body, headers = encode_array(array, axes="zyx")
    assert headers["X-Array-Dtype"] == "<u2" and headers["X-Array-Axes"] == "zyx"
    back = decode_array(
        body, dtype="<u2", shape=headers["X-Array-Shape"], encoding="zlib", max_bytes=1000
    )
    np.testing.assert_array_equal(back, array)
    cases = [
        ({"dtype": "object"}, "dtype"),
        ({"dtype": "<U3"}, "dtype"),
        ({"shape": "2,3"}, "more than"),
        ({"shape": "2,3,5"}, "needs"),
        ({"shape": "24"}, "2 to 5"),
        ({"shape": "2,-3,4"}, "2 to 5"),
        ({"shape": "2,x,4"}, "2 to 5"),
        ({"encoding": "gzip"}, "zlib"),
        ({"max_bytes": 10}, "zarr"),
    ]
    for change, words in cases:
        args: dict[str, Any] = {
            "dtype": "<u2",
            "shape": "2,3,4",
            "encoding": "zlib",
            "max_bytes": 1000,
        }
        args.update(change)
        with pytest.raises(ArrayPayloadError, match=words):
            decode_array(body, **args)
    with pytest.raises(ArrayPayloadError, match="not zlib"):
        decode_array(b"garbage", dtype="<u2", shape="2,3,4", encoding="zlib", max_bytes=1000)


def test_upload_engine_side(engine: Engine, image: np.ndarray) -> None:
    image_id = engine.add_image(image)
    info = engine.image_info(image_id)
    assert (info.shape, info.dtype, info.axes) == (SHAPE, "uint8", "yx")
    sid = engine.open_session(image_id=image_id)
    assert engine.session_info(sid).image_shape == SHAPE
    engine.delete_image(image_id)
    engine.predict(sid, _nucleus_click())  # the open session keeps its pixels
    engine.close_session(sid)
    with pytest.raises(UnknownImageError, match="upload"):
        engine.open_session(image_id=image_id)
    with pytest.raises(InvalidRequestError, match="exactly one"):
        engine.open_session(image, image_id="x")
    with pytest.raises(InvalidRequestError, match="2-D to 5-D"):
        engine.add_image(np.zeros(5))
    with pytest.raises(ImageTooLargeError, match="save the image as zarr"):
        engine.add_image(np.zeros((1100, 1000), np.uint16))


def test_upload_stacks_and_open_a_plane(
    client: SeemClient, engine: Engine, image: np.ndarray
) -> None:
    stack = np.stack([np.zeros_like(image), image, image // 2])  # (z, y, x)
    click = _nucleus_click()
    expected = None
    for array, axes in ((stack, None), (np.repeat(stack[..., None], 3, axis=-1), None)):
        image_id = client.upload_image(array, axes=axes).result(60)
        meta = client.image_info(image_id).result(60)
        assert meta.shape == list(array.shape) and meta.axes in ("zyx", "zyxc")
        reply = client.open_session(image_id=image_id, plane=[1]).result(60)
        assert reply.image_shape == SHAPE
        got = client.predict(reply.session_id, click).result(120)
        if expected is None:
            expected = engine.predict(engine.open_session(image), click)
        np.testing.assert_array_equal(got.mask, expected.mask)
        assert got.offset == expected.offset
        error = _remote(client.open_session(image_id=image_id))  # a stack needs its plane
        assert error.status == 400 and "plane" in error.message
        client.delete_image(image_id).result(60)
        assert _remote(client.open_session(image_id=image_id, plane=[1])).status == 404
        assert _remote(client.delete_image(image_id)).status == 404


def test_bad_uploads_are_4xx(url: str, image: np.ndarray) -> None:
    body, headers = encode_array(image)
    ok = _raw(url, "POST", "/images", content=body, headers=headers)
    assert ok.status_code == 201, ok.text
    for change, status in (
        ({"X-Array-Shape": "200,301"}, 422),
        ({"X-Array-Dtype": "O"}, 422),
        ({"X-Array-Axes": "abc"}, 400),
        ({"X-Array-Shape": "2000,2000"}, 413),  # over the engine's 2 MB budget
    ):
        reply = _raw(url, "POST", "/images", content=body, headers={**headers, **change})
        assert reply.status_code == status, (change, reply.text)
        assert reply.json()["error"]["message"]
    missing = _raw(url, "POST", "/images", content=body)
    assert missing.status_code == 422
    for body_json in ({}, {"path": "a", "image_id": "b"}):
        reply = _raw(url, "POST", "/sessions", json=body_json)
        assert reply.status_code == 422 and "exactly one" in reply.json()["error"]["message"]
    assert _raw(url, "GET", "/health").status_code == 200


# ------------------------------------------------------------------------- ground / refer


def test_seam_pieces_merge_into_one_object() -> None:
    grid = TileGrid((100, 100), tile_size=50, halo=10)
    disc = np.zeros((100, 100), bool)
    rows, cols = np.ogrid[:100, :100]
    disc[(rows - 50) ** 2 + (cols - 50) ** 2 <= 15**2] = True
    other = np.zeros((100, 100), bool)
    other[5:10, 5:10] = True
    pieces = []
    for tile in grid:
        (rs, cs) = tile.outer_slices
        pieces.append(TilePiece(tile, disc[rs, cs], 0.8))
        if tile.index == (0, 0):
            pieces.append(TilePiece(tile, other[rs, cs], 0.9))
    merged = merge_pieces((100, 100), [p for p in pieces if p.mask.any()])
    assert [m.pieces for m in merged] == [1, 4]  # best score first
    whole = merged[1]
    full = np.zeros((100, 100), bool)
    full[whole.offset[0] : whole.offset[0] + whole.mask.shape[0], whole.offset[1] :][
        :, : whole.mask.shape[1]
    ] = whole.mask
    np.testing.assert_array_equal(full, disc)


def test_ground_merges_objects_across_seams(model: SeemModel) -> None:
    image = np.zeros((200, 300), np.uint8)
    rows, cols = np.ogrid[:200, :300]
    image[(rows - 96) ** 2 + (cols - 96) ** 2 <= 20**2] = 220  # on the corner of 4 cores
    image[150:160, 250:270] = 220
    with Engine(ThresholdPredictor(model), tile=TILE, halo=HALO, max_tiles=4) as engine:
        sid = engine.open_session(image)
        found = engine.ground(sid, " nucleus ", box=(0, 0, 190, 190))  # 2 x 2 tiles
        assert [obj.class_name for obj in found] == ["nucleus"]  # the bar is outside the box
        assert found[0].source == "grounding" and found[0].prompt is not None
        np.testing.assert_array_equal(found[0].full(SHAPE), (image > 128) & (cols < 200))
        with pytest.raises(InvalidRequestError, match="batch job"):
            engine.ground(sid, "nucleus")  # 12 tiles > max_tiles
        with pytest.raises(InvalidRequestError, match="non-empty"):
            engine.ground(sid, "  ")


def test_ground_and_refer_on_the_real_model(
    client: SeemClient, url: str, image: np.ndarray
) -> None:
    image_id = client.upload_image(image).result(60)
    target = client.open_session(image_id=image_id).result(60).session_id
    example_sid = client.open_session(image_id=image_id).result(60).session_id
    found = client.ground(target, "nucleus", (0, 0, 100, 150), max_instances=3).result(300)
    assert 1 <= len(found) <= 3
    assert all(o.class_name == "nucleus" and o.source == "grounding" for o in found)
    assert [o.score for o in found] == sorted((o.score for o in found), reverse=True)
    for obj in found:
        obj.check_fits(SHAPE)
    example = ObjectPrompt(_nucleus_click().visual, label="cell")
    referred = client.refer(target, example_sid, example, box=(0, 0, 200, 150)).result(300)
    assert [o.score for o in referred] == sorted((o.score for o in referred), reverse=True)
    for obj in referred:
        assert obj.source == "referring" and obj.class_name == "cell"
        assert isinstance(obj.prompt, ReferringExample) and obj.prompt.image_ref == example_sid
        obj.check_fits(SHAPE)
    error = _remote(client.refer(target, "nope", example))
    assert error.status == 404
    outside = ObjectPrompt(Points.click(500, 5))
    assert _remote(client.refer(target, example_sid, outside)).status == 422
    reply = _raw(url, "POST", f"/sessions/{target}/ground", json={"text": ""})
    assert reply.status_code == 422
    reply = _raw(
        url, "POST", f"/sessions/{target}/ground", json={"text": "a", "box": [0, 0, 9e9, 1]}
    )
    assert reply.status_code in (400, 422)


# ------------------------------------------------------------------------- pluggable jobs


def _check_threshold(engine: Engine, session: Session, params: dict[str, Any]) -> JobPlan:
    threshold = params.pop("threshold", 128)
    if params:
        raise InvalidRequestError(f"threshold_labels takes only 'threshold'; got {sorted(params)}")
    if not isinstance(threshold, int) or not 0 <= threshold < 255:
        raise InvalidRequestError(f"threshold must be an integer 0..254; got {threshold!r}")
    return JobPlan({"threshold": threshold}, total=len(session.grid))


def _run_threshold(
    engine: Engine,
    job: JobRecord,
    session: Session,
    *,
    threshold: int,
    gate: threading.Event | None = None,
) -> LabelsCrop:
    """Label bright components tile by tile (a small real runner, no model)."""
    bright = np.zeros(session.grid.image_shape, bool)
    for count, tile in enumerate(session.grid, start=1):
        job.raise_if_cancelled()
        if gate is not None:
            gate.wait(30)
        r0, c0, r1, c1 = tile.core
        rgb = session.source.read_level_rgb(r0, c0, r1, c1, level=0, plane=session.plane)
        bright[r0:r1, c0:c1] = rgb[..., 0] > threshold
        job.emit(done=count)
    labels = label(bright, connectivity=2)
    objects = tuple(
        ObjectMask.from_full(labels == k, score=1.0, class_name="bright")
        for k in range(1, int(labels.max()) + 1)
    )
    return LabelsCrop.from_result(SegmentationResult(bright.shape, objects), (0, 0, *bright.shape))


def test_a_registered_job_kind_runs_and_returns_labels(
    engine: Engine, client: SeemClient, url: str, image: np.ndarray
) -> None:
    if "threshold_labels" not in engine.job_kinds:
        engine.register_job_kind("threshold_labels", _run_threshold, check=_check_threshold)
    with pytest.raises(ValueError, match="registered already"):
        engine.register_job_kind("threshold_labels", _run_threshold)
    sid = client.open_session(image_id=client.upload_image(image).result(60)).result(60).session_id
    started = client.start_job(sid, kind="threshold_labels", params={"threshold": 100}).result(60)
    assert started.total == 12  # 3 x 4 tiles
    job_id = started.job_id
    for _ in range(600):
        status = client.job_status(job_id).result(60)
        if status.state in ("done", "failed", "cancelled"):
            break
        time.sleep(0.05)
    assert status.state == "done" and status.has_result and status.done == 12
    crop = client.job_result(job_id).result(60)
    assert crop.offset == (0, 0) and crop.labels.dtype == np.uint32
    np.testing.assert_array_equal(crop.labels > 0, image > 100)
    assert len(crop.classes) == int(crop.labels.max()) and crop.classes[0]["class_name"] == "bright"
    raw = _raw(url, "GET", f"/jobs/{job_id}/result")
    assert raw.headers["content-type"] == "application/vnd.napari-seem.labels"
    again = decode_labels(raw.content)
    np.testing.assert_array_equal(again.labels, crop.labels)
    assert (again.offset, again.image_shape, again.classes) == (crop.offset, SHAPE, crop.classes)
    # bad params are 400 before anything runs
    for params in ({"threshold": "high"}, {"threshold": 1, "colour": "red"}):
        error = _remote(client.start_job(sid, kind="threshold_labels", params=params))
        assert error.status == 400
    # encode_region keeps working and stores no result
    job = client.start_job(sid, box=(0, 0, 50, 50)).result(60)
    while client.job_status(job.job_id).result(60).state not in ("done", "failed"):
        time.sleep(0.05)
    error = _remote(client.job_result(job.job_id))
    assert error.status == 409 and "stores no result" in error.message
    # a runner without a check: its keyword parameters are the contract
    if "plain" not in engine.job_kinds:
        engine.register_job_kind("plain", lambda engine, job, session, *, n: None)
    assert _remote(client.start_job(sid, kind="plain", params={"m": 1})).status == 400


def test_a_registered_job_is_cancelled_between_tiles(
    engine: Engine, client: SeemClient, image: np.ndarray
) -> None:
    gate = threading.Event()

    def gated(engine: Engine, job: JobRecord, session: Session, *, threshold: int) -> LabelsCrop:
        return _run_threshold(engine, job, session, threshold=threshold, gate=gate)

    engine.register_job_kind("gated", gated, check=_check_threshold, replace=True)
    sid = client.open_session(image_id=client.upload_image(image).result(60)).result(60).session_id
    job_id = client.start_job(sid, kind="gated").result(60).job_id
    while client.job_status(job_id).result(60).state == "queued":
        time.sleep(0.02)
    error = _remote(client.job_result(job_id))
    assert error.status == 409 and "running" in error.message
    client.cancel_job(job_id).result(60)
    gate.set()
    for _ in range(600):
        status = client.job_status(job_id).result(60)
        if status.state != "running":
            break
        time.sleep(0.05)
    assert status.state == "cancelled" and 1 <= status.done < status.total
    assert "cancelled" in _remote(client.job_result(job_id)).message
