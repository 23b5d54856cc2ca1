"""The sample data opens in a real napari viewer (Qt under Xvfb) and renders."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.qt


def test_open_sample_renders(make_napari_viewer: Any) -> None:
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-seem", "synthetic-nuclei")
    assert [layer.name for layer in viewer.layers] == [
        "synthetic nuclei",
        "synthetic nuclei (truth)",
    ]
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.ndim == 3 and shot.shape[-1] == 4
    # the canvas shows the image and the coloured labels, not a black frame
    assert shot[..., :3].std() > 5
    assert len(np.unique(shot[..., :3].reshape(-1, 3), axis=0)) > 50
