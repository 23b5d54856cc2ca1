"""The engine's standard job kinds, as a plain read-only mapping of name -> :class:`JobKind`.

- ``"encode_region"`` (:mod:`~napari_seem.engine.kinds.encode`): prefetch a region's tile
  features into the session's cache;
- ``"segment"`` (:mod:`~napari_seem.engine.kinds.segment`): segment everything or a phrase
  over a region through the batch runner, with seam-aware merging;
- ``"fine_tune"`` (:mod:`~napari_seem.engine.kinds.fine_tune`): train on labelled images,
  then switch the model to the new weights.

``Engine(kinds=None)`` runs these; pass another mapping (e.g.
``{**STANDARD_KINDS, "mine": JobKind(run, check)}``) for other kinds. Nothing is
registered at import: every engine keeps its own copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from napari_seem.engine.jobs import JobKind
from napari_seem.engine.kinds.encode import check_encode_region, run_encode_region
from napari_seem.engine.kinds.fine_tune import check_fine_tune, run_fine_tune
from napari_seem.engine.kinds.segment import check_segment, run_segment

__all__ = ["STANDARD_KINDS"]

STANDARD_KINDS: Mapping[str, JobKind] = MappingProxyType(
    {
        "encode_region": JobKind(run_encode_region, check_encode_region),
        "segment": JobKind(run_segment, check_segment),
        "fine_tune": JobKind(run_fine_tune, check_fine_tune),
    }
)
"""The kinds an engine runs by default (read only)."""
