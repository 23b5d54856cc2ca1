"""Helpers for driving the widget's canvas in Debian's headless Chromium (Playwright).

Used by the bridge-page test and the real-JupyterLab test. Chromium is ``/usr/bin/chromium``
(never ``playwright install``). Coordinates: level-0 ``(row, col)`` pixels of the image on
the canvas, page pixels for the mouse.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

__all__ = ["ARGS", "CHROMIUM", "chromium_page", "pixel", "screen_xy", "wait_for"]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll ``condition()`` until it is truthy; its value, or AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def chromium_page(width: int = 960, height: int = 700) -> Iterator[Any]:
    """A Playwright page in headless Debian Chromium (skips without Playwright/Chromium)."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.skip("needs Debian chromium at /usr/bin/chromium (scripts/test.sh installs it)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def screen_xy(
    page: Any, shape: tuple[int, int], row: float, col: float, *, within: Any = None
) -> tuple[float, float]:
    """Page coordinates of level-0 pixel ``(row, col)`` on the fitted ``canvas.seem-canvas``
    (the first one, or the one inside the locator ``within``)."""
    canvas = (within or page).locator("canvas.seem-canvas").first
    box = canvas.bounding_box()
    cw, ch = canvas.evaluate("c => [c.width, c.height]")
    h, w = shape
    scale = min(cw / w, ch / h)
    ox, oy = (w - cw / scale) / 2, (h - ch / scale) / 2
    sx, sy = (col + 0.5 - ox) * scale, (row + 0.5 - oy) * scale
    return box["x"] + sx * box["width"] / cw, box["y"] + sy * box["height"] / ch


def pixel(page: Any, x: float, y: float, *, within: Any = None) -> list[int]:
    """The RGBA of the canvas pixel under page point ``(x, y)``."""
    canvas = (within or page).locator("canvas.seem-canvas").first
    return list(
        canvas.evaluate(
            """(c, [x, y]) => {
              const r = c.getBoundingClientRect();
              const px = Math.round((x - r.left) * c.width / r.width);
              const py = Math.round((y - r.top) * c.height / r.height);
              return Array.from(c.getContext('2d').getImageData(px, py, 1, 1).data);
            }""",
            [x, y],
        )
    )
