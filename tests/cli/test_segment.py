"""``napari-seem segment``: bad inputs fail before any work (exit 2), a killed run resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_seem.batch.store import MANIFEST_NAME
from napari_seem.cli.main import main
from tests.batch.helpers import lazy_zarr

RUN = ["--variant", "seem-tiny-focal", "--device", "cpu", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lazy_zarr(tmp_path_factory.mktemp("cli") / "img.zarr", (900, 800), chunk=300, seed=2)


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], message: str) -> None:
    start = time.perf_counter()
    assert main(["segment", *argv, *RUN]) == 2
    err = capsys.readouterr().err
    assert err.startswith("napari-seem: error: ") and message in err, err
    assert "RANDOM weights" not in err  # failed before the run started
    assert time.perf_counter() - start < 5


def test_bad_inputs_fail_before_any_work(
    image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.zarr"
    _fails(
        [str(tmp_path / "nope.zarr"), "--out", str(out), "--text", "cell"],
        capsys,
        "no such file or directory",
    )
    _fails(
        [str(image), "--out", str(out), "--text", "cell", "--bands", "0,0,3"],
        capsys,
        "band index 3 is out of range; this image has 1 channel(s), use 0..0",
    )
    _fails(
        [str(image), "--out", str(out), "--text", "cell", "--bands", "0,1"],
        capsys,
        "give exactly three channel indices",
    )
    _fails([str(image), "--out", str(out)], capsys, "give exactly one of vocabulary")
    _fails(
        [str(image), "--out", str(out), "--text", "cell", "--planes", "2"],
        capsys,
        "2-D image without planes",
    )
    assert not out.exists()
    out.mkdir()
    (out / "data.txt").write_text("someone else's")
    _fails(
        [str(image), "--out", str(out), "--text", "cell"],
        capsys,
        "exists and is not a napari-seem run; pass --overwrite",
    )
    assert (out / "data.txt").read_text() == "someone else's"
    bad = tmp_path / "prompts.csv"
    bad.write_text("kind,row,col\npoint,10,10\ncircle,5,5\n")
    _fails(
        [str(image), "--out", str(tmp_path / "p.zarr"), "--prompts", str(bad)],
        capsys,
        f"{bad}:3: kind must be 'point' or 'box'; got 'circle'",
    )
    bad.write_text("kind,row,col\npoint,10,ten\n")
    _fails(
        [str(image), "--out", str(tmp_path / "p.zarr"), "--prompts", str(bad)],
        capsys,
        "col must be a number; got 'ten'",
    )
    bad.write_text("kind,row,col\npoint,5000,10\n")
    _fails(
        [str(image), "--out", str(tmp_path / "p.zarr"), "--prompts", str(bad)],
        capsys,
        "a prompt lies outside the image",
    )
    _fails(
        [str(image), "--out", str(tmp_path / "p.zarr"), "--text", "x", "--workers", "2"],
        capsys,
        "--workers sizes a --scheduler local cluster",
    )


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_labels(
    image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(image), "--text", "a round cell", "--tile", "256", "--halo", "32", *RUN]
    assert main(["segment", *args, "--out", str(tmp_path / "ref.zarr")]) == 0
    capsys.readouterr()

    out = tmp_path / "killed.zarr"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "napari_seem.cli.main", "segment", *args, "--out", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    manifest = out / MANIFEST_NAME
    deadline = time.monotonic() + 120
    finished = 0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if manifest.exists():
                finished = len(json.loads(manifest.read_text())["done"].get("tiles", []))
                if finished >= 6:
                    break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    data = json.loads(manifest.read_text())
    assert data["status"] == "running" and 6 <= len(data["done"]["tiles"]) < 36, data["done"]
    assert zarr.open_array(str(out)).attrs["napari_seem"]["complete"] is False

    assert main(["segment", *args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    resumed = int(printed.split("(")[1].split(" resumed")[0])
    assert resumed >= 6
    ref = zarr.open_array(str(tmp_path / "ref.zarr"))[...]
    np.testing.assert_array_equal(zarr.open_array(str(out))[...], ref)
    assert ref.max() > 0
    assert (tmp_path / "killed.classes.csv").read_text() == (
        tmp_path / "ref.classes.csv"
    ).read_text()
    assert not list(out.rglob("*.partial"))
    # a second run of the finished command has nothing to do
    assert main(["segment", *args, "--out", str(out)]) == 0
    assert "already complete" in capsys.readouterr().out


def test_prompts_csv_run(image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tmp_path / "p.csv"
    prompts.write_text(
        "object,kind,row,col,row_min,col_min,row_max,col_max,positive,label\n"
        "a,point,100,100,,,,,1,nucleus\n"
        "a,point,110,120,,,,,0,nucleus\n"
        "b,box,,,400,300,470,380,,cell\n"
    )
    out = tmp_path / "p.zarr"
    argv = [
        str(image),
        "--out",
        str(out),
        "--prompts",
        str(prompts),
        "--tile",
        "256",
        "--halo",
        "32",
        "--min-area",
        "1",
        *RUN,
    ]
    assert main(["segment", *argv]) == 0
    labels = zarr.open_array(str(out))[...]
    assert set(np.unique(labels).tolist()) <= {0, 1, 2}
    table = zarr.open_array(str(out)).attrs["napari_seem"]["classes"]
    names = {row["id"]: row["class_name"] for row in table}
    assert names.get(1, "nucleus") == "nucleus" and names.get(2, "cell") == "cell"
