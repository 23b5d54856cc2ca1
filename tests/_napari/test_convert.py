"""Pure layer <-> prompt converters, on napari layer objects without a viewer or Qt."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Image, Labels, Points, Shapes

from napari_seem._napari import convert
from napari_seem._napari.commits import CommitLog, next_label_id
from napari_seem._napari.layers import preview_crop, prompts_from_layers
from napari_seem.core.prompts import Box, MaskPrompt, Polygon, Scribble
from napari_seem.core.results import ObjectMask


def test_frame_of_matches_napari_for_scale_translate_affine() -> None:
    affine = np.array([[0.0, -1.0, 50.0], [1.0, 0.0, 3.0], [0.0, 0.0, 1.0]])  # a rotation
    layer = Image(np.zeros((20, 30)), scale=(2.0, 0.5), translate=(10.0, -4.0), affine=affine)
    frame = convert.frame_of(layer)
    for p in ([0, 0], [3, 7], [19.5, 29.2]):
        expected = layer.data_to_world(np.asarray(p, float))
        got = (frame @ np.r_[p, 1.0])[:2]
        np.testing.assert_allclose(got, expected, atol=1e-9)


@pytest.mark.parametrize(
    "image_kwargs",
    [
        {},
        {"scale": (2.0, 3.0)},
        {"scale": (0.5, 0.5), "translate": (100.0, -20.0)},
        {"affine": np.array([[0.0, 2.0, 5.0], [-2.0, 0.0, 400.0], [0.0, 0.0, 1.0]])},
    ],
)
def test_points_in_world_map_to_level0_pixels(image_kwargs: dict) -> None:
    image = Image(np.zeros((64, 80)), **image_kwargs)
    # a points layer with its OWN transform, holding clicks at known image pixels
    points = Points(np.zeros((0, 2)), scale=(1.5, 1.5), translate=(7.0, 9.0))
    wanted = np.array([[10.0, 20.0], [40.5, 70.0], [0.0, 0.0]])
    world = [image.data_to_world(p) for p in wanted]
    data = np.array([points.world_to_data(w) for w in world])
    pixels = convert.to_image_pixels(data, convert.frame_of(points), convert.frame_of(image))
    np.testing.assert_allclose(pixels, wanted, atol=1e-6)
    prompt = convert.points_to_prompt(pixels, [True, False, True], (64, 80))
    assert prompt is not None
    np.testing.assert_allclose(prompt.coords, wanted, atol=1e-6)
    assert prompt.positive.tolist() == [True, False, True]


def test_points_outside_or_on_other_planes_are_dropped() -> None:
    pixels = np.array([[2.0, 5.0, 5.0], [3.0, 6.0, 6.0], [2.2, -3.0, 5.0], [1.6, 8.0, 9.0]])
    prompt = convert.points_to_prompt(pixels, [True, True, True, False], (32, 32), plane=(2,))
    assert prompt is not None
    # plane 2: rows 0 and 3 (z 1.6 rounds to 2); row 2 is outside the image
    np.testing.assert_allclose(prompt.coords, [[5.0, 5.0], [8.0, 9.0]])
    assert prompt.positive.tolist() == [True, False]
    assert convert.points_to_prompt(pixels[:1], [True], (32, 32), plane=(7,)) is None


def test_2d_points_over_a_stack_use_the_current_plane() -> None:
    image = Image(np.zeros((5, 40, 40)), scale=(4.0, 1.0, 1.0))
    points = Points(np.array([[10.0, 12.0]]))
    # the viewer sits at world z = 8 -> image plane 2
    pixels = convert.to_image_pixels(
        points.data, convert.frame_of(points), convert.frame_of(image), world_point=(8.0, 0, 0)
    )
    np.testing.assert_allclose(pixels, [[2.0, 10.0, 12.0]])


def test_shapes_become_box_scribble_polygon() -> None:
    shapes = [
        np.array([[10.0, 10.0], [10.0, 30.0], [20.0, 30.0], [20.0, 10.0]]),  # rectangle
        np.array([[5.0, 5.0], [15.0, 25.0], [30.0, 20.0]]),  # path
        np.array([[1.0, 1.0], [9.0, 9.0]]),  # line
        np.array([[40.0, 40.0], [40.0, 60.0], [60.0, 50.0]]),  # polygon
        np.array([[0.0, 0.0], [0.0, 20.0], [10.0, 20.0], [10.0, 0.0]]),  # ellipse box
    ]
    kinds = ["rectangle", "path", "line", "polygon", "ellipse"]
    out = convert.shapes_to_prompts(shapes, kinds, (64, 64), scribble_width=4.0)
    assert [type(p) for p in out] == [Box, Scribble, Scribble, Polygon, Polygon]
    assert out[0] == Box(10.0, 10.0, 20.0, 30.0)
    assert isinstance(out[1], Scribble) and out[1].width == 4.0
    ellipse = out[4]
    assert isinstance(ellipse, Polygon) and len(ellipse.vertices) == convert.ELLIPSE_VERTICES
    np.testing.assert_allclose(ellipse.vertices.mean(axis=0), [5.0, 10.0], atol=1e-6)
    np.testing.assert_allclose(np.ptp(ellipse.vertices, axis=0), [10.0, 20.0], atol=0.1)


def test_rectangle_partly_outside_is_clipped() -> None:
    rect = np.array([[-20.0, -5.0], [-20.0, 30.0], [10.0, 30.0], [10.0, -5.0]])
    (box,) = convert.shapes_to_prompts([rect], ["rectangle"], (16, 16))
    assert box == Box(-0.5, -0.5, 10.0, 15.5)


def test_prompts_from_napari_layers_with_transforms() -> None:
    image = Image(np.zeros((50, 60)), scale=(2.0, 2.0), translate=(10.0, 10.0))
    # shapes drawn in world units: a rectangle over image pixels rows 5..15, cols 10..20
    corners = np.array([[5.0, 10.0], [5.0, 20.0], [15.0, 20.0], [15.0, 10.0]])
    world = np.array([image.data_to_world(c) for c in corners])
    shapes = Shapes([world], shape_type="rectangle")
    points = Points(np.array([image.data_to_world([7.0, 12.0])]), features={"positive": [True]})
    labels = Labels(np.zeros((50, 60), np.uint8), scale=(2.0, 2.0), translate=(10.0, 10.0))
    labels.data[20:25, 30:33] = 3
    visual = prompts_from_layers(
        image, (), (0.0, 0.0), points=points, shapes=shapes, mask_labels=labels
    )
    kinds = [p.kind for p in visual]
    assert kinds == ["points", "box", "mask"]
    np.testing.assert_allclose(visual[0].coords, [[7.0, 12.0]], atol=1e-9)
    assert visual[1] == Box(5.0, 10.0, 15.0, 20.0)
    mask = visual[2]
    assert isinstance(mask, MaskPrompt) and mask.offset == (20, 30) and mask.mask.shape == (5, 3)


def test_misaligned_mask_layer_is_refused() -> None:
    image = Image(np.zeros((50, 60)))
    labels = Labels(np.ones((50, 60), np.uint8), scale=(2.0, 2.0))
    with pytest.raises(ValueError, match="not aligned"):
        prompts_from_layers(image, (), (0.0, 0.0), mask_labels=labels)


def test_translate_frame_places_a_crop_over_the_image() -> None:
    image = Image(np.zeros((100, 100)), scale=(3.0, 2.0), translate=(5.0, 7.0))
    frame = convert.translate_frame(convert.frame_of(image), (40, 25))
    crop = Labels(np.ones((4, 4), np.uint8), affine=frame)
    np.testing.assert_allclose(crop.data_to_world([0.0, 0.0]), image.data_to_world([40.0, 25.0]))


def test_paint_object_into_numpy_and_zarr(tmp_path) -> None:
    import zarr

    obj = ObjectMask(np.array([[1, 0], [1, 1]], bool), (3, 4), score=0.9)
    for target in (
        np.zeros((2, 10, 10), np.uint32),
        zarr.open_array(tmp_path / "l.zarr", mode="w", shape=(2, 10, 10), dtype="uint32"),
    ):
        _, previous = convert.paint_object(target, obj, 7, plane=(1,))
        assert previous.shape == (2, 2) and not previous.any()
        out = np.asarray(target[:])
        assert out[1, 3, 4] == 7 and out[1, 3, 5] == 0 and out[1, 4, 5] == 7
        assert out[0].sum() == 0


def test_commit_log_commit_and_undo() -> None:
    layer = Labels(np.zeros((20, 20), np.uint32))
    log = CommitLog()
    a = ObjectMask(np.ones((3, 3), bool), (2, 2), score=0.8, class_name="cell")
    b = ObjectMask(np.ones((2, 2), bool), (10, 10), score=0.5)
    assert log.commit(layer, [a], ()) == [1]
    assert log.commit(layer, [b], (), default_class="nucleus") == [2]
    assert next_label_id(layer) == 3
    rows = layer.features.to_dict(orient="records")
    assert [(r["index"], r["class_name"]) for r in rows] == [(1, "cell"), (2, "nucleus")]
    log.undo()
    assert layer.data[10, 10] == 0 and layer.data[2, 2] == 1
    assert list(layer.features["index"]) == [1]
    log.undo()
    assert not layer.data.any() and len(layer.features) == 0
    assert log.undo() is None


def test_preview_crop_is_the_union_box_only() -> None:
    a = ObjectMask(np.ones((2, 2), bool), (100, 200), score=1.0)
    b = ObjectMask(np.ones((1, 3), bool), (104, 199), score=1.0)
    crop, origin = preview_crop([a, b])
    assert origin == (100, 199) and crop.shape == (5, 3)
    assert crop[0, 1] == 1 and crop[4, 0] == 2


def test_preview_crop_of_crops_larger_than_their_objects() -> None:
    """A crop whose object does not fill it (nodata cleared from it) previews its object."""
    mask = np.zeros((50, 60), bool)
    mask[5:9, 7:12] = True
    a = ObjectMask(mask, (10, 20), score=1.0)  # object at rows 15..18, cols 27..31
    b = ObjectMask(np.ones((2, 2), bool), (30, 40), score=1.0)
    crop, origin = preview_crop([a, b])
    assert origin == (15, 27) and crop.shape == (17, 15)
    assert (crop == 1).sum() == 20 and crop[0, 0] == 1 and crop[3, 4] == 1
    assert (crop == 2).sum() == 4 and crop[15, 13] == 2


def test_world_box_to_image() -> None:
    image = Image(np.zeros((100, 200)), scale=(2.0, 2.0))
    corners = np.array([[-10.0, 50.0], [60.0, 500.0]])
    assert convert.world_box_to_image(corners, convert.frame_of(image), (100, 200)) == (
        0,
        25,
        31,
        200,
    )
