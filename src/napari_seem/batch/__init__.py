"""Whole-image runs: "segment everything", text search and prompt files at scale.

``segment_image`` tiles a huge image (or stack), runs SEEM on every tile (in this process or
as tasks on a Dask distributed cluster), merges objects across tile seams and writes a
uint32 labels array chunk by chunk with a class table; an interrupted run resumes.
``segment_region`` is the same with an already built predictor, for the engine's jobs.
The CLI is ``napari-seem segment`` (:mod:`napari_seem.cli.segment`).

Importing this package loads neither torch nor dask: they load when a run starts.
"""

from __future__ import annotations

from napari_seem.batch.merge import Merger, MergeResult, match_pair, merge_tiles, tile_stats
from napari_seem.batch.runner import RunSummary, segment_image, segment_region
from napari_seem.batch.store import BatchConfigError
from napari_seem.batch.tasks import ModelSpec, TaskSpec

__all__ = [
    "BatchConfigError",
    "MergeResult",
    "Merger",
    "ModelSpec",
    "RunSummary",
    "TaskSpec",
    "match_pair",
    "merge_tiles",
    "segment_image",
    "segment_region",
    "tile_stats",
]
