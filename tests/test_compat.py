"""Old import paths of documented names keep working for one release, with a warning."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

MOVED = {
    "napari_seem.prompts": ("napari_seem.core.prompts", "Points"),
    "napari_seem.results": ("napari_seem.core.results", "SegmentationResult"),
    "napari_seem.rasterize": ("napari_seem.core.rasterize", "rasterize_prompts"),
    "napari_seem.tiling": ("napari_seem.core.tiling", "TileGrid"),
    "napari_seem.io": ("napari_seem.core.io", "open_image"),
    "napari_seem.weights": ("napari_seem.core.hub", "download_official"),
    "napari_seem.variants": ("napari_seem.core.variants", "seem_lite_shipped"),
    "napari_seem.export": ("napari_seem.core.export", "write_overlay_png"),
    "napari_seem.predictor": ("napari_seem.predict.predictor", "SeemPredictor"),
    "napari_seem.engine.client": ("napari_seem.remote.client", "SeemClient"),
    "napari_seem.engine.protocol": ("napari_seem.remote.protocol", "encode_array"),
    "napari_seem.engine.server": ("napari_seem.remote.server", "create_app"),
}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_resolves_the_same_object(old: str) -> None:
    new, name = MOVED[old]
    assert getattr(importlib.import_module(old), name) is getattr(
        importlib.import_module(new), name
    )
    assert name in dir(importlib.import_module(old))


def test_old_path_warns_where_it_is_imported() -> None:
    code = "import warnings; warnings.simplefilter('error')\nfrom napari_seem.prompts import Points"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 1
    assert "napari_seem.prompts moved to napari_seem.core.prompts" in run.stderr
    assert 'File "<string>", line 2' in run.stderr  # points at the user's import line
