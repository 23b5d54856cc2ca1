"""Semantic / panoptic / instance / grounding post-processing against the official outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_seem.model.postprocess import (
    best_grounding_queries,
    instance_inference,
    l2_normalize,
    masks_to_boxes,
    panoptic_inference,
    rank_grounding_queries,
    semantic_inference,
    vl_similarity,
)
from napari_seem.model.transforms import ModelFrame, logits_to_image

from .reference import load_npz

FIXTURES = ["focalt_v1_tiny", "samvitb_v1_tiny"]
#: README 2.3: person, flag and helmet are things; wall-other-merged is stuff.
THING_CLASSES = {0, 1, 2}


def _fixture_frame(ref: dict[str, np.ndarray], logits: np.ndarray) -> ModelFrame:
    """No resize; padded size = 4 x the stride-4 logit size (README 2.2)."""
    image_hw = (int(ref["image"].shape[0]), int(ref["image"].shape[1]))
    return ModelFrame(
        image_hw=image_hw,
        resized_hw=image_hw,
        padded_hw=(4 * logits.shape[-2], 4 * logits.shape[-1]),
    )


def _output_hw(ref: dict[str, np.ndarray]) -> tuple[int, int]:
    return int(ref["output_height"]), int(ref["output_width"])


@pytest.fixture(scope="module", params=FIXTURES)
def panoptic(request: pytest.FixtureRequest) -> dict:
    ref = load_npz(request.param, "panoptic")
    frame = _fixture_frame(ref, ref["pred_masks"])
    masks = logits_to_image(torch.from_numpy(ref["pred_masks"][0]), frame, _output_hw(ref))
    return {"ref": ref, "logits": torch.from_numpy(ref["pred_logits"][0]), "masks": masks}


# --- parity with panoptic.npz --------------------------------------------------------------


def test_semantic_inference_matches_fixture(panoptic: dict) -> None:
    ref = panoptic["ref"]
    sem = semantic_inference(panoptic["logits"], panoptic["masks"])
    expected = torch.from_numpy(ref["sem_seg"])
    assert sem.shape == expected.shape
    torch.testing.assert_close(sem, expected, atol=1e-5, rtol=0)


def test_panoptic_inference_matches_fixture(panoptic: dict) -> None:
    ref = panoptic["ref"]
    result = panoptic_inference(
        panoptic["logits"],
        panoptic["masks"],
        object_mask_threshold=float(ref["object_mask_threshold"]),
        overlap_threshold=float(ref["overlap_threshold"]),
        thing_classes=THING_CLASSES,
    )
    assert result.segment_map.dtype == torch.int32
    np.testing.assert_array_equal(result.segment_map.numpy(), ref["panoptic_seg"])
    rows = [[s.id, s.category_id, int(s.isthing)] for s in result.segments]
    np.testing.assert_array_equal(
        np.array(rows, dtype=np.int64).reshape(-1, 3), ref["panoptic_segments"]
    )
    for seg in result.segments:
        assert seg.area == int((ref["panoptic_seg"] == seg.id).sum())
        assert 0.0 < seg.score <= 1.0


def test_instance_inference_matches_fixture(panoptic: dict) -> None:
    ref = panoptic["ref"]
    result = instance_inference(
        panoptic["logits"], panoptic["masks"], top_k=100, thing_classes=THING_CLASSES
    )
    # the official order is topk(sorted=False); ours is by descending score
    order = np.argsort(-ref["instances_scores"], kind="stable")
    assert result.scores.shape == ref["instances_scores"].shape
    np.testing.assert_allclose(result.scores.numpy(), ref["instances_scores"][order], atol=1e-6)
    np.testing.assert_array_equal(result.classes.numpy(), ref["instances_pred_classes"][order])
    np.testing.assert_array_equal(
        result.masks.numpy(), ref["instances_pred_masks"][order].astype(bool)
    )
    assert result.boxes.shape == (len(order), 4)
    assert torch.all(result.scores[:-1] >= result.scores[1:])


# --- parity with grounding.npz -------------------------------------------------------------


@pytest.mark.parametrize("fixture", FIXTURES)
def test_grounding_matches_fixture(fixture: str) -> None:
    ref = load_npz(fixture, "grounding")
    logit_scale = torch.from_numpy(load_npz(fixture, "text_encoder")["logit_scale"])
    visual = torch.from_numpy(ref["pred_gtexts"][0])
    text = torch.from_numpy(ref["class_emb"])

    torch.testing.assert_close(
        l2_normalize(visual), torch.from_numpy(ref["v_emb_normalized"]), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        l2_normalize(text), torch.from_numpy(ref["t_emb_normalized"]), atol=1e-6, rtol=0
    )
    similarity = vl_similarity(visual, text, logit_scale)
    torch.testing.assert_close(similarity, torch.from_numpy(ref["out_prob"]), atol=1e-5, rtol=0)
    best = best_grounding_queries(similarity)
    np.testing.assert_array_equal(best.numpy(), ref["matched_query"])

    gmasks = torch.from_numpy(ref["pred_gmasks"][0])
    frame = _fixture_frame(ref, ref["pred_gmasks"])
    mask = logits_to_image(gmasks[best], frame, _output_hw(ref))
    torch.testing.assert_close(mask, torch.from_numpy(ref["grounding_mask"]), atol=1e-5, rtol=0)

    # the ranked list is a superset of the official answer, best first, no duplicates
    ranked = rank_grounding_queries(similarity, gmasks, score_threshold=0.02)
    assert len(ranked) == len(best)
    for matches, official in zip(ranked, best.tolist(), strict=True):
        assert int(matches.queries[0]) == official
        assert len(set(matches.queries.tolist())) == len(matches.queries)
        assert torch.all(matches.scores[:-1] >= matches.scores[1:])
        assert torch.all(matches.scores[1:] >= 0.02)


# --- unit tests ----------------------------------------------------------------------------


def _logits(probs: list[list[float]]) -> torch.Tensor:
    return torch.tensor(probs).log()


def _square(
    h: int, w: int, r0: int, r1: int, c0: int, c1: int, inside: float = 8.0
) -> torch.Tensor:
    m = torch.full((h, w), -8.0)
    m[r0:r1, c0:c1] = inside
    return m


def test_panoptic_merges_stuff_and_drops_occluded_queries() -> None:
    # classes: 0 = thing, 1 = stuff; background last. 8 x 9 grid, column 8 is q3's alone.
    pred_logits = _logits(
        [
            [0.9, 0.05, 0.05],  # q0 thing, left half
            [0.05, 0.9, 0.05],  # q1 stuff, top-right quarter
            [0.05, 0.9, 0.05],  # q2 stuff (same class), bottom-right quarter -> merges with q1
            [0.85, 0.1, 0.05],  # q3 thing, mostly under q0: wins 8 of its 40 px -> dropped
            [0.1, 0.1, 0.8],  # q4 background -> never kept
            [0.5, 0.3, 0.2],  # q5 below the object threshold
        ]
    )
    q3 = _square(8, 9, 0, 8, 0, 4)
    q3[:, 8] = 8.0
    masks = torch.stack(
        [
            _square(8, 9, 0, 8, 0, 4),
            _square(8, 9, 0, 4, 4, 8),
            _square(8, 9, 4, 8, 4, 8),
            q3,
            _square(8, 9, 0, 8, 0, 9),
            _square(8, 9, 0, 8, 0, 9),
        ]
    )
    result = panoptic_inference(pred_logits, masks, thing_classes={0})
    assert [(s.id, s.category_id, s.isthing, s.area, s.query) for s in result.segments] == [
        (1, 0, True, 32, 0),
        (2, 1, False, 32, 1),
    ]
    assert result.segments[1].score == pytest.approx(0.9)
    assert (result.segment_map[:, :4] == 1).all()
    assert (result.segment_map[:, 4:8] == 2).all()
    assert (result.segment_map[:, 8] == 0).all()  # q3's pixels stay void
    # with a permissive overlap threshold q3 becomes a segment on the pixels it won
    loose = panoptic_inference(pred_logits, masks, overlap_threshold=0.1, thing_classes={0})
    assert [(s.id, s.category_id, s.area, s.query) for s in loose.segments][-1] == (3, 0, 8, 3)
    assert (loose.segment_map[:, 8] == 3).all()


def test_panoptic_empty_when_nothing_passes() -> None:
    pred_logits = _logits([[0.3, 0.3, 0.4]])
    result = panoptic_inference(pred_logits, torch.zeros(1, 5, 6), thing_classes={0})
    assert result.segments == ()
    assert result.segment_map.shape == (5, 6) and not result.segment_map.any()


def test_instance_inference_pairs_scores_and_boxes() -> None:
    pred_logits = _logits([[0.6, 0.3, 0.1], [0.2, 0.1, 0.7]])
    masks = torch.stack([_square(6, 7, 1, 3, 2, 6), torch.full((6, 7), -5.0)])
    result = instance_inference(pred_logits, masks, top_k=3)
    # pairs (q0, c0) 0.6, (q0, c1) 0.3, (q1, c0) 0.2; q1's mask is empty -> score 0
    assert result.queries.tolist() == [0, 0, 1]
    assert result.classes.tolist() == [0, 1, 0]
    mean_prob = torch.tensor(8.0).sigmoid().item()
    torch.testing.assert_close(result.scores, torch.tensor([0.6 * mean_prob, 0.3 * mean_prob, 0.0]))
    assert result.boxes.tolist() == [[1, 2, 3, 6], [1, 2, 3, 6], [0, 0, 0, 0]]
    only_c1 = instance_inference(pred_logits, masks, top_k=3, thing_classes=[1])
    assert only_c1.classes.tolist() == [1] and only_c1.masks.shape == (1, 6, 7)


def test_masks_to_boxes_single_pixel_and_empty() -> None:
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, 2, 3] = True
    assert masks_to_boxes(masks).tolist() == [[2, 3, 3, 4], [0, 0, 0, 0]]


def test_vl_similarity_clamps_the_temperature() -> None:
    v = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[3.0, 0.0]])
    clamped = vl_similarity(v, t, torch.tensor(4.8))  # exp(4.8) = 121.5 -> 100
    torch.testing.assert_close(clamped, torch.tensor([[100.0], [0.0]]), atol=1e-4, rtol=0)
    free = vl_similarity(v, t, 1.0)
    torch.testing.assert_close(free, torch.tensor([[math.e], [0.0]]), atol=1e-5, rtol=0)


def test_rank_grounding_drops_duplicates_and_weak_queries() -> None:
    # q0 best, q1 a near copy of q0's mask, q2 another instance, q3 weak, q4 empty mask
    similarity = torch.tensor([[10.0], [9.9], [9.5], [2.0], [9.8]])
    masks = torch.stack(
        [
            _square(10, 10, 0, 5, 0, 5),
            _square(10, 10, 0, 5, 0, 5),
            _square(10, 10, 5, 10, 5, 10),
            _square(10, 10, 0, 10, 0, 10),
            torch.full((10, 10), -1.0),
        ]
    )
    (matches,) = rank_grounding_queries(similarity, masks, score_threshold=0.05)
    assert matches.queries.tolist() == [0, 2]
    torch.testing.assert_close(matches.similarity, torch.tensor([10.0, 9.5]))
    torch.testing.assert_close(matches.scores, similarity.softmax(0)[[0, 2], 0])
    (loose,) = rank_grounding_queries(similarity, masks, score_threshold=0.05, iou_threshold=1.0)
    assert loose.queries.tolist() == [0, 1, 2]
    (one,) = rank_grounding_queries(similarity, masks, max_matches=1)
    assert one.queries.tolist() == [0]
    # the best query is kept even when it scores below the threshold
    (best_only,) = rank_grounding_queries(similarity, masks, score_threshold=0.99)
    assert best_only.queries.tolist() == [0]
