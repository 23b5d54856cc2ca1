"""Phase 2 of a run step, on the driver: global ids for the pieces of a step's tiles.

Reads the object tables the tile tasks left in the scratch folder, matches pieces of
neighbouring tiles in their halo overlap (:mod:`napari_seem.batch.merge`) and resolves global
ids with a union-find. Deterministic, so a resumed run resolves exactly as an uninterrupted
one. Memory: the tables (one small entry per object) plus a few tiles' labels.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_seem.batch.merge import Merger, TileStats, match_neighbours
from napari_seem.batch.store import read_tile, read_tile_meta
from napari_seem.core.tiling import Tile

__all__ = ["Rows", "combine_rows", "merge_step"]

#: Class-table rows (``id``, ``class_name``, ``score``, ``area``, ``bbox``, ``pieces``, ...).
Rows = list[dict[str, Any]]
TileKey = tuple[int, ...]
# tiles' labels held at once while matching (each is (oh, ow) uint32)
_LRU_TILES = 8


def _stats_of(work: Path, key: TileKey) -> TileStats:
    """A tile's object table, as its task stored it."""
    meta = read_tile_meta(work, key)
    keys = meta["object_keys"]
    n = len(meta["class_names"])
    return TileStats(
        key,
        np.asarray(meta["core_area"], np.int64).reshape(n),
        np.asarray(meta["core_bbox"], np.int64).reshape(n, 4),
        tuple(meta["class_names"]),
        tuple(float(s) for s in meta["scores"]),
        None if keys is None else tuple(int(k) for k in keys),
    )


def merge_step(
    work: Path,
    tiles: dict[TileKey, Tile],
    *,
    plane_ndim: int,
    first_id: int,
    min_iou: float,
    min_area: int,
    sliver_area: int,
) -> tuple[dict[TileKey, npt.NDArray[np.uint32]], Rows]:
    """Resolve one step's tiles.

    Args:
        work: the run's scratch folder.
        tiles: every tile of the step by key ``(*plane, ti, tj)``.
        plane_ndim: how many leading key entries are plane indices.
        first_id: the first global id to hand out (ids continue across steps).

    Returns:
        ``(lookup, rows)``: per tile key a uint32 array mapping local id -> global id
        (index 0 -> 0), and the class-table rows of the step's objects.
    """
    merger = Merger(plane_ndim=plane_ndim, min_area=min_area, first_id=first_id)
    stats = {key: _stats_of(work, key) for key in sorted(tiles)}
    for key in sorted(stats):
        merger.add_tile(stats[key])
    cache: OrderedDict[TileKey, npt.NDArray[np.uint32]] = OrderedDict()

    def labels_of(key: TileKey) -> npt.NDArray[np.uint32]:
        if key in cache:
            cache.move_to_end(key)
        else:
            cache[key] = read_tile(work, key)[0]
            if len(cache) > _LRU_TILES:
                cache.popitem(last=False)
        return cache[key]

    match_neighbours(
        merger,
        tiles,
        stats,
        labels_of,
        plane_ndim=plane_ndim,
        min_iou=min_iou,
        sliver_area=sliver_area,
    )
    result = merger.resolve()
    return result.lookup, result.rows


def combine_rows(rows: Rows) -> Rows:
    """Join rows of one id from several steps (a propagated object on many planes)."""
    by_id: dict[int, dict[str, Any]] = {}
    for row in rows:
        old = by_id.get(row["id"])
        if old is None:
            by_id[row["id"]] = dict(row)
            continue
        area = old["area"] + row["area"]
        old["score"] = (old["score"] * old["area"] + row["score"] * row["area"]) / area
        old["area"] = area
        a, b = old["bbox"], row["bbox"]
        old["bbox"] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
        old["pieces"] += row["pieces"]
        if "planes" in old:
            old["planes"] = [
                min(old["planes"][0], row["planes"][0]),
                max(old["planes"][1], row["planes"][1]),
            ]
    return [by_id[k] for k in sorted(by_id)]
