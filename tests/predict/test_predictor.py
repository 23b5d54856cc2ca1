"""SeemPredictor on tiny models: every prompt kind, memory, composition, text, examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_seem import (
    Box,
    MaskPrompt,
    ObjectMask,
    ObjectPrompt,
    Points,
    Polygon,
    PromptError,
    PromptSet,
    ReferringExample,
    Scribble,
)
from napari_seem.datasets.synthetic import synthetic_nuclei
from napari_seem.model.build import build_seem
from napari_seem.model.transforms import logits_to_image
from napari_seem.predict.predictor import SeemPredictor, as_rgb_uint8
from tests.model.reference import load_npz, reference_dir


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return synthetic_nuclei((96, 128), n_objects=6, seed=2).image


@pytest.fixture(scope="module")
def predictor(scene: np.ndarray) -> SeemPredictor:
    p = SeemPredictor(build_seem("seem-tiny-focal", seed=0), short_side=None)
    p.set_image(scene)
    return p


def test_needs_an_image() -> None:
    p = SeemPredictor(build_seem("seem-tiny-focal", seed=0))
    with pytest.raises(RuntimeError, match="set_image"):
        p.predict(ObjectPrompt(Points.click(3, 3)))


def test_every_visual_kind_gives_one_mask_per_object(predictor: SeemPredictor) -> None:
    mask = np.zeros((96, 128), bool)
    mask[40:50, 60:75] = True
    objects = [
        ObjectPrompt(Points.clicks(positive=[(20, 30)], negative=[(60, 90)])),
        ObjectPrompt(Box(10, 20, 50, 70)),
        ObjectPrompt(Scribble([(70, 10), (80, 40)], width=3)),
        ObjectPrompt(Polygon([(5, 100), (30, 120), (5, 120)])),
        ObjectPrompt(MaskPrompt.from_full(mask)),
    ]
    result = predictor.predict(objects)
    assert len(result) == len(objects)
    for obj, answer in zip(objects, result, strict=True):
        assert answer.prompt == obj and answer.source == "interactive"
        assert 0.0 <= answer.score <= 1.0
        assert answer.full((96, 128)).shape == (96, 128)
    # a box prompts with its centre and bounds the answer
    box_mask = result[1].full((96, 128))
    assert not box_mask[:10].any() and not box_mask[51:].any()
    assert not box_mask[:, :20].any() and not box_mask[:, 71:].any()


def test_same_input_same_output(predictor: SeemPredictor) -> None:
    obj = ObjectPrompt(Scribble([(30, 30), (40, 60)]))
    a, b = predictor.predict(obj), predictor.predict(obj)
    np.testing.assert_array_equal(a[0].full((96, 128)), b[0].full((96, 128)))


def test_memory_from_returned_and_edited_masks(predictor: SeemPredictor) -> None:
    obj = ObjectPrompt(Points.click(40, 64))
    first = predictor.predict(obj)
    refined = ObjectPrompt(Points.clicks(positive=[(40, 64)], negative=[(10, 10)]))
    second = predictor.predict(refined, previous=first)
    assert len(second) == 1
    edited = np.zeros((96, 128), bool)
    edited[30:50, 50:80] = True
    third = predictor.predict(refined, previous=[edited])
    assert len(third) == 1
    with pytest.raises(PromptError, match="one previous mask"):
        predictor.predict(refined, previous=[edited, edited])
    with pytest.raises(PromptError, match="previous mask has shape"):
        predictor.predict(refined, previous=[edited[:10]])


def test_vocabulary_names_masks(predictor: SeemPredictor) -> None:
    result = predictor.predict(ObjectPrompt(Points.click(40, 64)), vocabulary=["nucleus", "cell"])
    assert result[0].class_name in {"nucleus", "cell"}
    assert result[0].class_score is not None and 0 <= result[0].class_score <= 1
    with pytest.raises(PromptError, match="repeats"):
        predictor.predict(ObjectPrompt(Points.click(4, 4)), vocabulary=["a", "a"])


def test_text_composes_with_clicks(predictor: SeemPredictor) -> None:
    plain = ObjectPrompt(Points.click(40, 64))
    composed = ObjectPrompt(Points.click(40, 64), text="nucleus")
    result = predictor.predict([plain, composed])
    assert result[1].class_name == "nucleus"
    assert result[1].prompt == composed
    # the text only re-ranks the object's own candidates
    enc = predictor.encoded
    sl = torch.full((6, 2), float("-inf"))
    sl[:3, 0] = torch.tensor([0.1, 2.0, 0.0])
    sl[3:, 1] = torch.tensor([0.0, 0.0, 0.0])
    captions = torch.randn(6, enc.features.mask_features.shape[1])
    chosen = predictor._choose_candidates([plain, composed], sl, captions)
    assert int(chosen[0]) == 1 and 3 <= int(chosen[1]) < 6


def test_grounding_returns_ranked_instances(predictor: SeemPredictor) -> None:
    result = predictor.ground(
        ["bright nucleus", "background"], score_threshold=0.0, max_instances=3
    )
    by_text: dict[str, list[ObjectMask]] = {}
    for obj in result:
        assert obj.source == "grounding"
        by_text.setdefault(obj.class_name or "", []).append(obj)
    assert set(by_text) == {"bright nucleus", "background"}
    for found in by_text.values():
        assert 1 <= len(found) <= 3
    with pytest.raises(PromptError, match="non-empty"):
        predictor.ground(["  "])


def test_referring_example_from_another_image(predictor: SeemPredictor) -> None:
    other = synthetic_nuclei((80, 100), n_objects=4, seed=5).image
    example = ReferringExample.from_image(other, Points.click(30, 40), label="nucleus")
    result = predictor.refer(example)
    assert len(result) == 1 and result[0].source == "referring"
    assert result[0].class_name == "nucleus"
    bare = ReferringExample((80, 100), Points.click(30, 40), image_ref="slide-2")
    with pytest.raises(PromptError, match="no pixels"):
        predictor.refer(bare)
    with pytest.raises(PromptError, match="drawn on an image of shape"):
        predictor.refer(bare, example_image=other[:50])


def test_prompt_set_composes_tasks(predictor: SeemPredictor, scene: np.ndarray) -> None:
    example = ReferringExample.from_image(scene, Points.click(30, 40))
    prompts = PromptSet(
        scene.shape,
        objects=(ObjectPrompt(Points.click(40, 64)),),
        texts=("nucleus",),
        example=example,
    )
    sources = [o.source for o in predictor.predict(prompts)]
    assert sources[0] == "interactive" and sources[-1] == "referring"
    assert "grounding" in sources
    with pytest.raises(PromptError, match="current image"):
        predictor.predict(PromptSet((10, 10), objects=(ObjectPrompt(Points.click(1, 1)),)))


@pytest.mark.parametrize("mode", ["panoptic", "instance", "semantic"])
def test_segment_everything_modes(predictor: SeemPredictor, mode: str) -> None:
    result = predictor.segment_everything(
        ["nucleus", "cell"],
        mode=mode,
        object_mask_threshold=0.0,  # type: ignore[arg-type]
    )
    assert all(o.class_name in {"nucleus", "cell"} for o in result)
    assert all(o.source == mode for o in result)
    labels = result.to_labels()
    assert labels.shape == (96, 128)
    if mode == "panoptic":
        # panoptic segments do not overlap: every object keeps all its pixels
        assert sum(o.area for o in result) == int((labels > 0).sum())


def test_as_rgb_uint8_conversions() -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert as_rgb_uint8(grey).shape == (3, 4, 3)
    rgba = np.zeros((3, 4, 4), np.uint8)
    assert as_rgb_uint8(rgba).shape == (3, 4, 3)
    wide = np.linspace(0, 60000, 1000).reshape(20, 50).astype(np.uint16)
    out = as_rgb_uint8(wide)
    assert out.dtype == np.uint8 and out.max() == 255 and out.min() == 0
    nan = np.full((4, 4), np.nan)
    assert as_rgb_uint8(nan).max() == 0
    with pytest.raises(ValueError, match="three bands"):
        as_rgb_uint8(np.zeros((4, 4, 6)))
    with pytest.raises(ValueError, match="one plane"):
        as_rgb_uint8(np.zeros((2, 4, 4, 3)))


def test_interactive_parity_with_the_official_answer() -> None:
    """Stroke A on the Focal-T fixture: the predictor's mask is the official answer."""
    fixture = reference_dir() / "focalt_v1_tiny"
    data = load_npz("focalt_v1_tiny", "interactive")
    model = build_seem("seem-tiny-focal", checkpoint=fixture / "weights.safetensors")
    p = SeemPredictor(model, short_side=None)
    p.set_image(data["image"])
    stroke = ObjectPrompt(MaskPrompt.from_full(data["stroke_A_imgsize"]))
    first = p.predict(stroke)
    frame = p.encoded.frame
    expected = logits_to_image(torch.from_numpy(data["single_r1_prev_mask"][0]), frame)[0] > 0
    np.testing.assert_array_equal(first[0].full(frame.image_hw), expected.numpy())
    # round 2: returning the answer feeds back the exact round-1 logits
    neg = ObjectPrompt(
        (
            MaskPrompt.from_full(data["stroke_A_imgsize"]),
            MaskPrompt.from_full(data["neg_click_imgsize"], positive=False),
        )
    )
    second = p.predict(neg, previous=first)
    expected2 = logits_to_image(torch.from_numpy(data["single_r2_prev_mask"][0]), frame)[0] > 0
    np.testing.assert_array_equal(second[0].full(frame.image_hw), expected2.numpy())


def test_encode_many_batches_tiles(predictor: SeemPredictor, scene: np.ndarray) -> None:
    tiles = [scene[:64, :64], scene[32:96, 64:128]]
    batched = predictor.encode_many(tiles)
    for tile, enc in zip(tiles, batched, strict=True):
        alone = predictor.encode(tile)
        torch.testing.assert_close(
            enc.features.mask_features, alone.features.mask_features, atol=1e-5, rtol=1e-5
        )
    with pytest.raises(ValueError, match="one shape"):
        predictor.encode_many([scene[:64, :64], scene[:32, :64]])


def test_public_low_level_operations(predictor: SeemPredictor) -> None:
    """The operations everything-mode and windowed grounding are built on."""
    enc = predictor.encoded
    frame = enc.frame
    assert predictor.frame_for(frame.image_hw) == frame
    pos = np.zeros((2, *frame.padded_hw), bool)
    pos[0, 20:23, 30:33] = True
    pos[1, 60:63, 90:93] = True
    with predictor.inference():
        masks, logits, captions = predictor.decode_prompts(
            enc.features, pos, np.zeros_like(pos), None, predictor.image_memory()
        )
    q = predictor.model.decoder.config.queries_per_prompt
    assert masks.shape == (2 * q, *enc.features.mask_features.shape[-2:])
    assert logits.shape == (2 * q, 2) and captions.shape[0] == 2 * q
    spatial = predictor.decode_spatial(pos, np.zeros_like(pos), None)
    torch.testing.assert_close(spatial[0], masks)
    full = predictor.logits_to_masks(masks[:2])
    assert full.shape == (2, *frame.image_hw) and full.dtype == bool
    names, scores = predictor.name_captions(captions[:2], ["nucleus", "background noise"])
    assert set(names) <= {"nucleus", "background noise"} and all(0 <= s <= 1 for s in scores)
    assert predictor.name_captions(captions[:2], None) == ([None, None], [None, None])
    sentence = predictor.sentence_embedding("nucleus")
    assert sentence.dtype == torch.float32 and abs(float(sentence.norm()) - 1.0) < 1e-4
