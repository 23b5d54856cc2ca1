"""What a new user meets in the first hour (issue 17), each checked by running the command:
no false random-weights note, an aligned model list, an honest demo class table, axes that
are printed or asked for, one-line device errors, a resume hint on Ctrl-C, PNG / JPEG inputs,
one ``--variant`` spelling, a readable ``eval --help``, a missing extra named with its pip
command, and documentation links that stay inside the repository."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import zarr

from napari_seem.batch.store import MANIFEST_NAME
from napari_seem.cli.main import commit_in_order, main
from tests.batch.helpers import lazy_zarr

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--variant", "seem-tiny-focal", "--device", "cpu", "--threads", "1", "--no-progress"]


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "napari_seem.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def _one_point_csv(path: Path, row: int, col: int) -> Path:
    path.write_text(
        "object,kind,row,col,row_min,col_min,row_max,col_max,positive,label\n"
        f"a,point,{row},{col},,,,,1,nucleus\n"
    )
    return path


# --- item 2: the shipped model is not called random; the model list -------------------------


def test_models_says_seem_lite_ships_in_aligned_columns(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = lines[: lines.index("")]
    assert "once shipped" not in "\n".join(table)
    lite = next(line for line in table if line.startswith("seem-lite "))
    assert "shipped in the package" in lite
    # every column starts at the same character on every row
    header = table[0]
    starts = [header.index("backbone"), header.index("weights")]
    for line in table[1:]:
        for start in starts:
            assert line[start - 2 : start] == "  " and line[start] != " ", (line, start)


@pytest.mark.slow
def test_segment_with_the_shipped_model_prints_no_random_note(tmp_path: Path) -> None:
    from napari_seem.datasets.synthetic import synthetic_nuclei

    scene = synthetic_nuclei((192, 224), seed=3)
    png = tmp_path / "nuclei.png"  # item 5: a PNG input simply works
    iio.imwrite(png, scene.image)
    from scipy import ndimage

    r, c = ndimage.center_of_mass(scene.labels == 1)
    prompts = _one_point_csv(tmp_path / "p.csv", round(r), round(c))
    out = tmp_path / "o.zarr"
    proc = _cli(
        "segment", str(png), "--out", str(out), "--prompts", str(prompts), "--device", "cpu",
        "--no-progress", "--min-area", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "RANDOM" not in proc.stderr
    assert "read as axes 'yx'" in proc.stderr and "metadata" in proc.stderr
    labels = zarr.open_array(str(out))[...]
    assert labels.shape == scene.labels.shape and labels.max() == 1  # one object
    proc = _cli(
        "segment", str(png), "--out", str(tmp_path / "t.zarr"), "--prompts", str(prompts),
        *TINY,
    )  # fmt: skip
    assert proc.returncode == 0 and "RANDOM weights" in proc.stderr  # still said when true


# --- item 4: the demo's class table -----------------------------------------------------------


def test_commits_keep_earlier_objects_and_the_table_matches_the_array() -> None:
    first = np.zeros((20, 20), bool)
    first[2:10, 2:10] = True
    second = np.zeros((20, 20), bool)
    second[5:15, 5:15] = True  # overlaps the first
    inside = np.zeros((20, 20), bool)
    inside[3:5, 3:5] = True  # entirely inside the first
    rows = [{"id": i, "class_name": "nucleus", "area": -1, "bbox": None} for i in (1, 2, 3)]
    labels, table = commit_in_order([first, second, inside], rows)
    assert (labels[first] == 1).all()  # the earlier object keeps every pixel
    assert [row["id"] for row in table] == [1, 2]  # nothing of id 3 is left: no row
    for row in table:
        where = np.argwhere(labels == row["id"])
        assert row["area"] == len(where)
        assert row["bbox"] == [*where.min(0).tolist(), *(where.max(0) + 1).tolist()]
    over, over_table = commit_in_order([first, second], rows[:2], paint_over=True)
    assert (over[second] == 2).all() and over_table[0]["area"] == 64 - 25  # asked for


@pytest.mark.slow
def test_demo_table_names_no_clicked_object_background_and_reruns(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    for _ in range(2):  # the quick start's command, twice in a row
        proc = _cli("demo", "--out", str(out), "--device", "cpu", "--overwrite")
        assert proc.returncode == 0, proc.stderr
    labels = zarr.open_array(str(out / "labels.zarr"), mode="r")
    array = labels[...]
    table = labels.attrs["napari_seem"]["classes"]
    assert len(table) == 8
    assert {row["class_name"] for row in table} == {"nucleus"}
    ids, counts = np.unique(array[array > 0], return_counts=True)
    assert {row["id"]: row["area"] for row in table} == dict(
        zip(ids.tolist(), counts.tolist(), strict=True)
    )
    assert "background" not in proc.stdout and re.search(r"^\s+8\s+nucleus", proc.stdout, re.M)


# --- item 5: axes, devices, Ctrl-C, eval's options and help -----------------------------------


def test_ambiguous_stacks_are_refused_and_assumptions_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack3 = tmp_path / "three.tif"
    out = str(tmp_path / "o.zarr")
    for photometric, planar in (("rgb", "separate"), ("minisblack", None)):  # tifffile's ways
        tifffile.imwrite(
            stack3, np.zeros((3, 64, 64), np.uint8), photometric=photometric, planarconfig=planar
        )
        assert main(["segment", str(stack3), "--out", out, "--text", "cell", *TINY]) == 2
        err = capsys.readouterr().err
        assert "ambiguous" in err and "--axes cyx" in err and "--axes zyx" in err
        assert len(err.strip().splitlines()) == 1
    # --axes decides; a wrong one is a one-line error too
    assert main(["segment", str(stack3), "--out", out, "--text", "x", "--axes", "yx", *TINY]) == 2
    assert "axes 'yx' name 2 dimensions" in capsys.readouterr().err
    stack5 = tmp_path / "five.zarr"
    zarr.create_array(store=str(stack5), shape=(5, 64, 64), chunks=(1, 32, 32), dtype="uint8")[
        ...
    ] = np.random.default_rng(1).integers(0, 255, (5, 64, 64), dtype=np.uint8)
    prompts = _one_point_csv(tmp_path / "p.csv", 20, 20)
    argv = ["segment", str(stack5), "--out", out, "--prompts", str(prompts), "--tile", "64"]
    assert main([*argv, "--halo", "8", "--planes", "0", *TINY]) == 0
    err = capsys.readouterr().err
    assert "read as axes 'zyx' (5 z planes, 64 x 64, grey; inferred from the shape" in err
    out2 = str(tmp_path / "o2.zarr")
    argv = ["segment", str(stack3), "--out", out2, "--prompts", str(prompts), "--tile", "64"]
    assert main([*argv, "--halo", "8", "--axes", "zyx", "--planes", "1", *TINY]) == 0
    assert "read as axes 'zyx' (3 z planes, 64 x 64, grey; as given" in capsys.readouterr().err
    assert zarr.open_array(out2).shape == (3, 64, 64)


def test_a_missing_gpu_is_a_one_line_error(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    image = tmp_path / "x.png"
    iio.imwrite(image, np.zeros((32, 32), np.uint8))
    for device in ("cuda", "gpu", "cuda:1"):
        for argv in (
            ["demo", "--out", str(tmp_path / "d"), "--device", device],
            ["segment", str(image), "--out", str(tmp_path / "s.zarr"), "--text", "cell",
             "--device", device],
            ["eval", "--dataset", "bbbc007-heldout", "--device", device],
        ):  # fmt: skip
            proc = _cli(*argv, timeout=120)
            assert proc.returncode == 2, proc.stderr
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and "no CUDA GPU is available" in lines[0], proc.stderr
    proc = _cli("demo", "--out", str(tmp_path / "d"), "--device", "tpu")
    assert proc.returncode == 2 and "unknown device" in proc.stderr


@pytest.mark.slow
def test_ctrl_c_says_run_the_same_command_again(tmp_path: Path) -> None:
    # big enough (144 tiles) that an idle machine cannot finish the run before the SIGINT lands
    image = lazy_zarr(tmp_path / "img.zarr", (3000, 3000), chunk=500, seed=2)
    out = tmp_path / "o.zarr"
    args = [str(image), "--out", str(out), "--text", "a round cell", "--tile", "256"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "napari_seem.cli", "segment", *args, "--halo", "32", *TINY],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    manifest = out / MANIFEST_NAME
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if manifest.exists() and json.loads(manifest.read_text())["done"].get("tiles"):
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "napari-seem: interrupted; run the same command again to resume" in err
    assert "Traceback" not in err


def test_eval_takes_variant_and_keeps_model_as_an_alias(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--dataset", "bbbc007-heldout", "--out", str(tmp_path / "e")]
    assert main(["eval", *data, "--variant", "seem-tiny-focal"]) == 2
    assert "seem-tiny-focal: no trained weights" in capsys.readouterr().err
    assert main(["eval", *data, "--model", "seem-tiny-focal"]) == 2
    err = capsys.readouterr().err
    assert "--model is deprecated; use --variant" in err and "seem-tiny-focal: no trained" in err
    assert main(["eval", *data, "--model", "seem-lite", "--variant", "seem-tiny-focal"]) == 2
    assert "disagree" in capsys.readouterr().err


def test_eval_help_is_plain_text() -> None:
    proc = _cli("eval", "--help")
    assert proc.returncode == 0
    assert "::" not in proc.stdout and "``" not in proc.stdout
    assert not re.search(r"\\\s*$", proc.stdout, re.M)  # no shell line continuations
    assert "--variant seem-focalt-v1" in proc.stdout and "--variant VARIANT" in proc.stdout
    for line in proc.stdout.splitlines():
        if line.strip().startswith("napari-seem eval"):
            assert line.startswith("  napari-seem eval ")


# --- item 3: a missing extra says which pip command to run ------------------------------------


def test_serve_without_the_server_extra_names_the_pip_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if it were not installed
    assert main(["serve", "--variant", "seem-tiny-focal", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("napari-seem: error: ") and len(err.strip().splitlines()) == 1
    assert "'server' extra" in err and 'pip install -e ".[server]"' in err


# --- links stay inside the repository ---------------------------------------------------------


def test_documentation_links_point_into_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "../shared/design" not in readme and 'pip install "napari-seem[napari]"' not in readme
    for target in re.findall(r"\]\(([^)#\s]+)\)", readme):
        if "://" not in target:
            assert (ROOT / target).exists(), target
    data_txt = (ROOT / "requirements-data.txt").read_text()
    for doc in re.findall(r"\b([\w/]+\.md)\b", data_txt):
        assert (ROOT / doc).is_file(), doc
    assert (ROOT / "docs" / "DATA.md").is_file() and (ROOT / "docs" / "ARCHITECTURE.md").is_file()
