"""The npe2 manifest resolves from the installed package and every python_name imports."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_root_manifest_is_the_packaged_one() -> None:
    root = ROOT / "napari.yaml"
    packaged = ROOT / "src" / "napari_seem" / "napari.yaml"
    assert root.read_text() == packaged.read_text()


def test_npe2_validate_with_imports() -> None:
    exe = shutil.which("npe2", path=os.path.dirname(sys.executable)) or shutil.which("npe2")
    if exe is None:
        pytest.skip("npe2 is not installed (it comes with the test extra)")
    proc = subprocess.run(
        [exe, "validate", "napari-seem", "--imports"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout


def test_sample_data_command_returns_layers() -> None:
    from napari_seem._napari.sample_data import synthetic_nuclei_sample

    (image, image_meta, kind), (labels, _, labels_kind) = synthetic_nuclei_sample()
    assert kind == "image" and labels_kind == "labels"
    assert image.shape == labels.shape and image.dtype.name == "uint8"
    assert labels.max() > 10
    assert image_meta["name"] == "synthetic nuclei"


def test_wheel_ships_the_manifest(tmp_path: Path) -> None:
    """The napari.manifest entry point resolves from a built wheel, not only the source tree."""
    import zipfile

    from npe2 import PluginManifest

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("napari_seem-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "napari-seem = napari_seem:napari.yaml" in zf.read(entry_points).decode()
        manifest = tmp_path / "napari.yaml"
        manifest.write_bytes(zf.read("napari_seem/napari.yaml"))
        assert "napari_seem/model/data/prompt_templates.json" in names
    assert PluginManifest.from_file(manifest).name == "napari-seem"
