"""The weights an engine's model runs with, and the weight files in its work folder.

:class:`WeightsKeeper` remembers the base checkpoint, the fine-tuned file applied on top of
it (with the base values it replaced) and the work folder fine-tune jobs write to. It keeps
that folder bounded: a start-point snapshot is deleted when the job that needed it ends,
a cancelled run's file at once, and beyond ``max_files`` fine-tuned files the oldest ones
not in use are deleted.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import torch

from napari_seem.engine.weights import (
    WeightsInfo,
    apply_weights,
    read_weights,
    snapshot_weights,
    weights_id,
)

__all__ = ["WeightsKeeper"]


class WeightsKeeper:
    """Base and applied weights of one model, and its work folder (thread-safe).

    Args:
        model: the model whose weights are switched in place.
        base_checkpoint: what identifies the base weights (a path, or ``"random"``).
        work_dir: where fine-tuned files go (None: ``weights/`` under ``cache_dir``, else
            a new temporary folder), made on first use.
        cache_dir: the engine's feature-cache folder, if any.
        max_files: most fine-tuned files kept in the work folder.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        base_checkpoint: str,
        work_dir: Path | None,
        cache_dir: Path | None,
        max_files: int,
    ) -> None:
        self.model = model
        self.base_checkpoint = base_checkpoint
        self.checkpoint = base_checkpoint  # the weights in use now
        self.path: Path | None = None  # a file applied on top of the base
        self.max_files = int(max_files)
        self._saved_base: dict[str, Any] = {}  # base values the applied file replaced
        self._work_dir = work_dir
        self._cache_dir = cache_dir
        self._written: list[Path] = []  # fine-tuned files of this engine, oldest first
        self._lock = threading.Lock()

    @property
    def work_dir(self) -> Path:
        """Where fine-tuned weight files go (made on first use)."""
        with self._lock:
            if self._work_dir is None:
                if self._cache_dir is not None:
                    self._work_dir = self._cache_dir / "weights"
                else:
                    self._work_dir = Path(tempfile.mkdtemp(prefix="napari-seem-weights-"))
            self._work_dir.mkdir(parents=True, exist_ok=True)
            return self._work_dir

    def info(self) -> WeightsInfo:
        """The weights the model runs with now."""
        path = self.path
        return WeightsInfo(
            str(getattr(self.model, "name", "model")),
            self.checkpoint,
            None if path is None else str(path),
            self.base_checkpoint,
        )

    def read(self, path: str | Path | None) -> tuple[Path | None, Any, str]:
        """Read and check a weight file before anything changes: ``(file, state, id)``
        (``None``: the base weights). Raises ``InvalidRequestError`` for a bad file."""
        file = None if path is None else Path(path).expanduser().resolve()
        state = None if file is None else read_weights(file, self.model)
        return file, state, self.base_checkpoint if file is None else weights_id(file)

    def apply(self, file: Path | None, state: Any, checkpoint: str) -> None:
        """Load what :meth:`read` returned into the model. Caller holds the model lock."""
        apply_weights(self.model, state, self._saved_base)
        if file is None:
            self._saved_base.clear()
        self.checkpoint = checkpoint
        self.path = file

    @property
    def tuned(self) -> bool:
        """A fine-tuned file is applied."""
        return self.path is not None

    def snapshot(self) -> Path:
        """A file of the weights in use (the base checkpoint itself when it is one and no
        file is applied, else a ``start-*`` snapshot in the work folder). Caller holds
        the model lock when a snapshot is written."""
        base = Path(self.base_checkpoint)
        if self.path is None and getattr(self.model, "name", "") != "seem-lite" and base.is_file():
            return base
        return snapshot_weights(self.model, self.work_dir, self.checkpoint)

    def discard(self, path: str | Path) -> None:
        """Delete a file of the work folder a job no longer needs (a start snapshot, a
        cancelled run's file); a file in use or outside the folder is kept."""
        file = Path(path)
        if not self._removable(file):
            return
        file.unlink(missing_ok=True)
        with self._lock:
            self._written = [p for p in self._written if p != file]

    def keep(self, path: str | Path) -> list[Path]:
        """Record a new fine-tuned file; delete the oldest ones not in use beyond
        ``max_files``. Returns the files deleted."""
        with self._lock:
            self._written.append(Path(path))
            written = list(self._written)
        removed: list[Path] = []
        excess = len(written) - self.max_files
        for file in written:
            if excess <= 0:
                break
            if self._removable(file) and file != Path(path):
                file.unlink(missing_ok=True)
                removed.append(file)
                excess -= 1
        with self._lock:
            self._written = [p for p in self._written if p not in removed]
        return removed

    def _removable(self, file: Path) -> bool:
        """In this engine's work folder and not the file in use."""
        folder = self._work_dir
        if folder is None or file.resolve().parent != folder.resolve():
            return False
        return self.path is None or file.resolve() != self.path.resolve()
