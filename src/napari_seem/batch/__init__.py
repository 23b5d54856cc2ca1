"""Whole-image runs: "segment everything", text search and prompt files at scale.

``segment_image(image, out, task, config, *, model, scheduler, reporter)`` tiles a huge image
(or stack), runs SEEM on every tile (in this process or as tasks on a Dask distributed
cluster), merges objects across tile seams and writes a uint32 labels array chunk by chunk
with a class table; an interrupted run resumes. ``task`` (:class:`Task`) says what to
segment, ``config`` (:class:`BatchConfig`) how to tile, merge and write. The engine's jobs pass
their built predictor as a :class:`SharedPredictor`. The CLI is ``napari-seem segment``
(:mod:`napari_seem.cli.segment`).

Module map: :mod:`~napari_seem.batch.config` (Task, BatchConfig), :mod:`~.plan` (every
check, before anything is written), :mod:`~.runner` (the steps), :mod:`~.work` (the tile and
chunk tasks), :mod:`~.resolve` and :mod:`~.merge` (seams), :mod:`~.output`, :mod:`~.store`
and :mod:`~.ome` (what is on disk), :mod:`~.executor`, :mod:`~.cluster` and
:mod:`~.dask_executor` (where tasks run), :mod:`~.tasks` and :mod:`~.models` (the model on a
tile), :mod:`~.planes` and :mod:`~.prompts_file` (input parsing).

Importing this package loads neither torch nor dask: they load when a run starts.
"""

from __future__ import annotations

from napari_seem.batch.config import BatchConfig, Task
from napari_seem.batch.merge import Merger, MergeResult, match_pair, merge_tiles, tile_stats
from napari_seem.batch.models import SharedPredictor
from napari_seem.batch.runner import RunSummary, segment_image
from napari_seem.batch.store import BatchConfigError
from napari_seem.batch.tasks import ModelSpec, TaskSpec

__all__ = [
    "BatchConfig",
    "BatchConfigError",
    "MergeResult",
    "Merger",
    "ModelSpec",
    "RunSummary",
    "SharedPredictor",
    "Task",
    "TaskSpec",
    "match_pair",
    "merge_tiles",
    "segment_image",
    "tile_stats",
]
