"""Metrics on hand-made cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seem.evaluation.metrics import (
    average_precision,
    detection_scores,
    iou_matrix,
    mask_iou,
    pool_detections,
)


def _truth() -> np.ndarray:
    labels = np.zeros((40, 40), np.int32)
    labels[2:10, 2:10] = 1
    labels[20:30, 5:15] = 2
    labels[12:18, 25:35] = 3
    return labels


def test_mask_iou_known_values() -> None:
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[:, :5] = True
    b[:, 2:7] = True  # overlap 3 columns, union 7
    assert mask_iou(a, a) == 1.0
    assert mask_iou(a, b) == pytest.approx(3 / 7)
    assert mask_iou(a, ~a) == 0.0
    assert mask_iou(np.zeros_like(a), np.zeros_like(a)) == 1.0


def test_iou_matrix_matches_pairwise_ious() -> None:
    truth = _truth()
    preds = [truth == 2, truth == 1, np.zeros_like(truth, bool), (truth == 3) | (truth == 1)]
    m = iou_matrix(truth, preds)
    assert m.shape == (3, 4)
    for t, tid in enumerate((1, 2, 3)):
        for k, p in enumerate(preds):
            assert m[t, k] == pytest.approx(mask_iou(truth == tid, p))


def test_perfect_everything_scores_one() -> None:
    truth = _truth()
    preds = [truth == i for i in (1, 2, 3)]
    s = detection_scores(truth, preds, [0.9, 0.8, 0.7])
    assert (s.precision, s.recall, s.f1, s.ap50) == (1.0, 1.0, 1.0, 1.0)
    assert (s.predicted, s.truth, s.matched) == (3, 3, 3)


def test_empty_prediction_scores_zero() -> None:
    s = detection_scores(_truth(), [], [])
    assert (s.precision, s.recall, s.f1, s.ap50) == (0.0, 0.0, 0.0, 0.0)
    assert s.truth == 3 and s.predicted == 0


def test_a_merged_pair_is_not_a_match_at_iou_half() -> None:
    truth = np.zeros((20, 20), np.int32)
    truth[0:8, 0:8] = 1
    truth[0:8, 10:18] = 2
    truth[12:18, 12:18] = 3
    merged = np.zeros_like(truth, bool)
    merged[0:8, 0:18] = True  # IoU 64 / 144 with either square
    s = detection_scores(truth, [merged, truth == 3], [0.5, 0.6])
    assert s.matched == 1
    assert s.precision == pytest.approx(0.5) and s.recall == pytest.approx(1 / 3)
    assert s.f1 == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))


def test_ap50_on_a_constructed_ranking() -> None:
    # ranked TP, FP, TP over 3 truths: precision 1 at recall 1/3, 2/3 at recall 2/3
    assert average_precision([0.9, 0.8, 0.7], [True, False, True], 3) == pytest.approx(
        1 / 3 * 1.0 + 1 / 3 * (2 / 3)
    )
    # the ranking, not the input order, counts
    assert average_precision([0.7, 0.9, 0.8], [True, True, False], 3) == pytest.approx(5 / 9)
    # a false positive ranked last costs nothing
    assert average_precision([0.9, 0.8, 0.1], [True, True, False], 2) == pytest.approx(1.0)
    # ... ranked first: raw precisions 0, 1/2, 2/3 at recalls 0, 1/2, 1; interpolated
    # (best precision at this recall or beyond) both recall steps get 2/3
    assert average_precision([0.1, 0.8, 0.9], [True, True, False], 2) == pytest.approx(2 / 3)
    assert average_precision([], [], 0) == 1.0


def test_ap50_of_masks_uses_scores_for_the_ranking() -> None:
    truth = _truth()
    wrong = np.zeros_like(truth, bool)
    wrong[35:40, 35:40] = True
    preds = [truth == 1, wrong, truth == 2]
    high_fp = detection_scores(truth, preds, [0.9, 0.95, 0.8])
    low_fp = detection_scores(truth, preds, [0.9, 0.1, 0.8])
    assert low_fp.ap50 == pytest.approx(2 / 3)  # recall stops at 2/3 with precision 1
    # FP, TP, TP: interpolated precision 2/3 at recalls 1/3 and 2/3
    assert high_fp.ap50 == pytest.approx(1 / 3 * (2 / 3) + 1 / 3 * (2 / 3))
    assert high_fp.f1 == low_fp.f1  # F1 ignores the ranking


def test_pooling_sums_counts_over_images() -> None:
    truth = _truth()
    s = pool_detections(
        [(truth, [truth == 1, truth == 2, truth == 3], [1.0, 1.0, 1.0]), (truth, [], [])]
    )
    assert (s.matched, s.truth, s.predicted) == (3, 6, 3)
    assert s.precision == 1.0 and s.recall == 0.5 and s.ap50 == pytest.approx(0.5)


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        iou_matrix(_truth(), [np.zeros((5, 5), bool)])
    with pytest.raises(ValueError, match="scores"):
        detection_scores(_truth(), [np.zeros((40, 40), bool)], [])
