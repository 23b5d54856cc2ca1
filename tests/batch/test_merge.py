"""Seam-aware merging on synthetic per-tile label outputs (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seem.batch.merge import Merger, match_pair, merge_tiles, tile_stats
from napari_seem.core.tiling import Tile, TileGrid


def _disc(labels: np.ndarray, r: float, c: float, rad: float, value: int) -> None:
    rows, cols = np.ogrid[: labels.shape[0], : labels.shape[1]]
    labels[(rows - r) ** 2 + (cols - c) ** 2 <= rad**2] = value


def _truth() -> tuple[np.ndarray, TileGrid]:
    """A 300 x 300 image, 100-pixel cores, halo 16: objects inside tiles, across edges,
    on the 4-tile corners, and a bar through three tiles."""
    grid = TileGrid((300, 300), 100, halo=16)
    truth = np.zeros((300, 300), np.int64)
    _disc(truth, 50, 50, 20, 1)  # inside tile (0, 0)
    _disc(truth, 50, 100, 18, 2)  # across the vertical seam
    _disc(truth, 100, 150, 12, 3)  # across the horizontal seam
    _disc(truth, 100, 100, 14, 4)  # on the corner of four tiles
    _disc(truth, 200, 200, 9, 5)  # on another 4-tile corner
    truth[245:255, 20:280] = 6  # a bar through three tiles
    _disc(truth, 160, 40, 6, 7)
    return truth, grid


def _tile_outputs(truth: np.ndarray, grid: TileGrid, seed: int = 0) -> list:
    """Every tile labelled from the truth, with shuffled local ids (as a model would)."""
    rng = np.random.default_rng(seed)
    out = []
    for tile in grid:
        crop = truth[tile.outer_slices]
        present = np.unique(crop[crop > 0])
        local = rng.permutation(len(present)) + 1
        table = np.zeros(int(truth.max()) + 1, np.uint32)
        table[present] = local
        names = [""] * len(present)
        for gid, lid in zip(present, local, strict=True):
            names[lid - 1] = f"class{gid}"
        out.append((tile, table[crop], names, [0.5 + 0.01 * i for i in range(len(present))]))
    return out


def _assert_same_objects(truth: np.ndarray, merged: np.ndarray) -> None:
    """``merged`` is a relabelling of ``truth``: one id per true object and vice versa."""
    assert ((truth > 0) == (merged > 0)).all()
    for gid in np.unique(truth[truth > 0]):
        ids = np.unique(merged[truth == gid])
        assert len(ids) == 1, (gid, ids)
    for mid in np.unique(merged[merged > 0]):
        ids = np.unique(truth[merged == mid])
        assert len(ids) == 1, (mid, ids)


def test_objects_across_edges_and_corners_get_one_id() -> None:
    truth, grid = _truth()
    merged, result = merge_tiles(_tile_outputs(truth, grid), truth.shape)
    _assert_same_objects(truth, merged)
    assert result.count == len(np.unique(truth)) - 1
    by_id = {row["id"]: row for row in result.rows}
    corner = int(merged[100, 100])
    assert by_id[corner]["pieces"] == 4  # the corner disc lies in four cores
    assert by_id[corner]["area"] == int((truth == 4).sum())
    rows, cols = np.nonzero(truth == 4)
    assert by_id[corner]["bbox"] == [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]
    assert by_id[corner]["class_name"] == "class4"
    bar = int(merged[250, 150])
    assert by_id[bar]["pieces"] == 3


def test_ids_do_not_depend_on_the_order_tiles_finish() -> None:
    truth, grid = _truth()
    outputs = _tile_outputs(truth, grid, seed=1)
    first, _ = merge_tiles(outputs, truth.shape)
    second, _ = merge_tiles(list(reversed(outputs)), truth.shape)
    np.testing.assert_array_equal(first, second)
    # other local ids give the same objects (ids follow tile order, then local ids)
    third, _ = merge_tiles(_tile_outputs(truth, grid, seed=2), truth.shape)
    _assert_same_objects(first.astype(np.int64), third)


def test_small_objects_are_dropped() -> None:
    truth, grid = _truth()
    truth[10:12, 280:282] = 8  # 4 pixels
    merged, result = merge_tiles(_tile_outputs(truth, grid), truth.shape, min_area=5)
    assert merged[10:12, 280:282].max() == 0
    assert result.count == 7


def _seam_pair(sliver_cut: int) -> tuple[Tile, np.ndarray, Tile, np.ndarray]:
    """Two tiles side by side (cores 0..100 and 100..200, halo 16); one object lies mostly
    in the right tile and reaches 4 pixels into the left core. The left tile's model saw
    only ``sliver_cut`` pixels of it to the right of the seam."""
    grid = TileGrid((60, 200), (60, 100), halo=16)
    left, right = grid.tile(0, 0), grid.tile(0, 1)
    truth = np.zeros((60, 200), np.int64)
    truth[20:40, 96:160] = 1
    labels_left = np.where(truth[left.outer_slices] > 0, 1, 0)
    labels_left[:, 100 + sliver_cut :] = 0  # the left tile cut the object short
    labels_right = np.where(truth[right.outer_slices] > 0, 1, 0)
    return left, labels_left, right, labels_right


def test_sliver_at_a_border_joins_the_neighbour() -> None:
    left, la, right, lb = _seam_pair(sliver_cut=2)
    sa = tile_stats(left, la, key=(0, 0), class_names=["x"], scores=[1.0])
    sb = tile_stats(right, lb, key=(0, 1), class_names=["x"], scores=[1.0])
    assert sa.core_area[0] == 20 * 4  # the sliver: 4 columns in the left core
    # IoU in the overlap is 6 / 20 columns: no match by IoU ...
    assert (
        match_pair(
            left, la, right, lb, core_area_a=sa.core_area, core_area_b=sb.core_area, sliver_area=0
        )
        == []
    )
    # ... but the small piece lies wholly on the neighbour's object, so it joins it
    pairs = match_pair(left, la, right, lb, core_area_a=sa.core_area, core_area_b=sb.core_area)
    assert pairs == [(1, 1)]
    merger = Merger()
    merger.add_tile(sa)
    merger.add_tile(sb)
    merger.add_matches((0, 0), (0, 1), pairs)
    result = merger.resolve()
    assert result.count == 1 and result.rows[0]["area"] == 20 * 64
    assert result.rows[0]["bbox"] == [20, 96, 40, 160]


def test_keyed_pieces_join_by_key_and_keep_it_as_id() -> None:
    grid = TileGrid((40, 80), (40, 40), halo=8)
    left, right = grid.tile(0, 0), grid.tile(0, 1)
    la = np.zeros(left.outer_shape, np.uint32)
    la[10:20, 30:48] = 1
    lb = np.zeros(right.outer_shape, np.uint32)
    lb[10:20, 0:10] = 1
    merger = Merger()
    merger.add_tile(
        tile_stats(left, la, key=(0, 0), class_names=["a"], scores=[1], object_keys=[7])
    )
    merger.add_tile(
        tile_stats(right, lb, key=(0, 1), class_names=["a"], scores=[1], object_keys=[7])
    )
    result = merger.resolve()
    assert [row["id"] for row in result.rows] == [7]
    assert result.rows[0]["pieces"] == 2
    assert result.lookup[(0, 0)].tolist() == [0, 7]


def test_tile_stats_rejects_labels_that_do_not_fit() -> None:
    tile = TileGrid((40, 40), 20, halo=4).tile(0, 0)
    with pytest.raises(ValueError, match="do not cover"):
        tile_stats(tile, np.zeros((5, 5), np.uint32), key=(0, 0), class_names=[], scores=[])
    with pytest.raises(ValueError, match="only 0 objects"):
        tile_stats(
            tile, np.ones(tile.outer_shape, np.uint32), key=(0, 0), class_names=[], scores=[]
        )
