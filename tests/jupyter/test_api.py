"""``napari_seem.segment`` / ``segment_everything``: every prompt kind, every image kind."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import napari_seem
from napari_seem import Points, PromptError, ReferringExample
from napari_seem.api import Cancelled, clear_model_cache, get_backend
from napari_seem.datasets.synthetic import synthetic_nuclei

SHAPE = (192, 256)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return synthetic_nuclei(SHAPE, n_objects=12, seed=1).image


def _check(result: napari_seem.SegmentationResult, count: int, source: str) -> None:
    assert isinstance(result, napari_seem.SegmentationResult)
    assert result.image_shape == SHAPE and len(result) == count
    assert all(o.source == source for o in result)
    labels = result.to_labels()
    assert labels.shape == SHAPE and labels.dtype == np.uint32


def test_import_is_lazy() -> None:
    code = (
        "import sys, napari_seem; f = napari_seem.segment; "
        "print(sorted(m for m in ('torch', 'ipywidgets', 'anywidget') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_points_with_labels_give_one_object(image: np.ndarray) -> None:
    result = napari_seem.segment(image, points=[(90, 120), (20, 20)], point_labels=[1, 0])
    _check(result, 1, "interactive")
    prompt = result[0].prompt
    assert prompt is not None and prompt.visual[0].positive.tolist() == [True, False]


def test_each_box_is_an_object_and_bounds_its_mask(image: np.ndarray) -> None:
    boxes = np.array([(10, 10, 60, 70), (100, 120, 150, 200)])
    result = napari_seem.segment(image, boxes=boxes)
    _check(result, 2, "interactive")
    for obj, (r0, c0, r1, c1) in zip(result, boxes, strict=True):
        if obj.bbox is not None:
            br0, bc0, br1, bc1 = obj.bbox
            assert br0 >= r0 and bc0 >= c0 and br1 <= r1 + 1 and bc1 <= c1 + 1


def test_scribbles_masks_and_composed_text(image: np.ndarray) -> None:
    scribble = np.array([(50, 50), (60, 80), (70, 90)])
    _check(napari_seem.segment(image, scribbles=[scribble]), 1, "interactive")
    mask = np.zeros(SHAPE, bool)
    mask[80:100, 100:130] = True
    _check(napari_seem.segment(image, masks=mask), 1, "interactive")
    composed = napari_seem.segment(image, points=[(90, 120)], text="nucleus")
    assert composed[0].class_name == "nucleus"


def test_text_alone_grounds_each_phrase(image: np.ndarray) -> None:
    result = napari_seem.segment(image, text=["nucleus", "background"])
    assert len(result) >= 2 and {o.class_name for o in result} == {"nucleus", "background"}
    assert all(o.source == "grounding" for o in result)


def test_referring_example_from_another_image(image: np.ndarray) -> None:
    other = synthetic_nuclei(SHAPE, n_objects=12, seed=2).image
    example = ReferringExample.from_image(other, Points.click(96, 128), label="nucleus")
    result = napari_seem.segment(image, example=example)
    _check(result, 1, "referring")
    assert result[0].class_name == "nucleus"


def test_zarr_dask_and_path_inputs_agree_with_numpy(image: np.ndarray, tmp_path: Path) -> None:
    dask_array = pytest.importorskip("dask.array")
    expected = napari_seem.segment(image, points=[(90, 120)])[0]
    path = tmp_path / "image.zarr"
    stored = zarr.create_array(store=str(path), shape=SHAPE, chunks=(64, 64), dtype="uint8")
    stored[:] = image
    for source in (stored, str(path), dask_array.from_array(image, chunks=64)):
        got = napari_seem.segment(source, points=[(90, 120)])[0]
        assert got.offset == expected.offset and np.array_equal(got.mask, expected.mask)


def test_stack_plane_and_default_model_is_cached(image: np.ndarray) -> None:
    stack = np.stack([np.zeros_like(image), image])
    a = napari_seem.segment(stack, points=[(90, 120)], plane=(1,))[0]
    b = napari_seem.segment(image, points=[(90, 120)])[0]
    assert np.array_equal(a.mask, b.mask)
    assert get_backend(None) is get_backend(None)
    with pytest.raises(PromptError, match="plane"):
        napari_seem.segment(stack, points=[(90, 120)])


def test_given_engine_is_used_as_is(image: np.ndarray) -> None:
    from napari_seem.engine import Engine
    from napari_seem.predict.predictor import SeemPredictor

    engine = Engine(SeemPredictor.from_variant("seem-tiny-focal", device="cpu"))
    try:
        assert get_backend(engine).engine is engine
        assert len(napari_seem.segment(image, points=[(90, 120)], model=engine)) == 1
    finally:
        engine.close()


def test_segment_everything_tiles_progress_and_cancel(image: np.ndarray) -> None:
    big = np.tile(image, (3, 2))  # 576 x 512: two 512-pixel tiles
    seen: list[tuple[int, int]] = []
    result = napari_seem.segment_everything(
        big,
        vocabulary="nucleus, cell",
        object_mask_threshold=0.0,
        progress=lambda d, n: seen.append((d, n)),
    )
    total = seen[-1][1]
    assert total > 1 and seen[0] == (0, total) and seen[-1] == (total, total)
    assert result.image_shape == big.shape
    assert {o.class_name for o in result} <= {"nucleus", "cell"}
    cancel = threading.Event()

    def stop_after_first(done: int, _total: int) -> None:
        if done == 1:
            cancel.set()

    with pytest.raises(Cancelled, match="after 1 tiles"):
        napari_seem.segment_everything(
            big, vocabulary=["nucleus"], progress=stop_after_first, cancel=cancel
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "no prompt given"),
        ({"points": [(1, 2, 3)]}, r"points must be an \(N, 2\)"),
        ({"points": [(1000, 5)]}, "lies outside the image"),
        ({"points": [(5, 5)], "point_labels": [2]}, "1 .positive. or 0"),
        ({"boxes": [(1, 2, 3)]}, r"boxes must be an \(N, 4\)"),
        ({"boxes": [(1, 2, 3, 4), (5, 6, 7, 8)], "points": [(2, 3)]}, "at most one box"),
        ({"masks": np.zeros((3, 3), bool)}, "covers the whole image"),
        ({"masks": np.zeros(SHAPE, bool)}, "is empty"),
        ({"text": "  "}, "empty"),
        ({"points": [(5, 5)], "text": ["a", "b"]}, "single string"),
        ({"example": "nucleus"}, "ReferringExample"),
    ],
)
def test_malformed_prompts_say_what_to_do(
    image: np.ndarray, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(PromptError, match=message):
        napari_seem.segment(image, **kwargs)  # type: ignore[arg-type]


def test_bad_images_models_and_vocabularies(image: np.ndarray, tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="cannot open the image"):
        napari_seem.segment(tmp_path / "missing.zarr", points=[(1, 1)])
    with pytest.raises(ValueError, match="neither a variant"):
        napari_seem.segment(image, points=[(1, 1)], model="no-such-model")
    with pytest.raises(TypeError, match="model must be"):
        napari_seem.segment(image, points=[(1, 1)], model=42)
    with pytest.raises(PromptError, match="repeats"):
        napari_seem.segment_everything(image, vocabulary=["a", "a"])
    with pytest.raises(PromptError, match="mode must be") as info:
        napari_seem.segment_everything(image, vocabulary=["a"], mode="all")  # type: ignore[arg-type]
    assert "'auto', 'panoptic', 'instance', 'semantic', 'points'; got 'all'" in str(info.value)


def test_segment_everything_modes_points_and_auto(image: np.ndarray) -> None:
    """``"points"`` prompts a grid of points; ``"auto"`` (the default) is ``"panoptic"`` on
    a model without a prompt window (the tiny one)."""
    points = napari_seem.segment_everything(image, vocabulary="nucleus", mode="points")
    assert points.image_shape == image.shape
    assert {o.source for o in points} <= {"points"}
    auto = napari_seem.segment_everything(image, vocabulary="nucleus", object_mask_threshold=0.0)
    assert len(auto) and {o.source for o in auto} == {"panoptic"}


def test_clear_model_cache_rebuilds() -> None:
    first = get_backend(None)
    clear_model_cache()
    assert get_backend(None) is not first


def _seam_scene() -> np.ndarray:
    scene = np.full((200, 300), 20, np.uint8)
    scene[80:112, 80:112] = 220  # across the seams of four 96-pixel tile cores
    scene[150:160, 10:20] = 220
    return scene


def _check_seam_result(result: napari_seem.SegmentationResult) -> None:
    assert result.image_shape == (200, 300) and len(result) == 2
    by_area = sorted(result, key=lambda o: o.area)
    small, big = by_area
    assert big.offset == (80, 80) and big.mask.shape == (32, 32) and big.mask.all()
    assert (big.class_name, small.class_name) == ("blob", "speck")
    assert small.bbox == (150, 10, 160, 20)


def test_segment_everything_merges_objects_across_tile_seams() -> None:
    from napari_seem.engine import Engine
    from napari_seem.model.build import build_seem
    from tests.engine._threshold import ThresholdPredictor

    predictor = ThresholdPredictor(build_seem("seem-tiny-focal", seed=0))
    with Engine(predictor, tile=128, halo=16) as engine:
        seen: list[tuple[int, int]] = []
        result = napari_seem.segment_everything(
            _seam_scene(),
            vocabulary=["blob", "speck"],
            model=engine,
            progress=lambda d, n: seen.append((d, n)),
        )
        _check_seam_result(result)
        assert seen[0] == (0, 12) and seen[-1] == (12, 12)
        # the job took the engine's model lock for every tile (one segment call per tile)
        assert len(predictor.everything_calls) == 12
        assert predictor.everything_calls[0].get("overlap_threshold", 0.8) == 0.8
        napari_seem.segment_everything(
            _seam_scene(), vocabulary=["blob"], model=engine, overlap_threshold=0.3
        )
        assert predictor.everything_calls[-1]["overlap_threshold"] == 0.3


def test_segment_everything_through_a_seem_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from napari_seem.engine import Engine
    from napari_seem.model.build import build_seem
    from napari_seem.remote.client import SeemClient
    from napari_seem.remote.server import create_app
    from tests.engine._threshold import ThresholdPredictor
    from tests.remote.harness import served

    predictor = ThresholdPredictor(build_seem("seem-tiny-focal", seed=0))
    with Engine(predictor, tile=128, halo=16) as engine:
        app = create_app(engine, token="jupyter-token", allowed_roots=[tmp_path])
        with served(app) as url, SeemClient(url, "jupyter-token") as client:
            seen: list[tuple[int, int]] = []
            result = napari_seem.segment_everything(
                _seam_scene(),
                vocabulary="blob, speck",
                model=client,
                progress=lambda d, n: seen.append((d, n)),
            )
            _check_seam_result(result)
            assert seen[-1] == (12, 12) and all(n == 12 for _, n in seen)
            cancel = threading.Event()

            def stop_early(done: int, _total: int) -> None:
                if done >= 1:
                    cancel.set()

            # The threshold answers are fast enough for a job to finish before the client
            # sees its first tile, so every tile after the first waits until the server has
            # been asked to cancel (or 30 s pass): the cancel always lands mid-job.
            asked = threading.Event()
            first_call = len(predictor.everything_calls)
            answer = predictor.segment_everything
            ask = engine.cancel_job

            def gated(vocabulary: Any, **kwargs: Any) -> Any:
                if len(predictor.everything_calls) > first_call:
                    asked.wait(30)
                return answer(vocabulary, **kwargs)

            def cancel_and_release(job_id: str) -> None:
                ask(job_id)
                asked.set()

            monkeypatch.setattr(predictor, "segment_everything", gated)
            monkeypatch.setattr(engine, "cancel_job", cancel_and_release)
            with pytest.raises(Cancelled, match="cancelled after"):
                napari_seem.segment_everything(
                    _seam_scene(),
                    vocabulary=["blob"],
                    model=client,
                    progress=stop_early,
                    cancel=cancel,
                )
            assert len(predictor.everything_calls) - first_call < 12
            monkeypatch.undo()
            with pytest.raises(PromptError, match="mode must be"):
                get_backend(client).everything(
                    get_backend(client).open(_seam_scene()),
                    ["blob"],
                    mode="all",  # type: ignore[arg-type]
                )
