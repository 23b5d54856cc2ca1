"""What a batch run segments (:class:`Task`), and how it tiles, merges and writes it
(:class:`BatchConfig`).

Both are frozen and checked on construction, so a bad argument fails with a
:class:`~napari_seem.batch.store.BatchConfigError` before any image is opened or any output
is written. Frame: the segmented level's ``(row, col)`` pixels (level 0 unless
``BatchConfig.level`` says otherwise); prompts are level-0 pixels and need ``level=0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from napari_seem.batch.store import BatchConfigError
from napari_seem.batch.tasks import TaskKind, TaskSpec
from napari_seem.core.modes import (
    DEFAULT_EVERYTHING_MODE,
    EVERYTHING_MODES,
    EverythingMode,
    everything_mode_error,
)
from napari_seem.core.prompts import ObjectPrompt

__all__ = ["BatchConfig", "Box", "Task"]

#: ``(r0, c0, r1, c1)``, max exclusive, in pixels of the segmented level.
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Task:
    """What to segment: exactly one of a vocabulary, a phrase or object prompts.

    Build it with :meth:`from_options` from user input (comma-separated names, a prompts
    file); the constructor takes the parsed values.

    Attributes:
        vocabulary: class names: segment every object of them ("segment everything").
        text: a referring phrase: every instance of it.
        prompts: level-0 object prompts; object ``i`` (1-based) gets label id ``i``.
        mode: with ``vocabulary``: ``"auto"`` (``"points"`` for models that decode prompts
            in windows, such as seem-lite, else ``"panoptic"``), ``"panoptic"``,
            ``"instance"``, ``"semantic"`` or ``"points"`` (prompt a grid of points; see
            ``SeemPredictor.segment_everything``).
    """

    vocabulary: tuple[str, ...] = ()
    text: str | None = None
    prompts: tuple[ObjectPrompt, ...] = ()
    mode: EverythingMode = DEFAULT_EVERYTHING_MODE

    def __post_init__(self) -> None:
        # sequences given as lists (or one name as a str) are kept as tuples: the task is frozen
        names = self.vocabulary
        object.__setattr__(self, "vocabulary", (names,) if isinstance(names, str) else tuple(names))
        object.__setattr__(self, "prompts", tuple(self.prompts))
        _check_one_of(self.vocabulary, self.text, self.prompts)
        if self.vocabulary:
            _check_names(self.vocabulary, self.vocabulary)
        if self.mode not in EVERYTHING_MODES:
            raise BatchConfigError(everything_mode_error(self.mode))

    @classmethod
    def from_options(
        cls,
        *,
        vocabulary: Sequence[str] | str | None = None,
        text: str | None = None,
        prompts: Sequence[ObjectPrompt] | str | Path | None = None,
        mode: EverythingMode = DEFAULT_EVERYTHING_MODE,
    ) -> Task:
        """A task from user input (``napari-seem segment``'s options).

        Args:
            vocabulary: class names as a list or ``"nucleus, cell"``.
            text: a referring phrase (surrounding spaces are dropped).
            prompts: object prompts, or a CSV / GeoJSON file of level-0 points and boxes
                (:mod:`napari_seem.batch.prompts_file`).
            mode: see :attr:`mode`.
        """
        _check_one_of(vocabulary, text, prompts)  # first: a prompts file is not read for nothing
        names: tuple[str, ...] = ()
        if vocabulary:
            items = vocabulary.split(",") if isinstance(vocabulary, str) else list(vocabulary)
            names = tuple(v.strip() for v in items if v.strip())
            _check_names(names, vocabulary)
        parsed: tuple[ObjectPrompt, ...] = ()
        if isinstance(prompts, str | Path):
            from napari_seem.batch.prompts_file import read_prompts

            parsed = tuple(read_prompts(prompts))
        elif prompts:
            parsed = tuple(prompts)
        return cls(names, text.strip() if text else None, parsed, mode)

    @property
    def kind(self) -> TaskKind:
        """``"everything"``, ``"text"`` or ``"prompts"``."""
        return "everything" if self.vocabulary else "text" if self.text else "prompts"


@dataclass(frozen=True)
class BatchConfig:
    """How a run tiles, merges and writes; the defaults are ``napari-seem segment``'s.

    Every field that changes the labels enters the run's signature: an unfinished output is
    resumed only by a run of the same configuration (``overwrite``, ``keep_work`` and
    ``workers`` do not change the labels and are left out).
    """

    # outer tile = model input (pixels); the core, tile - 2 * halo, is also the output chunk
    # size, so every chunk is written by exactly one task
    tile: int = 1024
    # context pixels on each side of a core; pieces of one object are matched in the halos
    halo: int = 64
    # pyramid level to segment (coarser = faster); the labels are at that level
    level: int = 0
    # three channel indices for R, G, B of a multi-band image (None: the reader's default)
    bands: tuple[int, int, int] | None = None
    # axes of the input (e.g. "zyx"), when the reader cannot tell; see core.io.open_image
    axes: str | None = None
    # pixel value that means "no data": such pixels are never part of an object
    nodata: float | None = None
    # "all", "0,3,5" or plane indices (tuples when the image has both t and z)
    planes: str | tuple[int | tuple[int, ...], ...] = "all"
    # "z" or "t": segment the first selected plane, then each object is the referring
    # example on the next plane (ids are kept); one run step per plane
    propagate: str | None = None
    # only tiles whose core meets this box; the rest of the output stays 0
    region: Box | None = None
    # write OME-Zarr labels IMAGE/labels/NAME (with levels) into an OME-Zarr input, not `out`
    labels_name: str | None = None
    # panoptic class-probability threshold (segment everything)
    object_mask_threshold: float = 0.4
    # grounding: least share of the phrase's softmax for a further instance in a tile
    text_threshold: float = 0.05
    # least IoU in the halo overlap for two tiles' pieces to be one object
    min_iou: float = 0.5
    # objects smaller than this many written pixels are dropped
    min_area: int = 16
    # pieces up to this core area join the neighbour's object they lie on (None: halo^2 / 4)
    sliver_area: int | None = None
    # worker processes of scheduler="local" (None: 2)
    workers: int | None = None
    # delete an existing output first; without it an unfinished run of the same
    # configuration is resumed and anything else is refused
    overwrite: bool = False
    # keep the per-tile scratch files after success (debugging)
    keep_work: bool = False

    def __post_init__(self) -> None:
        if self.tile <= 2 * self.halo or self.halo < 0:
            raise BatchConfigError(
                f"tile ({self.tile}) must exceed 2 * halo ({2 * self.halo}); halo >= 0"
            )
        if self.bands is not None:
            object.__setattr__(self, "bands", tuple(int(b) for b in self.bands))
        if self.region is not None:
            object.__setattr__(self, "region", tuple(int(v) for v in self.region))
        if self.planes is None:  # the old spelling of "all"
            object.__setattr__(self, "planes", "all")
        elif not isinstance(self.planes, str):
            object.__setattr__(self, "planes", tuple(_plane_index(p) for p in self.planes))

    @property
    def sliver(self) -> int:
        """The sliver area in effect (``sliver_area`` or ``halo * halo // 4``)."""
        return self.halo * self.halo // 4 if self.sliver_area is None else int(self.sliver_area)

    def tile_task(self, task: Task) -> TaskSpec:
        """The per-tile task the workers run: ``task`` with this configuration's thresholds."""
        try:
            what = {f.name: getattr(task, f.name) for f in fields(task)}  # same names in both
            return TaskSpec(
                task.kind,
                **what,
                object_mask_threshold=self.object_mask_threshold,
                text_threshold=self.text_threshold,
                min_area=self.min_area,
            )
        except ValueError as exc:
            raise BatchConfigError(str(exc)) from exc


def _check_one_of(vocabulary: Any, text: Any, prompts: Any) -> None:
    """Exactly one of the three kinds of task is given (truthy)."""
    given = [
        name for name, v in (("vocabulary", vocabulary), ("text", text), ("prompts", prompts)) if v
    ]
    if len(given) != 1:
        raise BatchConfigError(
            "give exactly one of vocabulary (class names), text (a phrase) or prompts "
            f"(points/boxes); got {given or 'none'}"
        )


def _check_names(names: tuple[str, ...], given: Any) -> None:
    """``names`` (parsed from ``given``) are distinct and non-empty."""
    if not names or not all(names) or len(set(names)) != len(names):
        raise BatchConfigError(
            f"vocabulary {given!r}: give distinct, non-empty class names, e.g. 'nucleus, cell'"
        )


def _plane_index(plane: Any) -> int | tuple[int, ...]:
    """One entry of ``planes`` as an int or a tuple of ints (checked against the image later)."""
    if isinstance(plane, int | np.integer):
        return int(plane)
    return tuple(int(i) for i in plane)
