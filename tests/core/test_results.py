"""Result types: crops, labels, class table, JSON round trips."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from napari_seem.core.prompts import ObjectPrompt, Points, ReferringExample, Scribble, TextPrompt
from napari_seem.core.results import ObjectMask, SegmentationResult


def _square(shape, top_left, size) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top_left[0] : top_left[0] + size, top_left[1] : top_left[1] + size] = True
    return mask


def test_from_full_crops_to_the_bounding_box_and_full_pastes_back():
    full = np.zeros((8, 9), dtype=bool)
    full[2:5, 3] = True
    full[4, 3:7] = True
    obj = ObjectMask.from_full(full, score=0.9, class_name="cell")
    assert obj.offset == (2, 3) and obj.mask.shape == (3, 4)
    assert obj.area == 6 and obj.bbox == (2, 3, 5, 7)  # max exclusive
    np.testing.assert_array_equal(obj.full((8, 9)), full)
    assert not obj.is_empty and "area=6" in repr(obj)
    with pytest.raises(dataclasses.FrozenInstanceError):
        obj.score = 1.0  # type: ignore[misc]


def test_bbox_is_tight_even_for_a_padded_crop():
    crop = np.zeros((5, 5), dtype=np.uint8)
    crop[1:3, 2] = 1
    obj = ObjectMask(crop, (10, 20), score=0.5)
    assert obj.mask.dtype == np.bool_ and obj.bbox == (11, 22, 13, 23)


def test_empty_mask_stays_an_object_paired_with_its_prompt():
    prompt = ObjectPrompt(Points.click(1, 1))
    obj = ObjectMask.from_full(np.zeros((4, 4)), score=0.1, prompt=prompt)
    assert obj.is_empty and obj.area == 0 and obj.bbox is None
    assert obj.mask.shape == (0, 0) and obj.prompt is prompt
    assert not obj.full((4, 4)).any()
    result = SegmentationResult((4, 4), (obj,))
    assert result.class_table()[0]["bbox"] is None and not result.to_labels().any()


def test_object_mask_rejections():
    with pytest.raises(ValueError, match=r"ObjectMask\.score must be finite"):
        ObjectMask(np.ones((1, 1), bool), score=float("nan"))
    with pytest.raises(ValueError, match=r"ObjectMask\.score must be a number"):
        ObjectMask(np.ones((1, 1), bool), score=None)
    with pytest.raises(ValueError, match=r"ObjectMask.mask must hold only 0 and 1"):
        ObjectMask(np.full((2, 2), 0.3), score=1.0)
    with pytest.raises(ValueError, match=r"ObjectMask.prompt must be an ObjectPrompt"):
        ObjectMask(np.ones((1, 1), bool), score=1.0, prompt=Points.click(0, 0))
    with pytest.raises(ValueError, match=r"crop of shape \(2, 2\) at offset \(3, 0\) does not fit"):
        ObjectMask(np.ones((2, 2), bool), (3, 0), score=1.0).full((4, 4))
    with pytest.raises(ValueError, match="does not fit"):
        SegmentationResult((4, 4), (ObjectMask(np.ones((2, 2), bool), (-1, 0), score=1.0),))


def test_labels_follow_object_order_and_overlaps_go_to_the_higher_score():
    shape = (6, 6)
    low = ObjectMask.from_full(_square(shape, (0, 0), 4), score=0.2)
    high = ObjectMask.from_full(_square(shape, (2, 2), 4), score=0.8)
    tie = ObjectMask.from_full(_square(shape, (0, 0), 2), score=0.2)  # ties with `low`
    result = SegmentationResult(shape, (low, high, tie), plane=(2,))
    labels = result.to_labels()
    assert labels.dtype == np.uint32
    expected = np.array(
        [
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 2, 2, 2, 2],
            [1, 1, 2, 2, 2, 2],
            [0, 0, 2, 2, 2, 2],
            [0, 0, 2, 2, 2, 2],
        ]
    )
    np.testing.assert_array_equal(labels, expected)  # the tie went to the earlier object
    assert result.to_labels(np.uint8).dtype == np.uint8
    assert len(result) == 3 and list(result) == [low, high, tie] and result[1] is high


def test_labels_dtype_must_hold_every_id():
    objects = tuple(ObjectMask(np.ones((1, 1), bool), (0, 0), score=1.0) for _ in range(256))
    result = SegmentationResult((2, 2), objects)
    assert result.to_labels(np.uint16).max() == 1  # all overlap; ties keep the first
    with pytest.raises(ValueError, match="holds ids up to 256; got uint8"):
        result.to_labels(np.uint8)
    with pytest.raises(ValueError, match="integer dtype"):
        result.to_labels(np.float32)


def test_class_table():
    shape = (5, 5)
    result = SegmentationResult(
        shape,
        (
            ObjectMask.from_full(
                _square(shape, (1, 1), 2),
                score=0.7,
                class_name="cell",
                class_score=0.9,
                source="panoptic",
            ),
            ObjectMask.from_full(_square(shape, (3, 3), 2), score=0.4),
        ),
    )
    assert result.class_table() == [
        {
            "id": 1,
            "class_name": "cell",
            "class_score": 0.9,
            "score": 0.7,
            "area": 4,
            "bbox": [1, 1, 3, 3],
            "source": "panoptic",
        },
        {
            "id": 2,
            "class_name": None,
            "class_score": None,
            "score": 0.4,
            "area": 4,
            "bbox": [3, 3, 5, 5],
            "source": "interactive",
        },
    ]
    json.dumps(result.class_table())


def test_json_round_trip_with_every_prompt_type():
    shape = (20, 30)
    rng = np.random.default_rng(0)
    objects = (
        ObjectMask.from_full(
            rng.random(shape) < 0.3,
            score=0.9,
            prompt=ObjectPrompt([Points.click(3, 4), Scribble([(1, 1), (5, 9)])], "nucleus"),
        ),
        ObjectMask.from_full(
            _square(shape, (4, 7), 5),
            score=0.5,
            class_name="a cat",
            class_score=12.5,
            prompt=TextPrompt("a cat"),
            source="grounding",
        ),
        ObjectMask.from_full(
            _square(shape, (10, 10), 3),
            score=0.3,
            prompt=ReferringExample((50, 60), [Points.click(5, 5)], image_ref="other"),
            source="referring",
        ),
        ObjectMask.from_full(np.zeros(shape), score=0.0),
    )
    result = SegmentationResult(shape, objects, plane=(1, 4))
    data = json.loads(json.dumps(result.to_dict()))
    assert data["kind"] == "segmentation_result" and data["version"] == 1
    again = SegmentationResult.from_dict(data)
    assert again == result
    np.testing.assert_array_equal(again.to_labels(), result.to_labels())
    assert [o.source for o in again] == ["interactive", "grounding", "referring", "interactive"]


def test_from_dict_rejections():
    with pytest.raises(ValueError, match="not a SegmentationResult dict"):
        SegmentationResult.from_dict({"image_shape": [2, 2]})
    with pytest.raises(ValueError, match="format version 7 is not supported"):
        SegmentationResult.from_dict({"kind": "segmentation_result", "version": 7})
    with pytest.raises(ValueError, match="needs 'shape', 'offset', 'rle' and 'score'"):
        ObjectMask.from_dict({"shape": [1, 1], "offset": [0, 0], "rle": [0, 1]})
    with pytest.raises(ValueError, match=r"runs sum to 3 but the mask shape \(2, 2\)"):
        ObjectMask.from_dict({"shape": [2, 2], "offset": [0, 0], "rle": [1, 2], "score": 1})
    with pytest.raises(ValueError, match="cannot be a 'box' prompt"):
        ObjectMask.from_dict(
            {
                "shape": [1, 1],
                "offset": [0, 0],
                "rle": [0, 1],
                "score": 1,
                "prompt": {"kind": "box", "row_min": 0, "col_min": 0, "row_max": 1, "col_max": 1},
            }
        )
