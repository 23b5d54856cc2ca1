"""The npe2 manifest resolves from the installed package and every python_name imports."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
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


def test_wheel_ships_the_manifest(built_wheel: Path, tmp_path: Path) -> None:
    """The napari.manifest entry point resolves from a built wheel, not only the source tree."""
    import zipfile

    from npe2 import PluginManifest

    wheel = built_wheel
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "napari-seem = napari_seem:napari.yaml" in zf.read(entry_points).decode()
        manifest = tmp_path / "napari.yaml"
        manifest.write_bytes(zf.read("napari_seem/napari.yaml"))
        assert "napari_seem/model/data/prompt_templates.json" in names
    assert PluginManifest.from_file(manifest).name == "napari-seem"


def test_manifest_contributions() -> None:
    """Plugins menu widget, the Layers > Segment menu, reader, writers and both samples."""
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(ROOT / "src" / "napari_seem" / "napari.yaml")
    contributions = manifest.contributions
    (widget,) = contributions.widgets or []
    assert widget.display_name == "SEEM"
    segment_menu = (contributions.menus or {})["napari/layers/segment"]
    assert [item.command for item in segment_menu] == [widget.command]  # type: ignore[union-attr]
    (reader,) = contributions.readers or []
    assert reader.accepts_directories and "*.zarr" in reader.filename_patterns
    writers = {w.display_name: w for w in contributions.writers or []}
    assert {tuple(w.layer_types) for w in writers.values()} == {("labels",)}
    assert [".zarr"] in [w.filename_extensions for w in writers.values()]
    assert [".tif", ".tiff"] in [w.filename_extensions for w in writers.values()]
    keys = [s.key for s in contributions.sample_data or []]
    assert keys == ["synthetic-nuclei", "synthetic-land-cover"]


def test_land_cover_sample_is_seeded_multiband() -> None:
    from napari_seem._napari.sample_data import (
        LAND_COVER_CLASSES,
        land_cover_scene,
        synthetic_land_cover_sample,
    )

    (bands, bands_meta, _), (rgb, rgb_meta, _), (labels, labels_meta, kind) = (
        synthetic_land_cover_sample()
    )
    assert bands.shape == (4, 384, 512) and bands.dtype.name == "uint16"
    assert bands_meta["channel_axis"] == 0 and len(bands_meta["name"]) == 4
    assert rgb.shape == (384, 512, 3) and rgb_meta["rgb"] is True
    assert kind == "labels" and set(np.unique(labels)) == set(LAND_COVER_CLASSES)
    assert labels_meta["features"]["class_name"].iloc[0] == "water"
    np.testing.assert_array_equal(land_cover_scene(seed=0).bands, bands)  # seeded
