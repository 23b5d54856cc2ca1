"""``napari-seem eval``: data sources, outputs, and clear errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_seem.cli.main import main
from napari_seem.datasets.synthetic import synthetic_nuclei
from napari_seem.evaluation.data import EvalDataError, load_folder, load_pair


def _write_pairs(folder: Path, n: int = 2, size: int = 96) -> None:
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        scene = synthetic_nuclei((size, size), n_objects=4, seed=10 + k)
        tifffile.imwrite(folder / f"img{k}.tif", scene.image)
        tifffile.imwrite(folder / f"img{k}_labels.tif", scene.labels.astype(np.uint16))


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], message: str) -> None:
    assert main(["eval", *argv]) == 2
    err = capsys.readouterr().err
    assert "napari-seem: error:" in err and message in err, err


def test_baselines_on_a_tiff_folder_write_json_and_markdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_pairs(tmp_path / "data")
    out = tmp_path / "out"
    argv = ["eval", "--folder", str(tmp_path / "data"), "--class-name", "nucleus"]
    argv += ["--no-seem", "--max-objects", "2", "--max-clicks", "5", "--out", str(out)]
    assert main(argv) == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["images"] == ["img0", "img1"] and result["classes"] == ["nucleus"]
    assert result["methods"]["seem"] == {"skipped": "--no-seem"}
    ws = result["methods"]["watershed"]
    assert ws["interactive"]["objects"] == 4
    assert 1.0 <= ws["interactive"]["noc85"] <= 5.0
    assert 0.0 <= ws["everything"]["f1"] <= 1.0 and ws["text_iou"] is None
    md = (out / "eval.md").read_text()
    assert "| watershed |" in md and "NoC@85" in md and "AP50" in md
    assert "| watershed |" in capsys.readouterr().out


def test_seem_path_runs_with_random_weights_on_a_zarr_pair(tmp_path: Path) -> None:
    import zarr

    scene = synthetic_nuclei((64, 64), n_objects=3, seed=4)
    zarr.save_array(str(tmp_path / "image.zarr"), scene.image)
    zarr.save_array(str(tmp_path / "labels.zarr"), scene.labels.astype(np.uint32))
    item = load_pair(tmp_path / "image.zarr", tmp_path / "labels.zarr", class_name="nucleus")
    assert item.image.shape[:2] == (64, 64) and item.classes == ["nucleus"]
    out = tmp_path / "out"
    argv = ["eval", "--image", str(tmp_path / "image.zarr"), "--labels"]
    argv += [str(tmp_path / "labels.zarr"), "--class-name", "nucleus", "--model"]
    argv += ["seem-tiny-focal", "--allow-random-weights", "--device", "cpu"]
    argv += ["--max-objects", "1", "--max-clicks", "5", "--no-baselines", "--out", str(out)]
    assert main(argv) == 0
    seem = json.loads((out / "eval.json").read_text())["methods"]["seem"]
    assert seem["interactive"]["objects"] == 1
    assert set(seem["text_iou"]) == {"nucleus"} and 0.0 <= seem["text_iou"]["nucleus"] <= 1.0
    assert "watershed" not in json.loads((out / "eval.json").read_text())["methods"]
    assert "RANDOM" in (out / "eval.md").read_text()


def test_bad_inputs_fail_with_clear_messages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fails([], capsys, "give exactly one of")
    _fails(["--folder", str(tmp_path / "missing")], capsys, "is not a folder")
    (tmp_path / "empty").mkdir()
    _fails(["--folder", str(tmp_path / "empty")], capsys, "NAME_labels.tif")
    _fails(["--image", str(tmp_path / "a.tif")], capsys, "needs its labels")
    _fails(
        ["--image", str(tmp_path / "a.tif"), "--labels", str(tmp_path / "b.tif")],
        capsys,
        "does not exist",
    )
    _write_pairs(tmp_path / "data", n=1)
    data = ["--folder", str(tmp_path / "data")]
    _fails([*data, "--no-seem", "--no-baselines"], capsys, "nothing to run")
    _fails([*data, "--max-clicks", "3"], capsys, "at least 5")
    _fails([*data, "--model", "seem-tiny-focal"], capsys, "--allow-random-weights")
    _fails([*data, "--model", "nope", "--allow-random-weights"], capsys, "unknown model")


def test_bad_labels_are_refused(tmp_path: Path) -> None:
    import tifffile

    tifffile.imwrite(tmp_path / "x.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(tmp_path / "x_labels.tif", np.zeros((8, 8), np.uint16))
    with pytest.raises(EvalDataError, match="all background"):
        load_folder(tmp_path)
    tifffile.imwrite(tmp_path / "x_labels.tif", np.full((8, 8), 0.5, np.float32))
    with pytest.raises(EvalDataError, match="integers"):
        load_folder(tmp_path)
    tifffile.imwrite(tmp_path / "x_labels.tif", np.ones((9, 8), np.uint16))
    with pytest.raises(EvalDataError, match="differ in size"):
        load_folder(tmp_path)


def test_an_ambiguous_image_needs_axes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A (3, H, W) image could be three bands or three planes: refused with a message until
    ``--axes`` says which; with ``--axes cyx`` it is read as three bands (issue 17 item 5)."""
    import tifffile

    scene = synthetic_nuclei((64, 64), n_objects=3, seed=4)
    bands = np.stack([scene.image] * 3)  # (3, 64, 64), no axis metadata
    tifffile.imwrite(tmp_path / "img.tif", bands, photometric="minisblack")
    tifffile.imwrite(tmp_path / "img_labels.tif", scene.labels.astype(np.uint16))
    args = ["--image", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "img_labels.tif")]
    _fails([*args, "--no-seem"], capsys, "--axes")
    item = load_pair(tmp_path / "img.tif", tmp_path / "img_labels.tif", axes="cyx")
    assert item.image.shape == (64, 64, 3)
    np.testing.assert_array_equal(item.instances > 0, scene.labels > 0)
    out = tmp_path / "out"
    assert main(["eval", *args, "--axes", "cyx", "--no-seem", "--out", str(out)]) == 0
    assert json.loads((out / "eval.json").read_text())


def test_refine_and_find_scale_switch_the_predictor_and_name_it() -> None:
    """``napari-seem eval --refine off --find-scale on`` evaluates exactly that predictor
    (an ablation from the user's command) and says so in the report's model name."""
    from napari_seem.cli.eval import build_predictor

    predictor, label = build_predictor(
        "seem-tiny-focal", allow_random=True, refine="off", find_scale="on"
    )
    assert (predictor.interactive.refine, predictor.interactive.find_scale) == (False, True)
    assert label.endswith("RANDOM, refine off, find-scale on")
    predictor, label = build_predictor("seem-tiny-focal", allow_random=True)
    assert (predictor.interactive.refine, predictor.interactive.find_scale) == (False, False)
    assert "refine" not in label  # auto: the official variants' plain path
    with pytest.raises(ValueError, match="--refine takes auto, on or off"):
        build_predictor("seem-tiny-focal", allow_random=True, refine="yes")
