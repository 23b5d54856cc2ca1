"""Prompt types: construction, validation messages, JSON round trips, import hygiene."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from napari_seem.core.arrays import rle_decode, rle_encode
from napari_seem.core.prompts import (
    Box,
    MaskPrompt,
    ObjectPrompt,
    Points,
    Polygon,
    PromptError,
    PromptSet,
    ReferringExample,
    Scribble,
    TextPrompt,
    prompt_from_dict,
)


def _json_round_trip(prompt):
    """to_dict -> JSON text -> from_dict (both the type's own and the generic one)."""
    text = json.dumps(prompt.to_dict())
    again = type(prompt).from_dict(json.loads(text))
    assert again == prompt
    assert prompt_from_dict(json.loads(text)) == prompt
    return again


def _every_visual_kind():
    mask = np.zeros((3, 4), dtype=bool)
    mask[1, 1:3] = True
    return (
        Points.clicks(positive=[(1.5, 2.0), (3, 4)], negative=[(5, 6)]),
        Box(1, 2, 5.5, 7),
        Scribble([(1, 1), (4, 6), (8, 2)], width=5.0, positive=False),
        Polygon([(0, 0), (0, 5), (5, 0)]),
        MaskPrompt(mask, (2, 3), positive=False),
    )


# ---------------------------------------------------------------------------- construction


@pytest.mark.parametrize("prompt", _every_visual_kind(), ids=lambda p: p.kind)
def test_every_visual_kind_round_trips_and_hashes(prompt):
    again = _json_round_trip(prompt)
    assert hash(again) == hash(prompt)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(prompt, dataclasses.fields(prompt)[0].name, None)


def test_points_constructors():
    points = Points.clicks(positive=[(1, 2)], negative=[(3, 4), (5, 6)])
    assert points.coords.dtype == np.float64
    assert points.coords.tolist() == [[1, 2], [3, 4], [5, 6]]
    assert points.positive.tolist() == [True, False, False]
    assert len(points) == 3 and points.has_positive
    assert Points.click(7, 8, positive=False).positive.tolist() == [False]
    more = points.with_click(9.5, 1.0)
    assert len(more) == 4 and more.positive[-1] and len(points) == 3
    # A single (row, col) pair and a scalar flag are accepted.
    single = Points([3, 4], np.bool_(True))
    assert single.coords.shape == (1, 2) and single.positive.tolist() == [True]


def test_arrays_are_read_only_copies():
    source = np.array([[1.0, 2.0]])
    points = Points(source, np.array([True]))
    source[0, 0] = 99
    assert points.coords[0, 0] == 1.0
    with pytest.raises(ValueError, match="read-only"):
        points.coords[0, 0] = 5
    mask = MaskPrompt(np.ones((2, 2), dtype=np.uint8))
    assert mask.mask.dtype == np.bool_
    with pytest.raises(ValueError, match="read-only"):
        mask.mask[0, 0] = False


def test_box_from_corners_sorts_and_center():
    box = Box.from_corners((10, 20), (4, 3))
    assert box == Box(4, 3, 10, 20)
    assert box.center == (7.0, 11.5)
    assert box.bounds() == (4.0, 3.0, 10.0, 20.0)


def test_mask_prompt_converts_and_crops():
    full = np.zeros((6, 7), dtype=np.int64)
    full[2:4, 3] = 1
    prompt = MaskPrompt.from_full(full)
    assert prompt.offset == (2, 3) and prompt.mask.shape == (2, 1) and prompt.mask.all()
    assert MaskPrompt(np.array([[0.0, 1.0]])).mask.tolist() == [[False, True]]
    assert MaskPrompt(full.astype(bool), (0.0, 0.0)).offset == (0, 0)
    assert "area=2" in repr(prompt)


def test_text_is_stripped():
    assert TextPrompt("  nucleus \n").text == "nucleus"
    assert _json_round_trip(TextPrompt("left cell")).text == "left cell"


def test_object_prompt_composes_and_round_trips():
    obj = ObjectPrompt([*_every_visual_kind()], "nucleus", label="n1")
    assert isinstance(obj.text, TextPrompt) and obj.has_positive
    assert _json_round_trip(obj).label == "n1"
    text_only = ObjectPrompt(text=TextPrompt("cell"))
    assert text_only.visual == ()
    _json_round_trip(text_only)
    single = ObjectPrompt(Points.click(1, 1))
    assert len(single.visual) == 1
    refined = single.with_prompts(Points.click(2, 2, positive=False))
    assert len(refined.visual) == 2 and len(single.visual) == 1
    # Negative-only visual prompts are fine when a text says which object.
    ObjectPrompt(Points.click(1, 1, positive=False), "nucleus")


def test_referring_example_round_trip_and_in_memory_image():
    image = np.zeros((30, 40, 3), dtype=np.uint8)
    example = ReferringExample.from_image(
        image, Scribble([(1, 1), (20, 30)]), image_ref="layer:cat", label="cat"
    )
    assert example.image_shape == (30, 40) and example.image is image
    again = _json_round_trip(example)
    assert again.image is None  # pixels never travel in prompts
    only_pixels = ReferringExample.from_image(image, [Points.click(3, 3)])
    with pytest.raises(PromptError, match="set `image_ref`"):
        only_pixels.to_dict()


def test_prompt_set_composes_everything():
    prompts = PromptSet(
        (10, 12),
        [ObjectPrompt(_every_visual_kind()), Box(0, 0, 9.5, 11.5)],  # a bare box is wrapped
        ["left cell", TextPrompt("nucleus")],
        ReferringExample((50, 60), [Points.click(49.5, 59.5)], image_ref="img2"),
        plane=(3, 1),
    )
    assert isinstance(prompts.objects[1], ObjectPrompt)
    assert [t.text for t in prompts.texts] == ["left cell", "nucleus"]
    assert prompts.tasks == ("interactive", "grounding", "referring")
    assert not prompts.is_empty
    data = json.loads(json.dumps(prompts.to_dict()))
    assert data["version"] == 1
    assert PromptSet.from_dict(data) == prompts
    empty = PromptSet([5, 5], texts="cell")
    assert empty.texts == (TextPrompt("cell"),) and empty.tasks == ("grounding",)
    assert PromptSet((5, 5)).is_empty


def test_coordinates_on_the_image_edge_are_inside():
    # The image covers [-0.5, H - 0.5]: a click on the outer half of an edge pixel is valid.
    PromptSet((4, 5), [Points.clicks(positive=[(-0.5, -0.5), (3.5, 4.5), (-0.3, 2)])])
    PromptSet((4, 5), [Box(-0.5, -0.5, 3.5, 4.5)])


# ------------------------------------------------------------------------------ rejections


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Points.click(float("nan"), 1), r"non-finite coordinate at index 0: \(nan, 1.0\)"),
        (lambda: Points([[1, 2], [3, np.inf]], np.array([True, True])), r"index 1: \(3.0, inf\)"),
        (lambda: Scribble([(1, 1), (-np.inf, 2)]), "Scribble.vertices holds a non-finite"),
        (lambda: Polygon([(0, 0), (1, np.nan), (2, 0)]), "Polygon.vertices holds a non-finite"),
        (lambda: Box(0, 0, float("nan"), 3), "Box.row_max must be finite"),
        (lambda: Box(0, 0, 5, float("inf")), "Box.col_max must be finite"),
        (lambda: Box("a", 0, 5, 5), "Box.row_min must be a number"),
        (lambda: Scribble([(1, 1)], width=float("nan")), "Scribble.width must be finite"),
    ],
)
def test_non_finite_and_non_numeric_values_are_rejected(build, message):
    with pytest.raises(PromptError, match=message):
        build()


def test_out_of_image_coordinates_are_rejected():
    expected = (
        r"object 0: point \(512.0, -3.0\) lies outside the image of shape \(400, 500\): "
        r"coordinates must satisfy -0.5 <= row <= 399.5 and -0.5 <= col <= 499.5"
    )
    with pytest.raises(PromptError, match=expected):
        PromptSet((400, 500), [Points.click(512.0, -3.0)])
    with pytest.raises(PromptError, match=r"object 1: box corner \(5.0, 12.0\) lies outside"):
        PromptSet((10, 10), [Points.click(1, 1), Box(0, 0, 5, 12)])
    with pytest.raises(PromptError, match=r"scribble vertex \(-0.6, 1.0\) lies outside"):
        PromptSet((10, 10), [Scribble([(1, 1), (-0.6, 1)])])
    with pytest.raises(PromptError, match=r"polygon vertex \(1.0, 10.5\) lies outside"):
        PromptSet((10, 10), [Polygon([(1, 1), (1, 10.5), (5, 5)])])
    with pytest.raises(PromptError, match=r"in the referring example: point \(20.0, 1.0\)"):
        ReferringExample((20, 20), [Points.click(20, 1)], image_ref="x")


def test_degenerate_boxes_are_rejected():
    with pytest.raises(PromptError, match=r"zero or negative size: rows 5.0..5.0"):
        Box(5, 1, 5, 9)
    with pytest.raises(PromptError, match=r"columns 9.0..1.0; a box needs row_min < row_max"):
        Box(1, 9, 5, 1)
    with pytest.raises(PromptError, match=r"Box\.from_corners sorts"):
        Box(5, 1, 2, 9)


def test_mask_prompt_rejections():
    with pytest.raises(PromptError, match=r"MaskPrompt.mask of shape \(3, 3\) is empty"):
        MaskPrompt(np.zeros((3, 3), dtype=bool))
    with pytest.raises(PromptError, match=r"is empty"):
        MaskPrompt.from_full(np.zeros((3, 3)))
    with pytest.raises(PromptError, match=r"only 0 and 1 .* found the value 0.5: threshold"):
        MaskPrompt(np.array([[0.5, 1.0]]))
    with pytest.raises(PromptError, match=r"found the value 2"):
        MaskPrompt(np.array([[2, 0]]))
    with pytest.raises(PromptError, match=r"must be boolean \(or 0/1 integers\); got dtype <U1"):
        MaskPrompt(np.array([["a", "b"]]))
    with pytest.raises(PromptError, match=r"2-D \(rows, cols\) array; got 3 dimension"):
        MaskPrompt(np.ones((2, 2, 3), dtype=bool))
    with pytest.raises(PromptError, match=r"MaskPrompt.offset must be two integers"):
        MaskPrompt(np.ones((2, 2), dtype=bool), (0.5, 1))


def test_mask_that_does_not_fit_the_image_is_rejected():
    mask = np.ones((4, 4), dtype=bool)
    expected = (
        r"MaskPrompt of shape \(4, 4\) at offset \(7, 0\) does not fit the image of shape "
        r"\(10, 10\): it spans rows 7..10 and columns 0..3"
    )
    with pytest.raises(PromptError, match=expected):
        PromptSet((10, 10), [MaskPrompt(mask, (7, 0))])
    with pytest.raises(PromptError, match=r"at offset \(-1, 2\) does not fit"):
        PromptSet((10, 10), [MaskPrompt(mask, (-1, 2))])
    with pytest.raises(PromptError, match=r"does not fit"):
        PromptSet((3, 30), [MaskPrompt(mask)])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Points(np.zeros((2, 3)), np.array([True, True])), r"shape \(N, 2\).*\(2, 3\)"),
        (lambda: Points(np.zeros((2, 2, 2)), np.array([True])), r"got shape \(2, 2, 2\)"),
        (lambda: Points([["a", "b"]], np.array([True])), r"must be numbers .* got dtype <U1"),
        (lambda: Points([[1, 2], [3]], np.array([True])), r"must be an \(N, 2\) array"),
        (
            lambda: Points(np.zeros((0, 2)), np.zeros(0, bool)),
            r"Points.coords needs at least 1 point; got 0",
        ),
        (lambda: Points([[1, 2]], np.array([1])), r"Points.positive must be bool .* int64"),
        (lambda: Points([[1, 2]], np.array([True, False])), r"one flag per point, shape \(1,\)"),
        (lambda: Polygon([(0, 0), (1, 1)]), r"Polygon.vertices needs at least 3 vertices; got 2"),
        (lambda: Scribble(np.zeros((0, 2))), r"Scribble.vertices needs at least 1 vertex"),
        (lambda: Scribble([(1, 1)], width=0), r"Scribble.width .* must be > 0; got 0.0"),
        (lambda: Scribble([(1, 1)], positive=1), r"Scribble.positive must be True or False"),
    ],
)
def test_wrong_shapes_and_dtypes_are_rejected(build, message):
    with pytest.raises(PromptError, match=message):
        build()


def test_text_rejections():
    with pytest.raises(PromptError, match=r"TextPrompt\.text is empty: give a word or phrase"):
        TextPrompt("")
    with pytest.raises(PromptError, match=r"TextPrompt\.text is empty"):
        TextPrompt("  \t\n")
    with pytest.raises(PromptError, match=r"TextPrompt\.text must be a string; got int"):
        TextPrompt(3)
    with pytest.raises(PromptError, match=r"TextPrompt\.text is empty"):
        PromptSet((5, 5), texts=["cell", " "])


def test_object_prompt_rejections():
    with pytest.raises(PromptError, match="ObjectPrompt is empty: give at least one visual"):
        ObjectPrompt()
    with pytest.raises(PromptError, match="ObjectPrompt has only negative prompts"):
        ObjectPrompt([Points.click(1, 1, positive=False), Scribble([(1, 1)], positive=False)])
    with pytest.raises(PromptError, match=r"ObjectPrompt.visual\[0\] is text: pass text as"):
        ObjectPrompt(["nucleus"])
    with pytest.raises(PromptError, match=r"visual\[1\] must be one of Points, Box"):
        ObjectPrompt([Points.click(1, 1), (1, 2)])
    with pytest.raises(PromptError, match=r"ObjectPrompt\.label must be a non-empty string"):
        ObjectPrompt(Points.click(1, 1), label=" ")


def test_prompt_set_and_example_rejections():
    with pytest.raises(PromptError, match=r"image_shape must be \(H, W\) of one 2-D plane"):
        PromptSet((10, 10, 3))
    with pytest.raises(PromptError, match="image_shape must be positive"):
        PromptSet((0, 10))
    with pytest.raises(PromptError, match="plane must hold non-negative integer indices"):
        PromptSet((10, 10), plane=(-1,))
    with pytest.raises(PromptError, match=r"PromptSet.objects\[0\] must be an ObjectPrompt"):
        PromptSet((10, 10), ["text in the wrong place"])
    with pytest.raises(PromptError, match="ReferringExample needs the other image"):
        ReferringExample((10, 10), [Points.click(1, 1)])
    with pytest.raises(PromptError, match=r"image has shape \(5, 5\) but image_shape is"):
        ReferringExample((10, 10), [Points.click(1, 1)], image=np.zeros((5, 5)))
    with pytest.raises(PromptError, match="ReferringExample has no visual prompt"):
        ReferringExample((10, 10), [], image_ref="x")
    with pytest.raises(PromptError, match="ReferringExample has only negative prompts"):
        ReferringExample((10, 10), [Points.click(1, 1, positive=False)], image_ref="x")


def test_every_rejection_is_a_value_error():
    assert issubclass(PromptError, ValueError)
    assert PromptError.__module__ == "napari_seem.core.prompts"


# ------------------------------------------------------------------------------ wire format


def test_from_dict_rejections():
    with pytest.raises(PromptError, match=r"expected a 'box' prompt; got kind 'points'"):
        Box.from_dict({"kind": "points", "row_min": 0})
    with pytest.raises(PromptError, match=r"'box' prompt dict is missing \['col_max'\]"):
        Box.from_dict({"row_min": 0, "col_min": 0, "row_max": 1})
    with pytest.raises(PromptError, match=r"unknown keys \['colour'\]"):
        Scribble.from_dict({"vertices": [[1, 1]], "colour": "red"})
    with pytest.raises(PromptError, match=r"needs 'kind' in \['points', 'box'"):
        prompt_from_dict({"kind": "lasso"})
    with pytest.raises(PromptError, match="format version 2 is not supported"):
        PromptSet.from_dict({"kind": "prompt_set", "version": 2, "image_shape": [4, 4]})
    with pytest.raises(PromptError, match=r"runs sum to 5 but the mask shape \(2, 3\)"):
        MaskPrompt.from_dict({"shape": [2, 3], "offset": [0, 0], "rle": [2, 3]})
    with pytest.raises(PromptError, match="non-negative integers"):
        MaskPrompt.from_dict({"shape": [1, 2], "offset": [0, 0], "rle": [1.5, 0.5]})


def test_mask_wire_format_is_run_length():
    mask = np.array([[1, 1, 0], [0, 0, 1]], dtype=bool)
    data = MaskPrompt(mask, (4, 5)).to_dict()
    assert data == {
        "kind": "mask",
        "shape": [2, 3],
        "offset": [4, 5],
        "rle": [0, 2, 3, 1],  # False runs first; C order
        "positive": True,
    }


@pytest.mark.parametrize("shape", [(0, 0), (1, 1), (3, 5), (17, 31)])
def test_rle_round_trip(shape):
    rng = np.random.default_rng(0)
    for density in (0.0, 0.3, 1.0):
        mask = rng.random(shape) < density
        counts = rle_encode(mask)
        assert all(isinstance(c, int) for c in counts) and sum(counts) == mask.size
        np.testing.assert_array_equal(rle_decode(counts, shape), mask)


def test_importing_prompts_results_rasterize_imports_neither_torch_nor_qt():
    code = (
        "import sys\n"
        "import napari_seem.core.prompts, napari_seem.core.results, napari_seem.core.rasterize\n"
        "heavy = [m for m in ('torch', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', "
        "'napari', 'skimage') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
