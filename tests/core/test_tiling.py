"""Tiling is tested on arrays: tiled results must equal untiled ones."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import disk, ellipse, line
from skimage.measure import label

from napari_seem.core.tiling import (
    SIDES,
    Tile,
    TileGrid,
    crop_core,
    grow_until_closed,
    match_labels_across_seam,
    outer_overlap,
    stitch,
    touches_core_edge,
)

# Small model input so that big-object tests stay fast: core 48, outer 64.
MODEL_INPUT, HALO = 64, 8
SHAPES = [(1, 1), (30, 50), (64, 64), (65, 64), (100, 37), (200, 317), (48, 97)]


def tight(full: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    rows, cols = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
    if rows.size == 0:
        return np.zeros((0, 0), dtype=bool), (0, 0)
    crop = full[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return crop, (int(rows[0]), int(cols[0]))


def assert_same(result: tuple[np.ndarray, tuple[int, int]], full: np.ndarray) -> None:
    expected, offset = tight(full)
    assert result[1] == offset
    np.testing.assert_array_equal(result[0], expected)


# -- geometry -------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("size", "halo"), [(16, 0), (16, 5), ((7, 20), 3), (48, 8)])
def test_cores_partition_image_and_outer_is_clipped_halo(shape, size, halo):
    grid = TileGrid(shape, size, halo)
    count = np.zeros(shape, dtype=int)
    tiles = list(grid)
    assert len(tiles) == len(grid) == grid.grid_shape[0] * grid.grid_shape[1]
    for tile in tiles:
        count[tile.core_slices] += 1
        r0, c0, r1, c1 = tile.core
        h, w = shape
        assert tile.outer == (
            max(r0 - halo, 0),
            max(c0 - halo, 0),
            min(r1 + halo, h),
            min(c1 + halo, w),
        )
        assert grid.tile(*tile.index) == tile
    np.testing.assert_array_equal(count, 1)


@pytest.mark.parametrize("shape", SHAPES)
def test_for_model_outer_tiles_match_model_input(shape):
    grid = TileGrid.for_model(shape, model_input=MODEL_INPUT, halo=HALO)
    for tile in grid:
        oh, ow = tile.outer_shape
        assert oh <= MODEL_INPUT and ow <= MODEL_INPUT
        r0, c0, r1, c1 = tile.outer
        # away from the image border the outer tile is exactly the model input
        if r0 > 0 and r1 < shape[0]:
            assert oh == MODEL_INPUT
        if c0 > 0 and c1 < shape[1]:
            assert ow == MODEL_INPUT


@pytest.mark.parametrize("shape", [(1, 1), (30, 50), (64, 64)])
def test_image_not_larger_than_model_input_is_one_tile(shape):
    grid = TileGrid.for_model(shape, model_input=MODEL_INPUT, halo=HALO)
    assert len(grid) == 1
    (tile,) = grid
    assert tile.core == tile.outer == (0, 0, *shape)


def test_default_for_model_and_axis_that_fits():
    grid = TileGrid.for_model((500, 2000))
    assert grid.tile_size == (500, 384)
    assert grid.grid_shape == (1, 6)
    assert grid.tile(0, 2).outer_shape == (500, 512)


def test_invalid_grids():
    with pytest.raises(ValueError):
        TileGrid((0, 5), 4)
    with pytest.raises(ValueError):
        TileGrid((5, 5), 0)
    with pytest.raises(ValueError):
        TileGrid((5, 5), 4, -1)
    with pytest.raises(ValueError):
        TileGrid.for_model((5, 5), model_input=64, halo=32)
    with pytest.raises(IndexError):
        TileGrid((5, 5), 4).tile(2, 0)


def test_tile_at_and_tiles_touching():
    grid = TileGrid((100, 130), 32, 4)  # 4 x 5 tiles
    assert grid.tile_at(0, 0).index == (0, 0)
    assert grid.tile_at(31, 32).index == (0, 1)
    assert grid.tile_at(99, 129).index == (3, 4)
    with pytest.raises(IndexError):
        grid.tile_at(100, 0)
    assert [t.index for t in grid.tiles_touching((31, 31, 33, 33))] == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
    ]
    assert [t.index for t in grid.tiles_touching((10, 40, 11, 64))] == [(0, 1)]
    assert [t.index for t in grid.tiles_touching((-50, 120, 40, 500))] == [
        (0, 3),
        (0, 4),
        (1, 3),
        (1, 4),
    ]
    assert grid.tiles_touching((100, 0, 120, 10)) == []
    assert grid.tiles_touching((5, 5, 5, 9)) == []  # empty box
    assert len(grid.tiles_touching((0, 0, 100, 130))) == len(grid)


def test_neighbours():
    grid = TileGrid((100, 130), 32, 4)
    middle = grid.tile(1, 1)
    assert [t.index for t in grid.neighbours(middle, ["right", "top"])] == [(0, 1), (1, 2)]
    assert len(grid.neighbours(middle)) == 8
    corner = grid.tile(0, 0)
    assert [t.index for t in grid.neighbours(corner)] == [(1, 0), (0, 1), (1, 1)]
    assert grid.neighbours(corner, ["top", "left", "top_left"]) == []
    with pytest.raises(ValueError):
        grid.neighbours(middle, ["up"])  # type: ignore[list-item]


# -- crop and stitch: tiled == untiled ------------------------------------------------


def tiled_apply(grid: TileGrid, image: np.ndarray, fn) -> tuple[np.ndarray, tuple[int, int]]:
    return stitch(grid.image_shape, [(t, fn(image[t.outer_slices])) for t in grid])


@pytest.mark.parametrize("shape", SHAPES)
def test_tiled_threshold_equals_untiled(shape):
    image = np.random.default_rng(sum(shape)).random(shape)
    grid = TileGrid.for_model(shape, model_input=MODEL_INPUT, halo=HALO)
    assert_same(tiled_apply(grid, image, lambda x: x > 0.7), image > 0.7)


@pytest.mark.parametrize("shape", [(30, 50), (100, 37), (200, 317)])
def test_tiled_neighbourhood_filter_equals_untiled_within_halo(shape):
    # a dilation of radius <= halo only needs the halo for context
    image = np.random.default_rng(0).random(shape) > 0.995
    grid = TileGrid.for_model(shape, model_input=MODEL_INPUT, halo=HALO)
    structure = np.ones((2 * HALO + 1, 2 * HALO + 1), dtype=bool)

    def dilate(x):
        return ndimage.binary_dilation(x, structure)

    assert_same(tiled_apply(grid, image, dilate), dilate(image))


def test_stitch_keeps_cores_only_and_empty_union():
    grid = TileGrid((40, 40), 20, 5)
    # every tile claims its whole outer box: only the cores count, so no double counting
    pieces = [(t, np.ones(t.outer_shape, dtype=bool)) for t in grid]
    mask, offset = stitch(grid.image_shape, pieces)
    assert offset == (0, 0) and mask.shape == (40, 40) and mask.all()
    # a piece set only in its halo contributes nothing
    tile = grid.tile(0, 0)
    halo_only = np.zeros(tile.outer_shape, dtype=bool)
    halo_only[-1, -1] = True
    mask, offset = stitch(grid.image_shape, [(tile, halo_only)])
    assert mask.shape == (0, 0) and offset == (0, 0)
    with pytest.raises(ValueError):
        stitch(grid.image_shape, [(tile, np.zeros((3, 3), dtype=bool))])


def test_crop_core_keeps_leading_axes():
    grid = TileGrid((50, 50), 20, 4)
    image = np.arange(3 * 50 * 50).reshape(3, 50, 50)
    for tile in grid:
        np.testing.assert_array_equal(
            crop_core(tile, image[(slice(None), *tile.outer_slices)]),
            image[(slice(None), *tile.core_slices)],
        )


# -- edges and growth -----------------------------------------------------------------


def test_touches_core_edge():
    grid = TileGrid((90, 90), 30, 5)
    middle = grid.tile(1, 1)
    mask = np.zeros(middle.outer_shape, dtype=bool)
    rows, cols = middle.core_in_outer
    mask[rows.start, cols.start + 3] = True  # top edge
    assert touches_core_edge(middle, mask) == {"top"}
    mask[rows.start - 1, :] = True  # the halo does not count
    assert touches_core_edge(middle, mask) == {"top"}
    mask[rows.stop - 1, cols.stop - 1] = True  # bottom-right corner pixel
    assert touches_core_edge(middle, mask) == {"top", "bottom", "right", "bottom_right"}
    assert touches_core_edge(middle, np.zeros(middle.outer_shape, dtype=bool)) == set()

    corner = grid.tile(0, 0)  # top and left are image borders
    full = np.ones(corner.outer_shape, dtype=bool)
    assert touches_core_edge(corner, full) == {"bottom", "right", "bottom_right"}
    (single,) = TileGrid((10, 10), 10, 3)
    assert touches_core_edge(single, np.ones((10, 10), dtype=bool)) == set()


def window_decoder(obj: np.ndarray, calls: list[Tile]):
    """A fake model: the tile's answer is the object seen through its outer window."""

    def decode(tile: Tile) -> np.ndarray:
        calls.append(tile)
        return obj[tile.outer_slices]

    return decode


def ellipse_object(shape=(300, 340)) -> np.ndarray:
    obj = np.zeros(shape, dtype=bool)
    obj[ellipse(150, 170, 110, 140, shape=shape)] = True
    return obj


def snake_object(shape=(300, 300)) -> np.ndarray:
    obj = np.zeros(shape, dtype=bool)
    obj[20:25, 10:251] = True
    obj[20:201, 245:251] = True
    obj[195:201, 60:251] = True
    obj[195:291, 60:66] = True
    return obj


def diagonal_object(shape=(200, 200)) -> np.ndarray:
    # 8-connected line crossing tile corners (47, 47) -> (48, 48) with core 48
    obj = np.zeros(shape, dtype=bool)
    obj[line(5, 5, 190, 190)] = True
    return obj


@pytest.mark.parametrize(
    ("make", "start"),
    [(ellipse_object, (150, 170)), (snake_object, (22, 12)), (diagonal_object, (5, 5))],
)
def test_grow_until_closed_recovers_whole_object(make, start):
    obj = make()
    grid = TileGrid.for_model(obj.shape, model_input=MODEL_INPUT, halo=HALO)
    calls: list[Tile] = []
    result = grow_until_closed(grid, [grid.tile_at(*start)], window_decoder(obj, calls))
    assert not result.truncated
    assert_same((result.mask, result.offset), obj)
    assert [t.index for t in result.tiles] == [t.index for t in calls]
    assert len({t.index for t in calls}) == len(calls)  # each tile decoded once
    # every tile holding part of the object was visited, and only those or their neighbours
    holding = {t.index for t in grid if obj[t.core_slices].any()}
    visited = {t.index for t in result.tiles}
    assert holding <= visited
    assert len(visited) < len(grid) or len(holding) == len(grid)


def test_grow_until_closed_cap():
    obj = ellipse_object()
    grid = TileGrid.for_model(obj.shape, model_input=MODEL_INPUT, halo=HALO)
    whole = grow_until_closed(grid, [grid.tile_at(150, 170)], window_decoder(obj, []))
    n = len(whole.tiles)
    assert n > 3
    exact = grow_until_closed(grid, [grid.tile_at(150, 170)], window_decoder(obj, []), max_tiles=n)
    assert not exact.truncated
    calls: list[Tile] = []
    cut = grow_until_closed(grid, [grid.tile_at(150, 170)], window_decoder(obj, calls), max_tiles=3)
    assert cut.truncated and len(cut.tiles) == len(calls) == 3
    h, w = cut.mask.shape
    r, c = cut.offset
    assert cut.mask.sum() < obj.sum()
    assert not (cut.mask & ~obj[r : r + h, c : c + w]).any()
    with pytest.raises(ValueError):
        grow_until_closed(grid, [], window_decoder(obj, []), max_tiles=0)


def test_grow_until_closed_empty_and_small_image():
    obj = np.zeros((40, 40), dtype=bool)
    grid = TileGrid.for_model(obj.shape, model_input=MODEL_INPUT, halo=HALO)
    result = grow_until_closed(grid, grid.tiles_touching((0, 0, 40, 40)), window_decoder(obj, []))
    assert result.mask.shape == (0, 0) and len(result.tiles) == 1 and not result.truncated


# -- seam matching --------------------------------------------------------------------


def seam_scene(shape=(150, 150), core=48) -> np.ndarray:
    """Disks on seams (edges and corners between tiles) and inside tiles; label = id."""
    truth = np.zeros(shape, dtype=np.int32)
    centres = [(48, 20), (20, 96), (48, 48), (96, 96), (96, 130), (70, 70), (130, 20), (48, 120)]
    for k, (r, c) in enumerate(centres, start=1):
        truth[disk((r, c), 9, shape=shape)] = k
    return truth


def test_match_labels_across_seam_finds_every_crossing_object():
    truth = seam_scene()
    grid = TileGrid(truth.shape, 48, 10)
    # each tile labels its own outer window independently, with its own ids
    tile_labels = {}
    for tile in grid:
        local = label(truth[tile.outer_slices] > 0)
        tile_labels[tile.index] = np.where(
            local > 0, local + 100 * (tile.index[0] * 7 + tile.index[1]), 0
        )
    checked = 0
    for a in grid:
        for b in grid.neighbours(a):
            sa, sb = outer_overlap(a, b)
            la, lb = tile_labels[a.index], tile_labels[b.index]
            ta, tb = truth[a.outer_slices][sa], truth[b.outer_slices][sb]
            expected = set()
            for ga in np.unique(ta[ta > 0]):
                id_a = int(np.unique(la[sa][ta == ga])[0])
                id_b = int(np.unique(lb[sb][tb == ga])[0])
                expected.add((id_a, id_b))
            got = match_labels_across_seam(la, lb, sa, sb)
            assert set(got) == expected
            checked += len(got)
    assert checked > 0


def test_match_labels_one_to_one_and_threshold():
    a = np.zeros((10, 20), dtype=int)
    b = np.zeros((10, 20), dtype=int)
    a[:, 0:10] = 1
    b[:, 0:6] = 5  # IoU 0.6 with label 1
    b[:, 6:10] = 6  # IoU 0.4
    a[:, 12:14] = 2
    b[:, 13:20] = 7  # IoU 1/8
    everything = (slice(None), slice(None))
    assert match_labels_across_seam(a, b, everything, everything) == [(1, 5)]
    assert match_labels_across_seam(a, b, everything, everything, min_iou=0.1) == [(1, 5), (2, 7)]
    assert match_labels_across_seam(a, b, everything, everything, min_iou=0.7) == []
    # only the overlap counts: restricted to columns 0:6, label 1 and 5 coincide
    left = (slice(None), slice(0, 6))
    assert match_labels_across_seam(a, b, left, left, min_iou=1.0) == [(1, 5)]
    assert match_labels_across_seam(np.zeros_like(a), b, everything, everything) == []
    with pytest.raises(ValueError):
        match_labels_across_seam(a, b, left, everything)
    with pytest.raises(ValueError):
        match_labels_across_seam(a, b, everything, everything, min_iou=0)


def test_outer_overlap():
    grid = TileGrid((100, 100), 30, 5)
    a, b = grid.tile(0, 0), grid.tile(0, 1)
    sa, sb = outer_overlap(a, b)
    assert (sa[1].stop - sa[1].start) == 10 and sa[0] == sb[0]
    assert outer_overlap(grid.tile(0, 0), grid.tile(0, 2)) is None
    assert set(SIDES) >= {"top", "bottom", "left", "right"}
