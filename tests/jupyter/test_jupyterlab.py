"""SeemApp in a real JupyterLab, driven by headless Debian Chromium.

The test starts ``jupyter lab`` on 127.0.0.1 (a free port, a token, a temporary root
folder; the widget managers ship inside the ``jupyterlab_widgets`` and ``anywidget`` wheels,
nothing comes from a CDN), opens a notebook, runs a cell that shows a ``SeemApp``, clicks a
nucleus on the canvas, presses Segment, checks the preview drawn in the browser, presses
Commit, and checks ``app.results`` / ``app.labels`` in the kernel (a cell prints them as
JSON). The model is ``NAPARI_SEEM_VARIANT`` (the tiny random model unless set; the docs
screenshot uses the shipped seem-lite). ``NAPARI_SEEM_SCREENSHOTS=1`` saves the notebook
panel to ``docs/images/jupyter_widget.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from napari_seem.datasets.synthetic import synthetic_nuclei
from tests.jupyter.pages import chromium_page, pixel, screen_xy, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]
pytest.importorskip("jupyterlab")

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
SHAPE = (288, 384)
SCENE = "synthetic_nuclei((288, 384), n_objects=24, seed=3)"
TOKEN = "napari-seem-test-token"

CELLS = [
    # 0: the app
    f"""import json
import numpy as np
from napari_seem.datasets.synthetic import synthetic_nuclei
from napari_seem.jupyter import SeemApp

scene = {SCENE}  # touching nuclei of two sizes
app = SeemApp(scene.image, vocabulary=["nucleus"], name="nuclei", height=420)
app.canvas.live = False  # segment when Segment is pressed
app""",
    # 1: the preview the browser shows, seen from Python
    """app.canvas.wait()
found = app.canvas.preview.objects[0].full(scene.image.shape)
click = app.prompts.objects[0].visual[0].coords[0].tolist()
inside = np.argwhere(found)
far = inside[np.argmax(np.abs(inside - click).sum(axis=1))].tolist()
print("RESULT", json.dumps({"area": int(found.sum()), "far": far, "click": click}))""",
    # 2: after Commit
    """app.canvas.wait()
labels = np.asarray(app.labels)
committed = app.results.objects[0].full(scene.image.shape)
row = app.results.class_table()[0]
print("RESULT", json.dumps({
    "max": int(labels.max()), "objects": len(app.results),
    "same": bool(np.array_equal(labels == 1, committed)),
    "class_name": row["class_name"], "model": app.model_choice.value, "error": app.canvas.error,
}))""",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _notebook(path: Path) -> None:
    import nbformat

    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    book.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    nbformat.write(book, path)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[str]:
    """A JupyterLab on 127.0.0.1 serving ``tmp_path/root``; yields the notebook's URL."""
    root = tmp_path / "root"
    root.mkdir()
    _notebook(root / "seem.ipynb")
    port = _free_port()
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    env["JUPYTER_CONFIG_DIR"] = str(tmp_path / "config")  # no user settings, no news
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), *sys.path])
    log = (tmp_path / "lab.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
            "--ip", "127.0.0.1", "--port", str(port), f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={root}", f"--LabApp.workspaces_dir={tmp_path / 'ws'}",
            "--LabApp.news_url=None", "--LabApp.check_for_updates_class="
            "jupyterlab.NeverCheckForUpdate",
        ],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"jupyter lab exited: {(tmp_path / 'lab.log').read_text()}")
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_for(up, "jupyter lab to answer", timeout=90)
        yield f"{base}/lab/tree/seem.ipynb?token={TOKEN}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def _run_cell(page: Any, index: int) -> None:
    cell = page.locator(".jp-Notebook .jp-CodeCell").nth(index)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")


def _result(page: Any, index: int, timeout: float = 120.0) -> dict[str, Any]:
    """The JSON a cell printed after ``RESULT`` (fails on a traceback in that cell)."""
    cell = page.locator(".jp-Notebook .jp-CodeCell").nth(index)

    def printed() -> str | None:
        text = cell.locator(".jp-OutputArea").inner_text()
        if "Traceback" in text or "Error" in text.split("RESULT")[0]:
            raise AssertionError(f"cell {index} failed:\n{text}")
        return text.split("RESULT", 1)[1].strip() if "RESULT" in text else None

    return dict(json.loads(wait_for(printed, f"the output of cell {index}", timeout)))


def test_seem_app_in_jupyterlab(lab: str, tmp_path: Path) -> None:
    scene = synthetic_nuclei(SHAPE, n_objects=24, seed=3)
    with chromium_page(1600, 1000) as page:
        page.goto(lab)
        page.locator(".jp-Notebook .jp-CodeCell").first.wait_for(timeout=90_000)
        statusbar = page.locator("#jp-main-statusbar")
        wait_for(lambda: "Idle" in statusbar.inner_text(), "the kernel to start", 90)
        no_news = page.get_by_role("button", name="No", exact=True)
        if no_news.count():
            no_news.first.click()  # the "official Jupyter news?" toast
        _run_cell(page, 0)
        app = page.locator(".jp-Notebook .jp-CodeCell").nth(0).locator(".seem-root")
        app.locator("canvas.seem-canvas").wait_for(timeout=120_000)
        page.wait_for_timeout(500)  # first layout + fit

        # click inside nucleus 1 (ground truth) and press Segment
        rows, cols = np.nonzero(scene.labels == 1)
        row, col = int(np.median(rows)), int(np.median(cols))
        x, y = screen_xy(page, SHAPE, row, col, within=app)
        assert pixel(page, x, y, within=app)[0] == pixel(page, x, y, within=app)[2]  # grey
        page.mouse.click(x, y)
        app.get_by_role("button", name="Segment", exact=True).click()
        status = app.locator(".seem-status")
        wait_for(lambda: "mask" in status.inner_text(), "the preview in the status line", 120)

        # the kernel's preview, and the browser draws it (a mask pixel far from the click)
        _run_cell(page, 1)
        preview = _result(page, 1)
        assert preview["area"] > 0
        assert abs(preview["click"][0] - row) <= 1 and abs(preview["click"][1] - col) <= 1
        page.wait_for_timeout(300)
        r, g, b, _ = pixel(page, *screen_xy(page, SHAPE, *preview["far"], within=app), within=app)
        assert r - b > 60 and g - b > 40, f"no yellow preview at a mask pixel: {(r, g, b)}"

        # Commit: painted in the kernel, listed in the legend
        app.get_by_role("button", name="Commit", exact=True).click()
        legend = app.locator(".seem-legend")
        wait_for(lambda: "× 1" in legend.inner_text(), "the committed object in the legend", 60)
        _run_cell(page, 2)
        after = _result(page, 2)
        assert after["error"] == ""
        assert after["max"] == 1 and after["objects"] == 1 and after["same"]
        assert after["class_name"] != "background"
        variant = os.environ.get("NAPARI_SEEM_VARIANT")
        if variant:
            assert variant in after["model"]

        if os.environ.get("NAPARI_SEEM_SCREENSHOTS") == "1":
            try:
                _docs_screenshot(page, app, scene, tmp_path)
            except Exception:
                page.screenshot(path=str(tmp_path / "failed.png"))  # what the page showed
                raise


def _docs_screenshot(page: Any, app: Any, scene: Any, tmp_path: Path) -> None:
    """The test's commit undone, a nucleus committed as "nucleus", another left as the
    preview; the cell saved as a picture."""
    app.get_by_role("button", name="Undo", exact=True).click()  # the test's commit goes
    wait_for(lambda: "× 1" not in app.locator(".seem-legend").inner_text(), "the undo", 60)
    app.get_by_placeholder("text prompt, e.g. nucleus").fill("nucleus")  # names the objects
    legend = app.locator(".seem-legend")
    for label in (5, 9):
        rows, cols = np.nonzero(scene.labels == label)
        page.mouse.click(*screen_xy(page, SHAPE, np.median(rows), np.median(cols), within=app))
        page.wait_for_timeout(300)  # the click reaches the kernel
        app.get_by_role("button", name="Segment", exact=True).click()
        page.wait_for_timeout(200)
        wait_for(lambda: "mask" in app.locator(".seem-status").inner_text(), "a preview", 120)
        if label == 5:
            app.get_by_role("button", name="Commit", exact=True).click()
            wait_for(lambda: "nucleus × 1" in legend.inner_text(), "the commit", 60)
    page.wait_for_timeout(500)
    shot = tmp_path / "jupyter_widget.png"
    page.locator(".jp-Notebook .jp-CodeCell").nth(0).screenshot(path=str(shot))
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, DOCS_IMAGES / "jupyter_widget.png")
    time.sleep(0.1)
