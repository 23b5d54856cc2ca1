"""Shared fixtures of the napari tests: one tiny model process per test module.

``seem`` gives a shown viewer (Xvfb) with the SEEM widget docked and connected to the
module's model process; ``shoot`` saves a canvas screenshot under the test's tmp dir. The
pictures in ``docs/images/`` come from ``docs/images/screenshots.py`` (the shipped model),
never from these tests (the tiny random model).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from napari_seem._napari.backend import Backend, ModelChoice

    readable = tmp_path_factory.mktemp("readable")  # images tests open BY PATH live here
    choice = ModelChoice(
        variant="seem-tiny-focal", tile=256, halo=32, device="cpu", read_roots=(str(readable),)
    )
    started = Backend.start(choice)
    started.readable = readable  # type: ignore[attr-defined]
    yield started
    started.close()


@pytest.fixture
def seem(make_napari_viewer: Any, backend: Any) -> tuple[Any, Any]:
    from napari_seem._napari.widget import SeemWidget

    viewer = make_napari_viewer(show=True)
    widget = SeemWidget(viewer)
    viewer.window.add_dock_widget(widget, name="SEEM", area="right")
    widget.use_backend(backend)
    return viewer, widget


def wait_idle(qtbot: Any, widget: Any, timeout: int = 30000) -> None:
    """Wait until the widget's last request came back (the event loop keeps running)."""
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)


@pytest.fixture
def shoot(tmp_path: Path) -> Callable[[Any, str], np.ndarray]:
    def take(viewer: Any, name: str, *, canvas_only: bool = False, docs: bool = True) -> np.ndarray:
        import imageio.v3 as iio

        del docs  # kept for the callers; docs pictures come from docs/images/screenshots.py
        shot = viewer.screenshot(canvas_only=canvas_only, flash=False)
        iio.imwrite(tmp_path / f"{name}.png", shot)
        return np.asarray(shot)

    return take


def colour_fraction(shot: np.ndarray, colour: str, tol: int = 60) -> float:
    """Fraction of screenshot pixels near ``colour`` (a ``#rrggbb`` hex), for overlay checks."""
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.int32)
    diff = np.abs(shot[..., :3].astype(np.int32) - rgb).max(axis=-1)
    return float((diff < tol).mean())
