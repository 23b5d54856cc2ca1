"""The widget's front-end in a real Chromium, wired to the real Python widget.

Playwright drives Debian's ``/usr/bin/chromium`` (never ``playwright install``); the page
is served on 127.0.0.1 by :mod:`tests.jupyter.harness`. The docs picture comes from the
real-JupyterLab test (:mod:`tests.jupyter.test_jupyterlab`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from napari_seem.datasets.synthetic import synthetic_nuclei
from tests.jupyter.pages import chromium_page, screen_xy, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def page() -> Iterator[Any]:
    with chromium_page(960, 700) as page:
        yield page


def _pixel(page: Any, x: float, y: float) -> list[int]:
    return page.evaluate(
        """([x, y]) => {
          const c = document.querySelector('canvas.seem-canvas');
          const r = c.getBoundingClientRect();
          const px = Math.round((x - r.left) * c.width / r.width);
          const py = Math.round((y - r.top) * c.height / r.height);
          return Array.from(c.getContext('2d').getImageData(px, py, 1, 1).data);
        }""",
        [x, y],
    )


def test_click_reaches_python_and_mask_is_drawn(page: Any, tmp_path: Path) -> None:
    from napari_seem.jupyter import SeemWidget
    from tests.jupyter.harness import WidgetBridge

    scene = synthetic_nuclei((288, 384), n_objects=24, seed=3)
    model = os.environ.get("NAPARI_SEEM_VARIANT", "seem-tiny-focal")
    widget = SeemWidget(scene.image, model=model, name="nuclei", vocabulary=["nucleus"])
    widget.live = True
    bridge = WidgetBridge(widget)
    url = bridge.start()
    try:
        page.goto(url)
        page.wait_for_function("window.seemReady === true", timeout=20000)
        page.wait_for_timeout(300)  # first layout + fit
        # a pixel inside nucleus 1 (ground truth), as the user would click it
        rows, cols = np.nonzero(scene.labels == 1)
        row, col = int(np.median(rows)), int(np.median(cols))
        x, y = screen_xy(page, scene.image.shape, row, col)
        before = _pixel(page, x, y)
        page.mouse.click(x, y)

        # the click arrived in Python in level-0 pixels
        prompts = wait_for(lambda: widget.prompts.objects, "the click in widget.prompts")
        clicks = prompts[0].visual[0]
        assert clicks.coords.shape == (1, 2) and bool(clicks.positive[0])
        assert abs(clicks.coords[0, 0] - row) <= 1.0 and abs(clicks.coords[0, 1] - col) <= 1.0

        # live mode segments; the mask comes back and is drawn over the clicked pixel
        wait_for(lambda: widget.preview is not None, "the preview mask", timeout=90)
        widget.wait()
        mask = widget.preview.objects[0].full(scene.image.shape)  # type: ignore[union-attr]
        inside = np.argwhere(mask)
        assert len(inside), "the model returned an empty mask"
        # a mask pixel away from the clicked point (whose marker covers the canvas there)
        far = inside[np.argmax(np.abs(inside - [row, col]).sum(axis=1))]
        mx, my = screen_xy(page, scene.image.shape, float(far[0]), float(far[1]))
        page.wait_for_function(
            "() => document.querySelector('.seem-status').textContent.includes('mask')",
            timeout=20000,
        )
        page.wait_for_timeout(200)
        r, g, b, _ = _pixel(page, mx, my)
        assert r - b > 60 and g - b > 40, f"no yellow preview at the mask pixel: {(r, g, b)}"
        assert before[0] == before[2], "the image pixel under the click should be grey"

        # Shift-click: a negative click refines the same object
        page.keyboard.down("Shift")
        page.mouse.click(*screen_xy(page, scene.image.shape, 20, 360))
        page.keyboard.up("Shift")
        wait_for(lambda: len(widget.prompt_data) == 2, "the negative click")
        assert widget.prompt_data[-1]["positive"] is False
        wait_for(lambda: not widget.busy, "the refined mask", 90)
        widget.wait()
        assert widget.error == ""
        assert widget.prompts.objects[0].visual[0].positive.tolist() == [True, False]

        # Commit from the browser: labels are painted in Python and drawn in the canvas
        page.get_by_role("button", name="Commit").click()
        wait_for(lambda: int(np.asarray(widget.labels).max()) == 1, "the committed label")
        page.wait_for_function(
            "() => document.querySelector('.seem-legend').textContent.includes('× 1')",
            timeout=20000,
        )
        assert widget.prompt_data == [] and widget.preview is None
        committed = widget.results.objects[0].full(scene.image.shape)
        assert np.array_equal(np.asarray(widget.labels) == 1, committed)

        # a second object, left as a live preview for the screenshot
        rows, cols = np.nonzero(scene.labels == 5)
        page.mouse.click(*screen_xy(page, scene.image.shape, np.median(rows), np.median(cols)))
        wait_for(lambda: widget.preview is not None and not widget.busy, "the second mask", 90)
        page.wait_for_timeout(300)
        shot = tmp_path / "jupyter_widget.png"
        page.locator(".seem-root").screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        assert not bridge.errors, bridge.errors
    finally:
        bridge.stop()
        widget.close()
