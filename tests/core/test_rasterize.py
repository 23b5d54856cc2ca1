"""Rasterisation of visual prompts: exact pixels on small frames, and fixture parity."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seem.core.prompts import Box, MaskPrompt, ObjectPrompt, Points, Polygon, Scribble
from napari_seem.core.rasterize import (
    from_frame,
    rasterize_object,
    rasterize_objects,
    rasterize_prompts,
    to_frame,
)
from tests.model.reference import load_npz


def _grid(*rows: str) -> np.ndarray:
    """A bool mask drawn as text: ``#`` = True, ``.`` = False."""
    return np.array([[ch == "#" for ch in row] for row in rows])


def _pos(prompt, shape, **kwargs) -> np.ndarray:
    pos, neg = rasterize_prompts([prompt], shape, **kwargs)
    assert not neg.any()
    return pos


# ---------------------------------------------------------------------------------- clicks


def test_click_is_a_3x3_blob_on_the_rounded_pixel():
    pos, neg = rasterize_prompts([Points.clicks(positive=[(2.4, 3.6)], negative=[(0, 0)])], (5, 7))
    np.testing.assert_array_equal(pos, _grid(".......", "...###.", "...###.", "...###.", "......."))
    np.testing.assert_array_equal(neg, _grid("##.....", "##.....", ".......", ".......", "......."))


def test_click_blob_ignores_scale_and_is_clipped():
    # Level-0 (10, 10) at scale 0.25 lands on frame (2.125, 2.125) -> pixel (2, 2).
    pos = _pos(Points.click(10, 10), (4, 3), scale=0.25)
    np.testing.assert_array_equal(pos, _grid("...", ".##", ".##", ".##"))


def test_click_rounds_halves_up_so_tiles_agree():
    pos = _pos(Points.click(1.5, 2.5), (5, 5))  # pixel (2, 3)
    assert np.argwhere(pos).min(axis=0).tolist() == [1, 2]
    tile = _pos(Points.click(1.5, 2.5), (5, 5), offset=(1, 1))
    np.testing.assert_array_equal(tile[:4, :4], pos[1:, 1:])


# -------------------------------------------------------------------------------- scribbles


def test_scribble_with_default_3px_brush():
    pos = _pos(Scribble([(2, 1), (2, 4)]), (5, 7))
    np.testing.assert_array_equal(pos, _grid(".......", "######.", "######.", "######.", "......."))


def test_scribble_diagonal_1px_brush_and_negative():
    _, neg = rasterize_prompts(
        [Scribble([(0, 0), (3, 3), (3, 5)], width=1, positive=False)], (4, 6)
    )
    np.testing.assert_array_equal(neg, _grid("#.....", ".#....", "..#...", "...###"))


def test_scribble_even_brush_extends_up_left_and_single_vertex_is_a_dab():
    pos = _pos(Scribble([(2, 2)], width=2), (4, 4))
    np.testing.assert_array_equal(pos, _grid("....", ".##.", ".##.", "...."))


def test_scribble_brush_width_scales_and_stays_at_least_one_pixel():
    pos = _pos(Scribble([(4, 0), (4, 18)], width=6), (5, 10), scale=0.5)  # brush 3 px
    assert pos.any(axis=1).tolist() == [False, True, True, True, False]
    thin = _pos(Scribble([(4, 0), (4, 18)], width=1), (5, 10), scale=0.25)  # 0.25 -> 1 px
    assert thin.sum(axis=0).max() == 1


def test_scribble_outside_the_frame_is_clipped():
    # The tile is level-0 rows 5..7, cols 5..9; the stroke runs along row 4, above it.
    pos = _pos(Scribble([(4, 0), (4, 20)]), (3, 5), offset=(5, 5))
    np.testing.assert_array_equal(pos, _grid("#####", ".....", "....."))


def test_a_brush_wider_than_the_frame_paints_the_same_pixels_in_bounded_memory():
    """Issue 16 finding 4 in process: a brush wider than the frame used to allocate a canvas
    of (frame + brush)^2 pixels (width 1e9: MemoryError); now the frame's memory only."""
    import tracemalloc

    from napari_seem.core.rasterize import _paint_rectangles

    # exact: the difference-array path equals painting every clipped rectangle by hand
    rng = np.random.default_rng(0)
    low = rng.integers(-30, 40, size=(40, 2))
    high = low + rng.integers(0, 50, size=(40, 2))
    fast = np.zeros((37, 23), bool)
    _paint_rectangles(fast, low, high)
    slow = np.zeros((37, 23), bool)
    for (a, b), (c, d) in zip(low, high, strict=True):
        slow[max(a, 0) : max(c + 1, 0), max(b, 0) : max(d + 1, 0)] = True
    np.testing.assert_array_equal(fast, slow)
    # a stroke along row 2 of a 6 x 8 frame, brush 9 (wider than the frame: every row
    # within 4 of row 2 is painted) and brush 1e9 (everything)
    wide = _pos(Scribble([(2, 1), (2, 5)], width=9), (6, 8))
    assert wide.all()  # rows 2 +- 4 and cols 1..5 +- 4 cover the whole 6 x 8 frame
    tracemalloc.start()
    huge = _pos(Scribble([(100, 100), (300, 400)], width=1e9), (512, 512))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert huge.all()
    assert peak < 64 * 1024**2, peak  # a few frame-sized arrays, not (frame + 1e9)^2


# ------------------------------------------------------------------------------ boxes, etc.


def test_box_fill_covers_pixel_centres_inside_inclusive():
    pos = _pos(Box(1, 2, 3, 4), (5, 6))
    np.testing.assert_array_equal(pos, _grid("......", "..###.", "..###.", "..###.", "......"))
    # A napari rectangle drawn along pixel edges covers the same pixels.
    np.testing.assert_array_equal(_pos(Box(0.5, 1.5, 3.5, 4.5), (5, 6)), pos)


def test_box_center_mode_is_a_click_at_the_centre():
    box = Box(0, 0, 4, 6)
    np.testing.assert_array_equal(
        _pos(box, (6, 8), box_mode="center"), _pos(Points.click(2, 3), (6, 8))
    )


def test_box_thinner_than_a_frame_pixel_keeps_one_row():
    pos = _pos(Box(4.2, 0, 4.6, 9), (3, 3), scale=1 / 3)  # frame rows 1.07..1.20
    assert pos.any(axis=1).tolist() == [False, True, False]


def test_polygon_fill_and_outline():
    pos = _pos(Polygon([(1, 1), (1, 8), (8, 4)]), (10, 10))
    np.testing.assert_array_equal(
        pos,
        _grid(
            "..........",
            ".########.",
            ".#######..",
            "..######..",
            "..#####...",
            "...####...",
            "...###....",
            "....##....",
            "....#.....",
            "..........",
        ),
    )


def test_rectangle_polygon_equals_box():
    poly = Polygon([(60, 30), (60, 64), (94, 64), (94, 30)], positive=False)
    _, neg = rasterize_prompts([poly], (120, 150))
    np.testing.assert_array_equal(neg, _pos(Box(60, 30, 94, 64), (120, 150)))


def test_mask_is_placed_at_its_offset_and_clipped():
    mask = MaskPrompt(_grid("#.", "##"), (3, 4))
    np.testing.assert_array_equal(
        _pos(mask, (5, 6)), _grid("......", "......", "......", "....#.", "....##")
    )
    # A tile starting at level-0 (4, 5) sees only the bottom-right pixel.
    np.testing.assert_array_equal(_pos(mask, (2, 2), offset=(4, 5)), _grid("#.", ".."))


def test_mask_resizes_nearest_neighbour():
    mask = MaskPrompt(_grid("#.", ".#"), (0, 0))
    np.testing.assert_array_equal(
        _pos(mask, (4, 4), scale=2), _grid("##..", "##..", "..##", "..##")
    )
    big = MaskPrompt(np.kron(_grid("#.", ".#"), np.ones((2, 2), bool)))
    np.testing.assert_array_equal(_pos(big, (2, 2), scale=0.5), _grid("#.", ".#"))


def test_mask_smaller_than_a_frame_pixel_is_splatted_not_lost():
    pos = _pos(MaskPrompt(np.ones((1, 1), bool), (10, 10)), (3, 3), scale=0.1)
    np.testing.assert_array_equal(pos, _grid("...", ".#.", "..."))
    # ... but a mask outside the frame stays outside.
    assert not _pos(MaskPrompt(np.ones((1, 1), bool), (10, 10)), (3, 3)).any()


# ---------------------------------------------------------------------------- frame algebra


def test_to_frame_and_from_frame_are_inverse():
    coords = np.array([[0.0, 0.0], [10.5, -0.5], [99.0, 3.25]])
    frame = to_frame(coords, scale=(0.5, 2.0), offset=(4, 1))
    np.testing.assert_allclose(frame, [[-2.25, -1.5], [3.0, -2.5], [47.25, 5.0]])
    np.testing.assert_allclose(from_frame(frame, scale=(0.5, 2.0), offset=(4, 1)), coords)
    np.testing.assert_allclose(to_frame(coords, offset=(2, 3)), coords - (2, 3))


def _every_kind_object() -> ObjectPrompt:
    mask = np.zeros((6, 5), bool)
    mask[1:5, 2] = True
    mask[3, 0:5] = True
    return ObjectPrompt(
        (
            Points.clicks(positive=[(3, 4), (20.6, 7.2)], negative=[(12, 29)]),
            Box(14.5, 20, 25, 27.5),
            Scribble([(1, 10), (9, 18), (2, 29)], width=4),
            Polygon([(16, 2), (29, 4), (22, 12)], positive=False),
            MaskPrompt(mask, (24, 20)),
        )
    )


@pytest.mark.parametrize("offset", [(0, 0), (7, 11), (13, 3), (25, 28)])
def test_tile_frame_equals_crop_of_full_frame(offset):
    obj = _every_kind_object()
    full_pos, full_neg = rasterize_object(obj, (32, 33))
    r, c = offset
    pos, neg = rasterize_object(obj, (9, 8), offset=(r, c))
    np.testing.assert_array_equal(pos, np.pad(full_pos, 8)[r + 8 : r + 17, c + 8 : c + 16])
    np.testing.assert_array_equal(neg, np.pad(full_neg, 8)[r + 8 : r + 17, c + 8 : c + 16])


def test_rasterize_objects_stacks_and_text_only_objects_are_empty():
    objects = [_every_kind_object(), ObjectPrompt(text="nucleus")]
    pos, neg = rasterize_objects(objects, (32, 33), scale=0.5)
    assert pos.shape == neg.shape == (2, 32, 33) and pos.dtype == np.bool_
    expected_pos, expected_neg = rasterize_object(objects[0], (32, 33), scale=0.5)
    np.testing.assert_array_equal(pos[0], expected_pos)
    np.testing.assert_array_equal(neg[0], expected_neg)
    assert not pos[1].any() and not neg[1].any()
    assert rasterize_objects([], (4, 5))[0].shape == (0, 4, 5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"box_mode": "corners"}, "box_mode must be 'fill' or 'center'"),
        ({"scale": 0}, "scale must be positive and finite"),
        ({"scale": (1, float("nan"))}, "scale must be positive and finite"),
        ({"offset": (1, 2, 3)}, "offset must be a number or a"),
    ],
)
def test_bad_frame_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        rasterize_prompts([Points.click(1, 1)], (4, 4), **kwargs)
    with pytest.raises(ValueError, match="out_shape must be two positive integers"):
        rasterize_prompts([], (4, 0))


# ------------------------------------------------------------------------- fixture parity

STROKE_A = Scribble([(25, 62), (40, 70), (55, 80), (62, 95)])
CLICK_B = Points.click(20, 125)


def _interactive_cases(neg_click: tuple[int, int]) -> dict[str, list[ObjectPrompt]]:
    with_negative = ObjectPrompt((STROKE_A, Points.click(*neg_click, positive=False)))
    return {
        "single_r1": [ObjectPrompt(STROKE_A)],
        "single_r2": [with_negative],
        "multi_r1": [ObjectPrompt(STROKE_A), ObjectPrompt(CLICK_B)],
        "multi_r2": [with_negative, ObjectPrompt(CLICK_B)],
        "big_r1": [ObjectPrompt(Box(60, 30, 94, 64))],
    }


@pytest.mark.parametrize(
    ("fixture", "neg_click", "cases"),
    [
        ("focalt_v1_tiny", (100, 20), ["single_r1", "single_r2", "multi_r1", "multi_r2", "big_r1"]),
        ("samvitb_v1_tiny", (90, 20), ["single_r1", "single_r2"]),
    ],
)
def test_interactive_prompt_masks_match_the_fixtures_exactly(fixture, neg_click, cases):
    data = load_npz(fixture, "interactive")
    built = _interactive_cases(neg_click)
    for case in cases:
        expected_pos = data[f"{case}_pos_mask"][0].astype(bool)  # (P, H_pad, W_pad)
        expected_neg = data[f"{case}_neg_mask"][0].astype(bool)
        # The padded frame: the image's own pixels plus zero padding bottom/right.
        pos, neg = rasterize_objects(built[case], expected_pos.shape[1:])
        assert int((pos != expected_pos).sum()) == 0, case
        assert int((neg != expected_neg).sum()) == 0, case


def test_image_size_prompt_masks_match_the_fixtures_exactly():
    data = load_npz("focalt_v1_tiny", "interactive")
    shape = data["stroke_A_imgsize"].shape
    for name, prompt in [
        ("stroke_A_imgsize", STROKE_A),
        ("click_B_imgsize", CLICK_B),
        ("neg_click_imgsize", Points.click(100, 20)),
        ("neg_click_B_imgsize", Points.click(70, 130)),
        ("big_box_imgsize", Box(60, 30, 94, 64)),
    ]:
        np.testing.assert_array_equal(_pos(prompt, shape), data[name], err_msg=name)


@pytest.mark.parametrize("fixture", ["focalt_v1_tiny", "samvitb_v1_tiny"])
def test_referring_stroke_matches_the_fixture_exactly(fixture):
    expected = load_npz(fixture, "referring_image")["ref_stroke_imgsize"]
    stroke = Scribble([(30, 40), (50, 60), (70, 65)])
    np.testing.assert_array_equal(_pos(stroke, expected.shape), expected)
