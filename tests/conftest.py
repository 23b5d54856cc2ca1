"""Test harness shared by the whole suite.

- ``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1`` are set before anything can import
  transformers or huggingface_hub: nothing downloads in tests.
- Qt tests get a display: when ``DISPLAY`` is unset, an ``Xvfb`` server is started for the
  session and ``QT_QPA_PLATFORM=xcb`` is used (offscreen cannot render napari's canvas).
- Markers: ``slow``, ``qt``, ``browser``, ``gpu`` (GPU tests skip cleanly without CUDA).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

_XVFB: subprocess.Popen[bytes] | None = None


def _start_xvfb() -> None:
    """Start Xvfb on a free display number and export DISPLAY (once per session)."""
    global _XVFB
    if os.environ.get("DISPLAY") or _XVFB is not None:
        return
    exe = shutil.which("Xvfb")
    if exe is None:
        return
    for number in range(99, 140):
        if os.path.exists(f"/tmp/.X11-unix/X{number}") or os.path.exists(f"/tmp/.X{number}-lock"):
            continue
        proc = subprocess.Popen(
            [exe, f":{number}", "-screen", "0", "1600x1200x24", "-nolisten", "tcp"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(50):
            if os.path.exists(f"/tmp/.X11-unix/X{number}"):
                break
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        if proc.poll() is None:
            _XVFB = proc
            os.environ["DISPLAY"] = f":{number}"
            os.environ["QT_QPA_PLATFORM"] = "xcb"
            return


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("DISPLAY") is None:
        _start_xvfb()
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb" if os.environ.get("DISPLAY") else "offscreen")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _XVFB is not None:
        _XVFB.terminate()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
    skip_qt = pytest.mark.skip(reason="needs a display: install xvfb (scripts/test.sh does)")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
        if "qt" in item.keywords and not os.environ.get("DISPLAY"):
            item.add_marker(skip_qt)


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package's wheel, built once per test run (``pip wheel --no-deps`` of this tree)."""
    import sys

    out = tmp_path_factory.mktemp("wheel")
    root = Path(__file__).resolve().parents[1]
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    proc = subprocess.run(
        [*pip_wheel, "-w", str(out), str(root)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = out.glob("napari_seem-*.whl")
    return wheel
