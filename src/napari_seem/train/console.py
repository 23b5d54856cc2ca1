"""The trainer's own console display: a tqdm bar, or a line on stderr every 25 steps."""

from __future__ import annotations

import sys
import time

from napari_seem.core.progress import Progress

__all__ = ["ConsoleProgress"]


class ConsoleProgress:
    """A :data:`~napari_seem.core.progress.Reporter` that shows training steps.

    Args:
        total: the step the run ends at.
        initial: the step the run starts from (a resumed run starts past 0).
        bar: show a tqdm bar; False prints ``step S/T loss L (N s)`` to stderr every
            ``every`` steps instead (logs of unattended runs).
        every: steps between stderr lines.

    Each :class:`~napari_seem.core.progress.Progress` it is given counts as one step; its
    ``values["recent_loss"]`` is the loss shown.
    """

    def __init__(self, total: int, initial: int, *, bar: bool, every: int = 25) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, initial=initial, desc="train", disable=not bar, unit="step")
        self._lines = not bar
        self._every = every
        self._start = time.perf_counter()

    def __call__(self, progress: Progress) -> None:
        loss = float(progress.values.get("recent_loss", progress.values.get("loss", 0.0)))
        self._bar.set_postfix(loss=f"{loss:.3f}")
        self._bar.update(1)
        if self._lines and progress.done % self._every == 0:
            print(
                f"step {progress.done}/{progress.total} loss {loss:.3f} "
                f"({time.perf_counter() - self._start:.0f} s)",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        """Close the bar (call once, when the run ends)."""
        self._bar.close()
