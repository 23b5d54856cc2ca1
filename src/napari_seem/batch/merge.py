"""Seam-aware merging of per-tile label images into one global labelling (pure numpy).

Frame: level-0 ``(row, col)`` pixels of the grid's image (or of the segmented level; see
:mod:`napari_seem.batch.runner`). Every tile of a :class:`~napari_seem.core.tiling.TileGrid` is
segmented on its *outer* box (core + halo) into a ``(oh, ow)`` label image of *local* ids
(``1..n``, 0 = background). Only the *core* of each tile is written to the output, so every
output pixel comes from exactly one tile. An object that crosses a core border appears as a
*piece* in several tiles; this module decides which pieces are one object.

The algorithm, in three steps that never need the whole image:

1. :func:`tile_stats`: per tile, the core area and core bounding box of every local id (a
   small table per tile).
2. :func:`match_pair`: for every pair of neighbouring tiles (edges AND corners), the pieces
   that are the same object, judged on the region both outer boxes cover (the halos around
   the seam): a one-to-one greedy match by IoU (``min_iou``), then *sliver absorption*: an
   unmatched piece whose core area is at most ``sliver_area`` and whose pixels in the
   overlap lie mostly (``absorb_fraction``) on one piece of the neighbour joins it.
   Pieces that carry a fixed object key (prompted objects, propagated objects) are joined
   by key instead and need no matching.
3. :class:`Merger`: a union-find over all pieces; components whose total core area is below
   ``min_area`` are dropped (background), the rest get global ids ``1, 2, ...`` in a
   deterministic order (tiles in ``(plane, row, col)`` order, then local ids), whatever the
   order in which tiles finished; a component with a fixed object key keeps the key as id.
   The result is one lookup table per tile (local id -> global id) applied chunk by chunk,
   and one class-table row per global id.

Memory: the union-find holds one entry per piece (a few dozen bytes per object), never a
pixel array larger than two tiles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_seem.core.tiling import Tile, match_labels_across_seam, outer_overlap

__all__ = [
    "MergeResult",
    "Merger",
    "TileStats",
    "match_neighbours",
    "match_pair",
    "merge_tiles",
    "neighbour_pairs",
    "tile_stats",
]

Labels = npt.NDArray[np.integer[Any]]
TileKey = tuple[int, ...]  # (*plane, ti, tj): sorts planes first, then row-major tiles


@dataclass(frozen=True)
class TileStats:
    """The per-object table of one tile.

    Attributes:
        key: ``(*plane, ti, tj)``; orders tiles for deterministic global ids.
        core_area: ``(n,)`` int64, pixels of local id ``i + 1`` inside the tile's core.
        core_bbox: ``(n, 4)`` int64 ``(row_min, col_min, row_max, col_max)`` (max exclusive,
            image frame) of each id's core pixels; zeros where the core area is 0.
        class_names: class name (or phrase) of each local id.
        scores: model score of each local id.
        object_keys: fixed object key of each local id (a prompt number, or the global id it
            was propagated from), or None for ids that must be matched by overlap.
    """

    key: TileKey
    core_area: npt.NDArray[np.int64]
    core_bbox: npt.NDArray[np.int64]
    class_names: tuple[str | None, ...]
    scores: tuple[float, ...]
    object_keys: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.class_names)
        if self.core_area.shape != (n,) or self.core_bbox.shape != (n, 4) or len(self.scores) != n:
            raise ValueError(
                f"tile {self.key}: core_area {self.core_area.shape}, core_bbox "
                f"{self.core_bbox.shape}, {len(self.scores)} scores and {n} class names "
                "must describe the same number of objects"
            )
        if self.object_keys is not None and len(self.object_keys) != n:
            raise ValueError(f"tile {self.key}: object_keys must have one key per object")

    @property
    def count(self) -> int:
        return len(self.class_names)


def tile_stats(
    tile: Tile,
    labels_outer: Labels,
    *,
    key: TileKey,
    class_names: Sequence[str | None],
    scores: Sequence[float],
    object_keys: Sequence[int] | None = None,
) -> TileStats:
    """Measure the core part of every local id of one tile.

    Args:
        tile: the tile; ``labels_outer`` covers ``tile.outer``.
        labels_outer: ``(oh, ow)`` integer local ids, 0 = background, ids ``1..n``.
        key: the tile's ``(*plane, ti, tj)``.
        class_names, scores: one entry per local id (``n`` each).
        object_keys: optional fixed object key per local id.
    """
    from scipy import ndimage

    n = len(class_names)
    labels = np.asarray(labels_outer)
    if labels.shape != tile.outer_shape:
        raise ValueError(
            f"labels of shape {labels.shape} do not cover tile {tile.index} (outer shape "
            f"{tile.outer_shape})"
        )
    if labels.size and int(labels.max()) > n:
        raise ValueError(f"tile {tile.index}: label {int(labels.max())} but only {n} objects")
    rows, cols = tile.core_in_outer
    core = labels[rows, cols]
    area = np.bincount(core.ravel(), minlength=n + 1)[1:].astype(np.int64)
    bbox = np.zeros((n, 4), np.int64)
    for i, found in enumerate(ndimage.find_objects(core.astype(np.int64), max_label=n)):
        if found is not None:
            r, c = found
            bbox[i] = (
                tile.core[0] + r.start,
                tile.core[1] + c.start,
                tile.core[0] + r.stop,
                tile.core[1] + c.stop,
            )
    keys = None if object_keys is None else tuple(int(k) for k in object_keys)
    return TileStats(key, area, bbox, tuple(class_names), tuple(float(s) for s in scores), keys)


def match_pair(
    tile_a: Tile,
    labels_a: Labels,
    tile_b: Tile,
    labels_b: Labels,
    *,
    core_area_a: npt.NDArray[np.int64],
    core_area_b: npt.NDArray[np.int64],
    min_iou: float = 0.5,
    sliver_area: int = 256,
    absorb_fraction: float = 0.5,
) -> list[tuple[int, int]]:
    """Pieces of two neighbouring tiles that are one object.

    Args:
        tile_a, tile_b: neighbouring tiles (their outer boxes overlap).
        labels_a, labels_b: ``(oh, ow)`` local ids on each tile's outer box.
        core_area_a, core_area_b: core area per local id (``TileStats.core_area``).
        min_iou: least IoU inside the overlap for two pieces to be one object.
        sliver_area: an unmatched piece with at most this many core pixels may be absorbed.
        absorb_fraction: least share of such a piece's overlap pixels that must fall on one
            piece of the neighbour for it to join that piece.

    Returns:
        ``(label_a, label_b)`` pairs (one-to-one IoU matches, then absorptions), sorted.
    """
    overlap = outer_overlap(tile_a, tile_b)
    if overlap is None:
        return []
    slice_a, slice_b = overlap
    pairs = set(match_labels_across_seam(labels_a, labels_b, slice_a, slice_b, min_iou=min_iou))
    a = np.asarray(labels_a)[slice_a].ravel()
    b = np.asarray(labels_b)[slice_b].ravel()
    both = (a != 0) & (b != 0)
    if both.any():
        joint, inter = np.unique(np.stack([a[both], b[both]]), axis=1, return_counts=True)
        matched_a = {la for la, _ in pairs}
        matched_b = {lb for _, lb in pairs}
        for side, own, other, area_core, matched in (
            (0, a, joint[0], core_area_a, matched_a),
            (1, b, joint[1], core_area_b, matched_b),
        ):
            ids, overlap_area = np.unique(own[own != 0], return_counts=True)
            for label, count in zip(ids.tolist(), overlap_area.tolist(), strict=True):
                core = int(area_core[label - 1]) if label - 1 < len(area_core) else 0
                if label in matched or core == 0 or core > sliver_area:
                    continue
                rows = np.flatnonzero(other == label)
                if rows.size == 0:
                    continue
                best = rows[np.argmax(inter[rows])]  # first maximum: deterministic
                if inter[best] >= absorb_fraction * count:
                    partner = int(joint[1 - side, best])
                    pairs.add((label, partner) if side == 0 else (partner, label))
    return sorted(pairs)


class _UnionFind:
    """Union-find over integers ``0..n-1`` with path halving; the smaller root wins."""

    def __init__(self) -> None:
        self.parent: list[int] = []

    def add(self, count: int) -> int:
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        return start

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, x: int, y: int) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            self.parent[max(rx, ry)] = min(rx, ry)


@dataclass(frozen=True)
class MergeResult:
    """Global ids of a merged run.

    Attributes:
        lookup: per tile key, a ``(n + 1,)`` uint32 array mapping local id -> global id
            (index 0 -> 0; dropped pieces -> 0). Apply as ``lookup[key][labels_core]``.
        rows: one class-table row per global id, ordered by id: ``id``, ``class_name``,
            ``score`` (core-area weighted mean of the pieces' scores), ``area`` (pixels
            written), ``bbox`` (``[row_min, col_min, row_max, col_max]``, max exclusive),
            ``pieces`` (tiles it spans), and ``planes`` (``[first, last]`` plane key) for
            stacks.
    """

    lookup: dict[TileKey, npt.NDArray[np.uint32]]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.rows)


class Merger:
    """Collects tile tables and matches; :meth:`resolve` assigns global ids.

    Args:
        plane_ndim: how many leading entries of a tile key are plane indices.
        min_area: components with fewer core pixels in total are dropped.
        first_id: the first global id to hand out to components without an object key
            (ids continue across calls when a run resolves planes one at a time).
    """

    def __init__(self, *, plane_ndim: int = 0, min_area: int = 1, first_id: int = 1) -> None:
        self.plane_ndim = plane_ndim
        self.min_area = int(min_area)
        self.first_id = int(first_id)
        self._uf = _UnionFind()
        self._tiles: dict[TileKey, tuple[int, TileStats]] = {}
        self._by_key: dict[int, int] = {}

    def add_tile(self, stats: TileStats) -> None:
        """Register one tile's pieces (pieces with a fixed object key join at once)."""
        if stats.key in self._tiles:
            raise ValueError(f"tile {stats.key} was added twice")
        start = self._uf.add(stats.count)
        self._tiles[stats.key] = (start, stats)
        if stats.object_keys is not None:
            for i, object_key in enumerate(stats.object_keys):
                first = self._by_key.setdefault(object_key, start + i)
                self._uf.union(first, start + i)

    def add_matches(self, key_a: TileKey, key_b: TileKey, pairs: Iterable[tuple[int, int]]) -> None:
        """Join pieces ``(label_a, label_b)`` of tiles ``key_a`` and ``key_b``."""
        start_a, stats_a = self._tiles[key_a]
        start_b, stats_b = self._tiles[key_b]
        for la, lb in pairs:
            if not (1 <= la <= stats_a.count and 1 <= lb <= stats_b.count):
                raise ValueError(f"match ({la}, {lb}) names an unknown piece of {key_a}/{key_b}")
            self._uf.union(start_a + la - 1, start_b + lb - 1)

    def resolve(self) -> MergeResult:
        """Global ids, lookups and class rows (deterministic: see the module docstring)."""
        order = sorted(self._tiles)
        total: dict[int, int] = {}
        for key in order:
            start, stats = self._tiles[key]
            for i in range(stats.count):
                root = self._uf.find(start + i)
                total[root] = total.get(root, 0) + int(stats.core_area[i])
        fixed: dict[int, int] = {}  # root -> its object key, which becomes its id
        for object_key, node in self._by_key.items():
            fixed[self._uf.find(node)] = object_key
        ids: dict[int, int] = {}
        acc: dict[int, dict[str, Any]] = {}
        counter = self.first_id
        lookup: dict[TileKey, npt.NDArray[np.uint32]] = {}
        for key in order:
            start, stats = self._tiles[key]
            table = np.zeros(stats.count + 1, np.uint32)
            for i in range(stats.count):
                area = int(stats.core_area[i])
                root = self._uf.find(start + i)
                if area == 0 or total[root] < self.min_area:
                    continue
                if root not in ids:
                    if root in fixed:
                        ids[root] = fixed[root]
                    else:
                        ids[root], counter = counter, counter + 1
                    acc[root] = {
                        "best_area": -1,
                        "class_name": None,
                        "weighted": 0.0,
                        "area": 0,
                        "bbox": [np.inf, np.inf, -np.inf, -np.inf],
                        "pieces": 0,
                        "planes": [key[: self.plane_ndim], key[: self.plane_ndim]],
                    }
                table[i + 1] = ids[root]
                row = acc[root]
                if area > row["best_area"]:
                    row["best_area"], row["class_name"] = area, stats.class_names[i]
                row["weighted"] += area * stats.scores[i]
                row["area"] += area
                r0, c0, r1, c1 = (int(v) for v in stats.core_bbox[i])
                box = row["bbox"]
                row["bbox"] = [min(box[0], r0), min(box[1], c0), max(box[2], r1), max(box[3], c1)]
                row["pieces"] += 1
                plane = key[: self.plane_ndim]
                row["planes"] = [min(row["planes"][0], plane), max(row["planes"][1], plane)]
            lookup[key] = table
        rows = []
        for root, gid in sorted(ids.items(), key=lambda item: item[1]):
            row = acc[root]
            out: dict[str, Any] = {
                "id": gid,
                "class_name": row["class_name"],
                "score": row["weighted"] / row["area"],
                "area": row["area"],
                "bbox": [int(v) for v in row["bbox"]],
                "pieces": row["pieces"],
            }
            if self.plane_ndim:
                out["planes"] = [list(row["planes"][0]), list(row["planes"][1])]
            rows.append(out)
        return MergeResult(lookup, rows)


def neighbour_pairs(keys: Iterable[TileKey], plane_ndim: int) -> list[tuple[TileKey, TileKey]]:
    """Every pair of existing tiles of one plane that touch at an edge or a corner, each
    once (right, bottom-left, bottom, bottom-right of the first), in sorted order."""
    present = set(keys)
    pairs = []
    for key in sorted(present):
        plane, (ti, tj) = key[:plane_ndim], key[plane_ndim:]
        for di, dj in ((0, 1), (1, -1), (1, 0), (1, 1)):
            other = (*plane, ti + di, tj + dj)
            if other in present:
                pairs.append((key, other))
    return pairs


def match_neighbours(
    merger: Merger,
    tiles: Mapping[TileKey, Tile],
    stats: Mapping[TileKey, TileStats],
    labels_of: Callable[[TileKey], Labels],
    *,
    plane_ndim: int,
    min_iou: float,
    sliver_area: int,
) -> None:
    """Match the pieces of every pair of neighbouring tiles and add the matches to ``merger``.

    Args:
        tiles, stats: the tiles of a grid (one or more planes) and their tables, by key.
        labels_of: ``labels_of(key)`` gives the tile's ``(oh, ow)`` local ids (it may read
            them from disk: each tile is asked for once per neighbour).
        plane_ndim, min_iou, sliver_area: see :class:`Merger` and :func:`match_pair`.
    """
    for ka, kb in neighbour_pairs(stats, plane_ndim):
        sa, sb = stats[ka], stats[kb]
        if sa.object_keys is not None or sb.object_keys is not None:
            continue  # keyed pieces are joined by key
        if not sa.count or not sb.count:
            continue  # nothing to match (match_pair would find no pair)
        pairs = match_pair(
            tiles[ka],
            labels_of(ka),
            tiles[kb],
            labels_of(kb),
            core_area_a=sa.core_area,
            core_area_b=sb.core_area,
            min_iou=min_iou,
            sliver_area=sliver_area,
        )
        merger.add_matches(ka, kb, pairs)


def merge_tiles(
    tiles: Sequence[tuple[Tile, Labels, Sequence[str | None], Sequence[float]]],
    image_shape: tuple[int, int],
    *,
    min_iou: float = 0.5,
    min_area: int = 1,
    sliver_area: int = 256,
) -> tuple[npt.NDArray[np.uint32], MergeResult]:
    """Merge a whole (small) 2-D grid in memory: for tests and small images.

    Args:
        tiles: ``(tile, labels_outer, class_names, scores)`` for every tile of a grid.
        image_shape: ``(H, W)`` of the grid's image.

    Returns:
        ``((H, W) uint32 labels, MergeResult)``; the batch runner does the same chunk by
        chunk without holding the full image.
    """
    merger = Merger(min_area=min_area)
    by_key: dict[TileKey, tuple[Tile, Labels, TileStats]] = {}
    for tile, labels, names, scores in tiles:
        stats = tile_stats(tile, labels, key=tile.index, class_names=names, scores=scores)
        merger.add_tile(stats)
        by_key[tile.index] = (tile, np.asarray(labels), stats)
    match_neighbours(
        merger,
        {key: tile for key, (tile, _, _) in by_key.items()},
        {key: stats for key, (_, _, stats) in by_key.items()},
        lambda key: by_key[key][1],
        plane_ndim=0,
        min_iou=min_iou,
        sliver_area=sliver_area,
    )
    result = merger.resolve()
    out = np.zeros(image_shape, np.uint32)
    for key, (tile, labels, _) in by_key.items():
        rows, cols = tile.core_in_outer
        out[tile.core_slices] = result.lookup[key][labels[rows, cols]]
    return out, result
