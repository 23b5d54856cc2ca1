from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from napari_seem.cli.main import main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "napari_seem.cli.main", *args], capture_output=True, text=True
    )


def test_help_lists_subcommands() -> None:
    proc = _run("--help")
    assert proc.returncode == 0
    assert "models" in proc.stdout


def test_models_lists_variants(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("seem-focalt-v1", "seem-focall-v1", "seem-samvitb-v1", "seem-samvitl-v1"):
        assert name in out


def test_models_download_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    proc = _run("models", "download", "seem-focalt-v1")
    assert proc.returncode == 2
    assert "napari-seem: error:" in proc.stderr and "--checkpoint" in proc.stderr


def test_demo_writes_labels_and_overlay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import imageio.v3 as iio
    import numpy as np
    import zarr

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--clicks", "3", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    # the default is the shipped seem-lite: trained weights, masks that match the nuclei
    assert "RANDOM weights" not in captured.err and "with seem-lite" in captured.out
    iou = float(captured.out.split("mean IoU vs truth")[1].split()[0])
    assert iou >= 0.6, captured.out
    labels = zarr.open_array(str(out / "labels.zarr"), mode="r")
    assert labels.dtype == np.uint32 and labels.shape == (384, 512)
    table = labels.attrs["napari_seem"]["classes"]
    assert [row["id"] for row in table] == [1, 2, 3]
    assert labels.attrs["napari_seem"]["weights"] == "shipped"
    overlay = iio.imread(out / "overlay.png")
    assert overlay.shape == (384, 512, 3)
    # a second run refuses to overwrite without --overwrite, and says so
    assert main(["demo", "--out", str(out), "--clicks", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_demo_with_a_random_configuration_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tiny"
    assert main(["demo", "--out", str(out), "--clicks", "1", "--variant", "seem-tiny-focal"]) == 0
    assert "RANDOM weights" in capsys.readouterr().err


def test_demo_official_variant_without_weights_is_explained(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setenv("NAPARI_SEEM_CACHE", str(tmp_path / "cache"))
    assert main(["demo", "--out", str(tmp_path / "o"), "--variant", "seem-focalt-v1"]) == 2
    assert "models download seem-focalt-v1" in capsys.readouterr().err


def test_serve_passes_cache_dir_and_upload_budget_to_the_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    import napari_seem.remote.server as server

    seen: dict[str, object] = {}
    real_create_app = server.create_app

    def create_app(engine: object, **kwargs: object) -> object:
        seen["cache_dir"] = engine.cache_dir  # type: ignore[attr-defined]
        seen["max_upload_bytes"] = engine.max_upload_bytes  # type: ignore[attr-defined]
        return real_create_app(engine, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(server, "create_app", create_app)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    cache = tmp_path / "features"
    args = ["serve", "--variant", "seem-tiny-focal", "--device", "cpu", "--tile", "128"]
    assert (
        main([*args, "--halo", "16", "--cache-dir", str(cache), "--max-upload-bytes", "1234"]) == 0
    )
    assert seen == {"cache_dir": cache, "max_upload_bytes": 1234}
    assert "listening on http://127.0.0.1:" in capsys.readouterr().out
    assert main([*args, "--halo", "16"]) == 0  # defaults: memory cache, the engine's budget
    from napari_seem.engine.sessions import DEFAULT_MAX_UPLOAD_BYTES

    assert seen == {"cache_dir": None, "max_upload_bytes": DEFAULT_MAX_UPLOAD_BYTES}
    with pytest.raises(SystemExit):
        main([*args, "--max-upload-bytes", "0"])
    assert "must be at least 1" in capsys.readouterr().err
