"""End-to-end batch runs in this process on real zarr stores (threshold segmenter + tiny SEEM)."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from scipy import ndimage

from napari_seem.batch import (
    BatchConfig,
    BatchConfigError,
    ModelSpec,
    RunSummary,
    SharedPredictor,
    Task,
    segment_image,
)
from napari_seem.batch.store import MANIFEST_NAME, WORK_DIR
from napari_seem.core.progress import Reporter, pair_reporter
from tests.batch.helpers import ThresholdPredictor, lazy_zarr, render_window
from tests.ome import write_ome_zarr

SHAPE = (700, 600)
TINY = ModelSpec("seem-tiny-focal", device="cpu", mask_resize="bilinear", threads=1)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lazy_zarr(tmp_path_factory.mktemp("img") / "img.zarr", SHAPE, chunk=256, seed=3)


def _truth() -> np.ndarray:
    fg = render_window(3, 0, 0, *SHAPE) > 128
    return ndimage.label(fg)[0]


def _assert_relabelling(truth: np.ndarray, merged: np.ndarray) -> None:
    assert ((truth > 0) == (merged > 0)).all()
    pairs = np.unique(np.stack([truth[truth > 0], merged[truth > 0]]), axis=1)
    assert len(np.unique(pairs[0])) == pairs.shape[1], "a true object got several ids"
    assert len(np.unique(pairs[1])) == pairs.shape[1], "one id covers several true objects"


def _run(
    image: Path,
    out: Path,
    *,
    model: Any = None,
    reporter: Reporter | None = None,
    cancel: threading.Event | None = None,
    **config: Any,
) -> RunSummary:
    """Vocabulary "nucleus" on 200-pixel tiles with a threshold segmenter, unless told."""
    options: dict[str, Any] = {"tile": 200, "halo": 32, "min_area": 1, **config}
    return segment_image(
        image,
        out,
        Task.from_options(vocabulary="nucleus"),
        BatchConfig(**options),
        model=model or ThresholdPredictor(),
        reporter=reporter,
        cancel=cancel,
    )


def test_objects_across_seams_have_one_id_end_to_end(image: Path, tmp_path: Path) -> None:
    out = tmp_path / "labels.zarr"
    summary = _run(image, out)
    assert summary.status == "complete" and summary.tiles == 6 * 5
    labels = zarr.open_array(str(out), mode="r")
    assert labels.dtype == np.uint32 and labels.shape == SHAPE
    assert labels.chunks == (136, 136)  # the tile cores: one writer per chunk
    merged = labels[...]
    truth = _truth()
    _assert_relabelling(truth, merged)
    # objects really cross seams (else the test proves nothing)
    crossing = set(np.unique(merged[:, 135]).tolist()) & set(np.unique(merged[:, 136]).tolist())
    assert crossing - {0}
    # class table in the attributes and as CSV; ids are 1..n
    attrs = labels.attrs["napari_seem"]
    assert attrs["complete"] is True
    table = attrs["classes"]
    assert [row["id"] for row in table] == list(range(1, summary.objects + 1))
    assert sum(row["pieces"] > 1 for row in table) >= 5
    for row in table[:20]:
        mask = merged == row["id"]
        rows, cols = np.nonzero(mask)
        assert row["area"] == mask.sum() and row["class_name"] == "nucleus"
        assert row["bbox"] == [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]
    with open(summary.class_table, newline="") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == summary.objects and lines[0]["class_name"] == "nucleus"
    assert Path(summary.class_table) == tmp_path / "labels.classes.csv"
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["status"] == "complete" and len(manifest["done"]["chunks"]) == 30
    assert not (out / WORK_DIR).exists()


def test_cancel_then_resume_skips_finished_tiles(image: Path, tmp_path: Path) -> None:
    reference = _run(image, tmp_path / "ref.zarr")
    cancel = threading.Event()
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        if done >= 7:
            cancel.set()

    out = tmp_path / "resumed.zarr"
    first = _run(image, out, reporter=pair_reporter(progress), cancel=cancel)
    assert first.status == "cancelled"
    assert seen[0] == (0, 60) and seen[-1][0] == 7
    assert zarr.open_array(str(out)).attrs["napari_seem"]["complete"] is False
    predictor = ThresholdPredictor()
    again = _run(image, out, model=predictor)
    assert again.status == "complete" and again.tiles_skipped == 7
    assert predictor.calls == 30 - 7  # finished tiles were not segmented again
    np.testing.assert_array_equal(
        zarr.open_array(str(out))[...], zarr.open_array(reference.labels)[...]
    )
    # the same call on a complete output does nothing
    done = _run(image, out, model=(p := ThresholdPredictor()))
    assert done.status == "complete" and p.calls == 0


def test_existing_output_rules(image: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.zarr"
    out.mkdir()
    (out / "something").write_text("mine")
    with pytest.raises(BatchConfigError, match=r"not a napari-seem run.*--overwrite"):
        _run(image, out)
    assert (out / "something").exists()  # nothing was touched
    cancel = threading.Event()
    cancel.set()
    _run(image, out, overwrite=True, cancel=cancel)  # an unfinished run
    with pytest.raises(
        BatchConfigError, match=r"different configuration \(differs in: .*halo.*--overwrite"
    ):
        _run(image, out, halo=16)


def test_region_and_nodata_and_errors(image: Path, tmp_path: Path) -> None:
    summary = _run(image, tmp_path / "r.zarr", region=(0, 0, 100, 100))
    assert summary.tiles == 1
    merged = zarr.open_array(summary.labels)[...]
    assert merged[136:].max() == 0 and merged[:, 136:].max() == 0
    with pytest.raises(BatchConfigError, match="exactly one of vocabulary"):
        segment_image(image, tmp_path / "x.zarr", Task.from_options(vocabulary="a", text="b"))
    with pytest.raises(BatchConfigError, match="must exceed 2 \\* halo"):
        _run(image, tmp_path / "x.zarr", tile=64, halo=32)
    with pytest.raises(BatchConfigError, match="cannot open the input image"):
        _run(tmp_path / "missing.zarr", tmp_path / "x.zarr")
    with pytest.raises(BatchConfigError, match="band index 4 is out of range"):
        _run(image, tmp_path / "x.zarr", bands=(0, 0, 4))
    assert not (tmp_path / "x.zarr").exists()


def _write_ome(path: Path, level0: np.ndarray, version: str) -> None:
    axes = [{"name": "y", "type": "space", "unit": "micrometer"}, {"name": "x", "type": "space"}]
    write_ome_zarr(path, level0, axes, version, levels=2, chunk=128, pixel_size=0.5)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_labels_with_levels(tmp_path: Path, version: str) -> None:
    path = tmp_path / "img.ome.zarr"
    _write_ome(path, render_window(5, 0, 0, 500, 420), version)
    summary = segment_image(
        path,
        None,
        Task(vocabulary=("nucleus",)),
        BatchConfig(labels_name="nuclei", tile=192, halo=32, level=1, min_area=1),
        model=ThresholdPredictor(),
    )
    group = zarr.open_group(str(path / "labels" / "nuclei"), mode="r")
    attrs = dict(group.attrs)
    meta = attrs if version == "0.4" else attrs["ome"]
    (ms,) = meta["multiscales"]
    assert [d["path"] for d in ms["datasets"]] == ["0", "1"]
    # level 1 of the image was segmented: labels level 0 has its scale, level 1 twice it
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 1.0]
    assert ms["datasets"][1]["coordinateTransformations"][0]["scale"] == [2.0, 2.0]
    assert meta["image-label"]["source"]["image"] == "../../"
    root = dict(zarr.open_group(str(path / "labels"), mode="r").attrs)
    assert (root if version == "0.4" else root["ome"])["labels"] == ["nuclei"]
    level0 = group["0"][...]
    assert level0.shape == (250, 210) and level0.dtype == np.uint32
    np.testing.assert_array_equal(group["1"][...], level0[::2, ::2])
    truth = ndimage.label(render_window(5, 0, 0, 500, 420)[::2, ::2] > 128)[0]
    _assert_relabelling(truth, level0)
    assert Path(summary.class_table) == path / "labels" / "nuclei" / "classes.csv"
    assert group["0"].metadata.zarr_format == (2 if version == "0.4" else 3)


@pytest.mark.slow
def test_tiny_model_text_and_instance_runs(image: Path, tmp_path: Path) -> None:
    """The real SEEM path (random tiny weights: the masks are meaningless, the plumbing is
    real): every id of the output is in the class table with its exact area."""
    for name, task in (
        ("text", Task(text="a round cell")),
        ("inst", Task(vocabulary=("nucleus", "cell"), mode="instance")),
    ):
        summary = segment_image(
            image, tmp_path / f"{name}.zarr", task, BatchConfig(tile=256, halo=32), model=TINY
        )
        merged = zarr.open_array(summary.labels)[...]
        ids, counts = np.unique(merged[merged > 0], return_counts=True)
        table = zarr.open_array(summary.labels).attrs["napari_seem"]["classes"]
        assert sorted(ids.tolist()) == [r["id"] for r in table] and summary.objects == len(ids)
        assert [r["area"] for r in table] == counts.tolist()


def test_engine_entry_point_shared_predictor(tmp_path: Path) -> None:
    """The engine's job runner: a built predictor with an encode(tile) hook (the feature
    cache), progress(done, total) and an opened numpy image, on a region of plane ()."""
    from napari_seem.core.io import open_image

    pixels = render_window(4, 0, 0, 400, 400)
    source = open_image(pixels)
    encoded: list[tuple[int, int]] = []

    def encode(tile):  # type: ignore[no-untyped-def]
        encoded.append(tile.index)
        return source.read_rgb(*tile.outer)  # ThresholdPredictor "features" are the pixels

    progress: list[tuple[int, int]] = []
    summary = segment_image(
        source,
        tmp_path / "r.zarr",
        Task.from_options(vocabulary=["nucleus"]),
        BatchConfig(tile=200, halo=32, planes="all", region=(0, 0, 136, 400)),
        model=SharedPredictor(ThresholdPredictor(), encode=encode),
        reporter=pair_reporter(lambda d, t: progress.append((d, t))),
    )
    assert summary.status == "complete" and summary.tiles == 3
    assert sorted(encoded) == [(0, 0), (0, 1), (0, 2)]
    assert progress[-1] == (6, 6)
    merged = zarr.open_array(summary.labels)[...]
    truth = ndimage.label(pixels[:136] > 128)[0]
    assert merged[136:].max() == 0
    assert ((merged[:136] > 0) == (truth > 0)).all()


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, napari_seem.batch; from napari_seem.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'dask', 'distributed', 'zarr') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
