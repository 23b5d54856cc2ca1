"""The widget's front-end in a real Chromium, wired to the real Python widget.

Playwright drives Debian's ``/usr/bin/chromium`` (never ``playwright install``); the page
is served on 127.0.0.1 by :mod:`tests.jupyter.harness`. The docs picture comes from the
real-JupyterLab test (:mod:`tests.jupyter.test_jupyterlab`).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from napari_seem.datasets.synthetic import synthetic_nuclei

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def _wait(condition: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def page() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.skip("needs Debian chromium at /usr/bin/chromium (scripts/test.sh installs it)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 960, "height": 700})
        yield page
        browser.close()


def _screen_xy(page: Any, shape: tuple[int, int], row: float, col: float) -> tuple[float, float]:
    """Page coordinates of level-0 pixel (row, col) on the fitted canvas."""
    box = page.locator("canvas.seem-canvas").bounding_box()
    cw, ch = page.evaluate(
        "() => { const c = document.querySelector('canvas.seem-canvas');"
        " return [c.width, c.height]; }"
    )
    h, w = shape
    scale = min(cw / w, ch / h)
    ox, oy = (w - cw / scale) / 2, (h - ch / scale) / 2
    sx, sy = (col + 0.5 - ox) * scale, (row + 0.5 - oy) * scale
    return box["x"] + sx * box["width"] / cw, box["y"] + sy * box["height"] / ch


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
        x, y = _screen_xy(page, scene.image.shape, row, col)
        before = _pixel(page, x, y)
        page.mouse.click(x, y)

        # the click arrived in Python in level-0 pixels
        prompts = _wait(lambda: widget.prompts.objects, "the click in widget.prompts")
        clicks = prompts[0].visual[0]
        assert clicks.coords.shape == (1, 2) and bool(clicks.positive[0])
        assert abs(clicks.coords[0, 0] - row) <= 1.0 and abs(clicks.coords[0, 1] - col) <= 1.0

        # live mode segments; the mask comes back and is drawn over the clicked pixel
        _wait(lambda: widget.preview is not None, "the preview mask", timeout=90)
        widget.wait()
        mask = widget.preview.objects[0].full(scene.image.shape)  # type: ignore[union-attr]
        inside = np.argwhere(mask)
        assert len(inside), "the model returned an empty mask"
        # a mask pixel away from the clicked point (whose marker covers the canvas there)
        far = inside[np.argmax(np.abs(inside - [row, col]).sum(axis=1))]
        mx, my = _screen_xy(page, scene.image.shape, float(far[0]), float(far[1]))
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
        page.mouse.click(*_screen_xy(page, scene.image.shape, 20, 360))
        page.keyboard.up("Shift")
        _wait(lambda: len(widget.prompt_data) == 2, "the negative click")
        assert widget.prompt_data[-1]["positive"] is False
        _wait(lambda: not widget.busy, "the refined mask", 90)
        widget.wait()
        assert widget.error == ""
        assert widget.prompts.objects[0].visual[0].positive.tolist() == [True, False]

        # Commit from the browser: labels are painted in Python and drawn in the canvas
        page.get_by_role("button", name="Commit").click()
        _wait(lambda: int(np.asarray(widget.labels).max()) == 1, "the committed label")
        page.wait_for_function(
            "() => document.querySelector('.seem-legend').textContent.includes('× 1')",
            timeout=20000,
        )
        assert widget.prompt_data == [] and widget.preview is None
        committed = widget.results.objects[0].full(scene.image.shape)
        assert np.array_equal(np.asarray(widget.labels) == 1, committed)

        # a second object, left as a live preview for the screenshot
        rows, cols = np.nonzero(scene.labels == 5)
        page.mouse.click(*_screen_xy(page, scene.image.shape, np.median(rows), np.median(cols)))
        _wait(lambda: widget.preview is not None and not widget.busy, "the second mask", 90)
        page.wait_for_timeout(300)
        shot = tmp_path / "jupyter_widget.png"
        page.locator(".seem-root").screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        assert not bridge.errors, bridge.errors
    finally:
        bridge.stop()
        widget.close()
