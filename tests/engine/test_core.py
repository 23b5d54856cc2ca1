"""The engine on a tiny random-weight model: plumbing, not segmentation quality."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from napari_seem.core.prompts import Box, MaskPrompt, ObjectPrompt, Points, Polygon, Scribble
from napari_seem.core.results import ObjectMask, SegmentationResult
from napari_seem.core.tile_prompts import object_in_window, prompt_in_window
from napari_seem.datasets.synthetic import synthetic_nuclei
from napari_seem.engine import (
    Engine,
    InvalidRequestError,
    JobEvent,
    PromptOutsideImageError,
    UnknownJobError,
    UnknownSessionError,
)
from napari_seem.engine.jobs import JobKind, JobRecord
from napari_seem.engine.kinds import STANDARD_KINDS
from napari_seem.engine.sessions import Session
from napari_seem.model.seem import SeemModel
from napari_seem.predict.predictor import SeemPredictor
from tests.remote.harness import write_zarr
from tests.tiny import SHAPE


@pytest.fixture(scope="module")
def zarr_path(tmp_path_factory: pytest.TempPathFactory, image: np.ndarray) -> Path:
    return write_zarr(tmp_path_factory.mktemp("engine") / "nuclei.zarr", image)


class _Counting(SeemPredictor):
    """A real predictor that counts encodes and records what each decode was given."""

    def __init__(self, model: SeemModel) -> None:
        super().__init__(model, short_side=None)
        self.encodes = 0
        self.calls: list[dict[str, Any]] = []

    def encode_many(self, images: Any) -> Any:
        self.encodes += len(images)
        return super().encode_many(images)

    def predict(self, prompts: Any, **kwargs: Any) -> SegmentationResult:
        self.calls.append({"prompt": prompts, **kwargs})
        return super().predict(prompts, **kwargs)


class _Everything(_Counting):
    """Answers every prompt with its whole tile window: forces growth into every neighbour."""

    def predict(self, prompts: Any, **kwargs: Any) -> SegmentationResult:
        self.calls.append({"prompt": prompts, **kwargs})
        shape = self.encoded.image_shape
        full = ObjectMask.from_full(np.ones(shape, bool), score=0.5, prompt=prompts)
        return SegmentationResult(shape, (full,))


def _center_of_nucleus(image: np.ndarray) -> tuple[int, int]:
    labels = synthetic_nuclei(SHAPE, n_objects=12, seed=1).labels
    rows, cols = np.nonzero(labels == 1)
    return int(rows.mean()), int(cols.mean())


@pytest.mark.parametrize("kind", ["numpy", "zarr"])
def test_click_gives_crop_in_level0(
    model: SeemModel, image: np.ndarray, zarr_path: Path, kind: str
) -> None:
    engine = Engine(model, tile=64, halo=16, max_tiles=6)
    session = engine.open_session(image if kind == "numpy" else str(zarr_path))
    row, col = _center_of_nucleus(image)
    prompt = ObjectPrompt(Points.click(row, col))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # random weights may leak past 6 tiles
        result = engine.predict(session, prompt)
    assert isinstance(result, ObjectMask)
    assert result.prompt is prompt
    result.check_fits(SHAPE)
    assert result.mask.shape[0] <= SHAPE[0] and result.mask.shape[1] <= SHAPE[1]
    if not result.is_empty:
        assert result.mask.any(axis=1)[0] and result.mask.any(axis=0)[0]  # a tight crop
    engine.close()


def test_numpy_and_zarr_sessions_agree(
    model: SeemModel, image: np.ndarray, zarr_path: Path
) -> None:
    engine = Engine(model, tile=512)
    prompt = ObjectPrompt(Points.click(*_center_of_nucleus(image)))
    a = engine.predict(engine.open_session(image), prompt)
    b = engine.predict(engine.open_session(str(zarr_path)), prompt)
    assert a.offset == b.offset
    np.testing.assert_array_equal(a.mask, b.mask)


@pytest.mark.parametrize(
    "visual",
    [
        (Points.clicks(positive=[(60, 80)], negative=[(150, 250)]),),
        (Box(40.0, 50.0, 120.0, 160.0),),
        (Scribble([(30, 30), (60, 90)], width=3), Polygon([(100, 200), (140, 200), (120, 260)])),
    ],
    ids=["clicks", "box", "scribble+polygon"],
)
def test_one_tile_equals_whole_image_predictor(
    model: SeemModel, image: np.ndarray, visual: tuple[Any, ...]
) -> None:
    engine = Engine(model, tile=512, halo=64)  # the 200 x 300 image is one tile
    session = engine.open_session(image)
    assert engine.session_info(session).grid_shape == (1, 1)
    prompt = ObjectPrompt(visual)
    tiled = engine.predict(session, prompt)
    whole = SeemPredictor(model, short_side=None)
    whole.set_image(image)
    untiled = whole.predict(prompt)[0]
    assert tiled.offset == untiled.offset
    np.testing.assert_array_equal(tiled.mask, untiled.mask)
    assert tiled.score == pytest.approx(untiled.score)


def test_features_are_cached_per_tile(model: SeemModel, image: np.ndarray) -> None:
    predictor = _Counting(model)
    engine = Engine(predictor, tile=512)
    session = engine.open_session(image)
    engine.predict(session, ObjectPrompt(Points.click(50, 60)))
    engine.predict(session, ObjectPrompt(Points.click(120, 200)))
    assert predictor.encodes == 1
    assert len(predictor.calls) == 2
    other = engine.open_session(image)  # a new session has its own cache
    engine.predict(other, ObjectPrompt(Points.click(50, 60)))
    assert predictor.encodes == 2


def test_growth_decodes_neighbours_and_stitches(model: SeemModel, image: np.ndarray) -> None:
    predictor = _Everything(model)
    engine = Engine(predictor, tile=128, halo=16)  # core 96: a 3 x 4 grid
    session = engine.open_session(image)
    assert engine.session_info(session).grid_shape == (3, 4)
    result = engine.predict(session, ObjectPrompt(Points.click(10, 10)))
    assert result.offset == (0, 0)
    assert result.mask.shape == SHAPE and result.mask.all()
    assert len(predictor.calls) == 12 and predictor.encodes == 12
    first, rest = predictor.calls[0]["prompt"], predictor.calls[1:]
    assert isinstance(first.visual[0], Points)
    # grown-into tiles are prompted by the growing mask inside their window
    for call in rest:
        kinds = [type(p) for p in call["prompt"].visual]
        assert kinds == [MaskPrompt]
        assert call["prompt"].visual[0].positive


def test_growth_is_bounded_by_the_box(model: SeemModel, image: np.ndarray) -> None:
    predictor = _Everything(model)
    engine = Engine(predictor, tile=128, halo=16)
    session = engine.open_session(image)
    result = engine.predict(session, ObjectPrompt(Box(20.0, 30.0, 110.0, 150.0)))
    assert result.offset == (20, 30)
    assert result.mask.shape == (91, 121) and result.mask.all()
    # the box meets 4 tile cores; their neighbours that hold none of the box add nothing
    assert result.bbox == (20, 30, 111, 151)


def test_history_is_passed_as_memory(model: SeemModel, image: np.ndarray) -> None:
    predictor = _Counting(model)
    engine = Engine(predictor, tile=512)
    session = engine.open_session(image)
    row, col = _center_of_nucleus(image)
    first = engine.predict(session, ObjectPrompt(Points.click(row, col)), object_id="n1")
    assert predictor.calls[-1]["previous"] is None
    refined = ObjectPrompt(Points.clicks(positive=[(row, col)], negative=[(5, 5)]))
    engine.predict(session, refined, object_id="n1")
    previous = predictor.calls[-1]["previous"]
    if first.is_empty:
        assert previous is None  # nothing to remember
    else:
        (memory,) = previous
        assert memory.offset == first.offset
        np.testing.assert_array_equal(memory.mask, first.mask)
    engine.predict(session, refined, object_id="n2")  # another object: no memory
    assert predictor.calls[-1]["previous"] is None
    engine.forget_object(session, "n1")
    engine.predict(session, refined, object_id="n1")
    assert predictor.calls[-1]["previous"] is None


def test_memory_uses_the_remembered_mask_in_the_tile_frame(
    model: SeemModel, image: np.ndarray
) -> None:
    predictor = _Everything(model)
    engine = Engine(predictor, tile=512)
    session = engine.open_session(image)
    engine.predict(session, ObjectPrompt(Box(20.0, 30.0, 110.0, 150.0)), object_id="a")
    engine.predict(session, ObjectPrompt(Points.click(50, 60)), object_id="a")
    (memory,) = predictor.calls[-1]["previous"]
    assert memory.offset == (20, 30) and memory.mask.shape == (91, 121)


def test_encode_region_reports_progress(model: SeemModel, image: np.ndarray) -> None:
    predictor = _Counting(model)
    engine = Engine(predictor, tile=128, halo=16, max_tiles=1)
    session = engine.open_session(image)
    seen: list[JobEvent] = []
    job = engine.start_job("encode_region", session, box=(0, 0, 100, 150))
    engine.subscribe(job, seen.append)
    status = engine.wait_job(job, timeout=120)
    assert status.state == "done" and status.done == status.total == 4
    assert predictor.encodes == 4
    events = engine.events(job)
    assert [e.seq for e in events] == list(range(len(events)))
    assert events[0].state == "queued" and events[-1].state == "done"
    assert [e.done for e in events if e.state == "running"] == [0, 1, 2, 3, 4]
    assert [e.seq for e in seen] == [e.seq for e in events]
    assert engine.events(job, since=len(events) - 1) == events[-1:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # max_tiles=1 may cut the object
        engine.predict(session, ObjectPrompt(Points.click(10, 10)))  # a prefetched tile
    assert predictor.encodes == 4
    engine.close()


def test_encode_region_can_be_cancelled(model: SeemModel, image: np.ndarray) -> None:
    predictor = _Counting(model)
    started, release = threading.Event(), threading.Event()
    original = predictor.encode_many

    def blocking(images: Any) -> Any:
        started.set()
        assert release.wait(30)
        return original(images)

    predictor.encode_many = blocking  # type: ignore[method-assign]
    engine = Engine(predictor, tile=128, halo=16)
    session = engine.open_session(image)
    job = engine.start_job("encode_region", session)
    assert started.wait(30)
    engine.cancel_job(job)
    release.set()
    status = engine.wait_job(job, timeout=60)
    assert status.state == "cancelled"
    assert status.done == 1 and status.total == 12
    engine.close()


def test_failed_job_reports_its_error(model: SeemModel, image: np.ndarray) -> None:
    predictor = _Counting(model)

    def broken(images: Any) -> Any:
        raise RuntimeError("out of memory")

    predictor.encode_many = broken  # type: ignore[method-assign]
    engine = Engine(predictor, tile=128, halo=16)
    job = engine.start_job("encode_region", engine.open_session(image))
    status = engine.wait_job(job, timeout=60)
    assert status.state == "failed" and "out of memory" in (status.error or "")
    engine.close()


def test_clear_errors(model: SeemModel, image: np.ndarray) -> None:
    engine = Engine(model, tile=512)
    session = engine.open_session(image)
    with pytest.raises(UnknownSessionError, match="open_session"):
        engine.predict("nope", ObjectPrompt(Points.click(1, 1)))
    with pytest.raises(UnknownJobError, match="start_job"):
        engine.job_status("nope")
    with pytest.raises(PromptOutsideImageError, match="200 x 300"):
        engine.predict(session, ObjectPrompt(Points.click(250, 10)))
    with pytest.raises(PromptOutsideImageError):
        engine.predict(session, ObjectPrompt(Box(10.0, 10.0, 50.0, 400.0)))
    with pytest.raises(InvalidRequestError, match="positive"):
        engine.predict(session, ObjectPrompt(text="nucleus"))
    with pytest.raises(InvalidRequestError, match="unknown job kind"):
        engine.start_job("train", session)
    with pytest.raises(InvalidRequestError, match="outside the image"):
        engine.start_job("encode_region", session, box=(0, 0, 500, 10))
    with pytest.raises(InvalidRequestError, match="level"):
        engine.open_session(image, level=1)
    with pytest.raises(InvalidRequestError, match="plane"):
        engine.open_session(image, plane=(0,))
    engine.close_session(session)
    with pytest.raises(UnknownSessionError):
        engine.close_session(session)


# ---------------------------------------------------------------- prompts in a tile window


def test_prompt_wholly_inside_is_translated_exactly() -> None:
    (moved,) = prompt_in_window(Scribble([(40, 50), (60, 70)], width=5), (32, 32, 96, 96))
    assert isinstance(moved, Scribble) and moved.width == 5
    np.testing.assert_array_equal(moved.vertices, [[8, 18], [28, 38]])
    (mask,) = prompt_in_window(MaskPrompt(np.ones((3, 3)), (40, 40)), (32, 32, 96, 96))
    assert isinstance(mask, MaskPrompt) and mask.offset == (8, 8)


def test_prompt_partly_inside_is_clipped() -> None:
    window = (0, 0, 64, 64)
    (points,) = prompt_in_window(Points.clicks(positive=[(10, 10), (10, 100)]), window)
    assert isinstance(points, Points) and len(points) == 1
    (box,) = prompt_in_window(Box(10.0, 40.0, 20.0, 90.0), window)
    assert box == Box(10.0, 40.0, 20.0, 63.0)
    parts = prompt_in_window(Polygon([(10, 10), (10, 100), (50, 10)], positive=False), window)
    assert len(parts) == 1 and isinstance(parts[0], MaskPrompt) and not parts[0].positive
    assert parts[0].mask.shape[1] <= 64
    (crop,) = prompt_in_window(MaskPrompt(np.ones((10, 10)), (60, 60)), window)
    assert isinstance(crop, MaskPrompt) and crop.offset == (60, 60) and crop.mask.shape == (4, 4)
    assert object_in_window((Points.click(100, 100),), window) == []


def test_job_kinds_are_a_plain_mapping_given_to_the_engine(
    model: SeemModel, image: np.ndarray
) -> None:
    assert set(STANDARD_KINDS) == {"encode_region", "segment", "fine_tune"}
    with Engine(model, tile=128, halo=16) as engine:
        assert engine.job_kinds == tuple(STANDARD_KINDS)

    def count(engine: Engine, job: JobRecord, session: Session, *, n: int) -> dict[str, int]:
        job.emit(done=n, total=n)
        return {"n": n}

    with Engine(model, tile=128, halo=16, kinds={"count": JobKind(count)}) as engine:
        assert engine.job_kinds == ("count",)
        sid = engine.open_session(image)
        status = engine.wait_job(engine.start_job("count", sid, n=3), timeout=60)
        assert status.state == "done" and status.info == {"n": 3} and status.done == 3
        with pytest.raises(InvalidRequestError, match="unknown job kind 'segment'"):
            engine.start_job("segment", sid)
        engine.register_job_kind("extra", count)
        assert engine.job_kinds == ("count", "extra")
    assert "extra" not in STANDARD_KINDS  # every engine keeps its own copy
    with pytest.raises(TypeError):
        STANDARD_KINDS["extra"] = JobKind(count)  # type: ignore[index]
