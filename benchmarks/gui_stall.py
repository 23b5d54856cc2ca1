"""GUI responsiveness: the longest Qt event-loop stall while a job runs in napari.

Run as ``python -m benchmarks.gui_stall [--size PX]`` (a subprocess of ``benchmarks all``):
it starts Xvfb when there is no display, opens a shown napari viewer with the SEEM widget
connected to a ``seem-lite`` model process (``--variant``), and runs "segment everything"
on the whole of a synthetic ``PX x PX`` nuclei image, while a 20 ms ``QTimer`` ticks in the
GUI thread. The stall is the longest gap between two ticks (ideal: 20 ms). The same meter
over 2 s of idle viewer is the floor. ``press_s`` is the button's own handler (it creates
the target labels layer when there is none: napari's ``add_labels``, one GUI step of a few
hundred ms that cannot be split); ``during_job`` counts the ticks from the end of the press
to the end of the commit (the objects are painted into the existing layer in pieces of at
most 15 ms), ``with_press`` both. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

__all__ = ["main", "measure", "start_xvfb"]

TICK_MS = 20


def start_xvfb() -> subprocess.Popen[bytes] | None:
    """Xvfb on a free display (DISPLAY is exported); None when a display exists or no Xvfb."""
    if os.environ.get("DISPLAY"):
        return None
    exe = shutil.which("Xvfb")
    if exe is None:
        raise RuntimeError("no display and no Xvfb: apt-get install xvfb")
    for number in range(150, 199):
        if os.path.exists(f"/tmp/.X11-unix/X{number}") or os.path.exists(f"/tmp/.X{number}-lock"):
            continue
        proc = subprocess.Popen(
            [exe, f":{number}", "-screen", "0", "1600x1200x24", "-nolisten", "tcp"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(50):
            if os.path.exists(f"/tmp/.X11-unix/X{number}") or proc.poll() is not None:
                break
            time.sleep(0.1)
        if proc.poll() is None:
            os.environ["DISPLAY"] = f":{number}"
            return proc
    raise RuntimeError("no free X display number for Xvfb")


def _gaps(stamps: list[float]) -> dict[str, Any]:
    import numpy as np

    gaps = np.diff(stamps) if len(stamps) > 1 else np.array([float("nan")])
    return {
        "ticks": len(stamps),
        "max_gap_s": float(gaps.max()),
        "p99_gap_s": float(np.percentile(gaps, 99)),
        "p50_gap_s": float(np.median(gaps)),
    }


def measure(size: int, *, timeout_s: float = 300.0, variant: str = "seem-lite") -> dict[str, Any]:
    """Open the viewer, run the job, return the tick gaps (module docstring)."""
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    import napari
    from qtpy.QtCore import QEventLoop, QTimer

    from napari_seem._napari.backend import Backend, ModelChoice
    from napari_seem._napari.widget import SeemWidget
    from napari_seem.datasets.synthetic import synthetic_nuclei

    stamps: list[float] = []
    ticker = QTimer()
    ticker.setInterval(TICK_MS)
    ticker.timeout.connect(lambda: stamps.append(time.monotonic()))

    def spin(seconds: float, until: Any = None) -> None:
        loop = QEventLoop()
        check = QTimer()
        check.setInterval(50)
        check.timeout.connect(lambda: loop.quit() if until is not None and until() else None)
        check.start()
        QTimer.singleShot(int(seconds * 1000), loop.quit)
        loop.exec()
        check.stop()

    with tempfile.TemporaryDirectory(prefix="napari-seem-gui-") as tmp:
        choice = ModelChoice(variant=variant, tile=256, halo=32, device="cpu", read_roots=(tmp,))
        backend = Backend.start(choice)
        viewer = napari.Viewer(show=True)
        try:
            widget = SeemWidget(viewer)
            viewer.window.add_dock_widget(widget, name="SEEM", area="right")
            widget.use_backend(backend)
            scene = synthetic_nuclei((size, size), seed=3)
            layer = viewer.add_image(scene.image, name="nuclei", colormap="gray")
            widget.image.value = layer
            widget.vocabulary.value = "nucleus, background"
            widget.scope.value = "whole image"
            spin(1.0)  # let the first paint and layer events settle
            ticker.start()
            spin(2.0)
            idle = _gaps(stamps)
            del stamps[:-1]  # the last idle tick starts the first gap of the press
            t0 = time.monotonic()
            widget.segment_everything()
            pressed = time.monotonic()
            spin(timeout_s, until=lambda: not widget.busy and widget.long_runs.cancel_event is None)
            job_s = time.monotonic() - t0
            ticker.stop()
            with_press = _gaps(stamps)
            running = _gaps([s for s in stamps if s >= pressed])
            labels = next((x for x in viewer.layers if x.name == "SEEM labels"), None)
            committed = 0 if labels is None else len(labels.features) - 1
            errors = [text for severity, text in widget.messages if severity == "error"]
            finished = not widget.busy
        finally:
            viewer.close()
            backend.close()
    return {
        "image": f"{size}x{size} synthetic nuclei",
        "job": "segment everything, whole image, vocabulary 'nucleus, background'",
        "model": f"{variant} (model process, tile 256)",
        "tick_ms": TICK_MS,
        "job_s": job_s,
        "finished": finished,
        "errors": errors,
        "committed": committed,
        "idle": idle,
        "press_s": pressed - t0,
        "during_job": running,
        "with_press": with_press,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=768, help="image side in pixels")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for the job")
    parser.add_argument("--variant", default="seem-lite", help="model variant (default seem-lite)")
    args = parser.parse_args(argv)
    xvfb = start_xvfb()
    try:
        result = measure(args.size, timeout_s=args.timeout, variant=args.variant)
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
