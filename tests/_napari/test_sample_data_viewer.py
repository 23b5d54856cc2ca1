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


def test_open_land_cover_sample(make_napari_viewer: Any) -> None:
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-seem", "synthetic-land-cover")
    names = [layer.name for layer in viewer.layers]
    assert "land cover (true colour)" in names and "land cover near-infrared" in names
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot[..., :3].std() > 5


def test_widget_is_in_plugins_and_layers_segment_menus(make_napari_viewer: Any) -> None:
    from napari._app_model import get_app_model

    make_napari_viewer(show=False)
    menus = get_app_model().menus

    def commands(menu: str) -> list[str]:
        return [item.command.id for item in menus.get_menu(menu) if hasattr(item, "command")]

    assert "napari-seem.make_seem_widget" in commands("napari/plugins")
    assert "napari-seem.make_seem_widget" in commands("napari/layers/segment")


def test_widget_opens_from_the_plugin_menu_command(make_napari_viewer: Any) -> None:
    viewer = make_napari_viewer(show=False)
    viewer.add_image(np.zeros((32, 32), np.uint8), name="img")
    _, widget = viewer.window.add_plugin_dock_widget("napari-seem", "SEEM")
    assert type(widget).__name__ == "SeemWidget"
    assert widget.image.value is viewer.layers["img"]
    assert widget._backend is None  # no model process until first use
