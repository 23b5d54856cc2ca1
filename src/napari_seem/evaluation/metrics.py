"""Segmentation metrics on boolean masks and instance label maps (pure numpy).

Conventions: ``truth`` is an ``(H, W)`` integer instance map (0 = background, each other
value one object); predictions are a sequence of ``(H, W)`` bool masks (they may overlap)
with one confidence score each, higher = more confident.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

__all__ = [
    "DetectionScores",
    "average_precision",
    "detection_scores",
    "greedy_matches",
    "iou_matrix",
    "mask_iou",
    "matched_count",
    "pool_detections",
]

BoolMask = npt.NDArray[np.bool_]
IntLabels = npt.NDArray[np.integer[Any]]


def mask_iou(a: BoolMask, b: BoolMask) -> float:
    """IoU of two ``(H, W)`` masks; 1.0 when both are empty (nothing to disagree on)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def iou_matrix(truth: IntLabels, preds: Sequence[BoolMask]) -> npt.NDArray[np.float64]:
    """``(T, P)`` IoU of every truth instance (ascending id) with every predicted mask."""
    truth_ids = np.unique(truth)
    truth_ids = truth_ids[truth_ids != 0]
    out = np.zeros((len(truth_ids), len(preds)), np.float64)
    if not len(truth_ids) or not preds:
        return out
    index = np.searchsorted(truth_ids, truth)  # position of each pixel's id; 0 ids masked below
    index[truth == 0] = len(truth_ids)  # background: an extra bin, ignored
    t_area = np.bincount(index.ravel(), minlength=len(truth_ids) + 1)[:-1]
    for k, mask in enumerate(preds):
        if mask.shape != truth.shape:
            raise ValueError(f"prediction {k} has shape {mask.shape}; truth is {truth.shape}")
        inter = np.bincount(index[mask], minlength=len(truth_ids) + 1)[:-1]
        union = t_area + int(mask.sum()) - inter
        out[:, k] = inter / np.maximum(union, 1)
    return out


def matched_count(iou: npt.NDArray[np.float64], threshold: float = 0.5) -> int:
    """Most one-to-one (truth, prediction) pairs with IoU >= ``threshold`` (Hungarian)."""
    if iou.size == 0:
        return 0
    hit = iou >= threshold
    # maximise the number of hits; IoU breaks ties so the pairing is deterministic
    rows, cols = linear_sum_assignment(-(hit + 1e-3 * iou))
    return int(hit[rows, cols].sum())


def greedy_matches(
    iou: npt.NDArray[np.float64], scores: Sequence[float], threshold: float = 0.5
) -> npt.NDArray[np.bool_]:
    """COCO-style matching: predictions in descending score order each take the unmatched
    truth of highest IoU >= ``threshold``. Returns ``(P,)`` True = true positive."""
    n_truth, n_pred = iou.shape
    tp = np.zeros(n_pred, bool)
    taken = np.zeros(n_truth, bool)
    for k in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        if not n_truth:
            break
        column = np.where(taken, -1.0, iou[:, k])
        best = int(np.argmax(column))
        if column[best] >= threshold:
            taken[best] = True
            tp[k] = True
    return tp


def average_precision(
    scores: Sequence[float], true_positive: Sequence[bool], n_truth: int
) -> float:
    """Area under the precision-recall curve of ranked detections (all-points interpolation:
    precision at each recall is the best precision at that recall or higher).

    Args:
        scores: ``(P,)`` confidences; ranking is by descending score (stable on ties).
        true_positive: ``(P,)`` whether each detection matched a truth object.
        n_truth: number of truth objects (0 gives AP 0 when anything was predicted, 1 else).
    """
    s = np.asarray(scores, np.float64)
    t = np.asarray(true_positive, bool)
    if s.shape != t.shape:
        raise ValueError(f"scores {s.shape} and true_positive {t.shape} differ in length")
    if n_truth == 0:
        return 0.0 if len(s) else 1.0
    order = np.argsort(-s, kind="stable")
    tp = np.cumsum(t[order])
    precision = tp / np.arange(1, len(s) + 1)
    recall = tp / n_truth
    # the envelope: precision made non-increasing from the right
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float((steps * envelope).sum())


@dataclass(frozen=True)
class DetectionScores:
    """'Everything' quality: one-to-one matches at ``iou_threshold``.

    Attributes:
        precision, recall, f1: from the largest one-to-one matching (Hungarian).
        ap50: average precision of the score ranking (COCO-style greedy matching).
        predicted, truth, matched: counts.
    """

    precision: float
    recall: float
    f1: float
    ap50: float
    predicted: int
    truth: int
    matched: int


def _prf(matched: int, predicted: int, truth: int) -> tuple[float, float, float]:
    precision = matched / predicted if predicted else 0.0
    recall = matched / truth if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if matched else 0.0
    return precision, recall, f1


@dataclass(frozen=True)
class _ImageDetections:
    scores: list[float]
    true_positive: list[bool]
    truth: int
    matched: int


def _image_detections(
    truth: IntLabels, preds: Sequence[BoolMask], scores: Sequence[float], threshold: float
) -> _ImageDetections:
    if len(preds) != len(scores):
        raise ValueError(f"{len(preds)} predictions but {len(scores)} scores")
    iou = iou_matrix(truth, preds)
    return _ImageDetections(
        [float(s) for s in scores],
        [bool(v) for v in greedy_matches(iou, scores, threshold)],
        iou.shape[0],
        matched_count(iou, threshold),
    )


def detection_scores(
    truth: IntLabels,
    preds: Sequence[BoolMask],
    scores: Sequence[float],
    *,
    iou_threshold: float = 0.5,
) -> DetectionScores:
    """Precision, recall, F1 and AP of ``preds`` against the instances of ``truth``."""
    return pool_detections([(truth, preds, scores)], iou_threshold=iou_threshold)


def pool_detections(
    images: Sequence[tuple[IntLabels, Sequence[BoolMask], Sequence[float]]],
    *,
    iou_threshold: float = 0.5,
) -> DetectionScores:
    """:func:`detection_scores` over several images: counts are summed (micro average) and
    AP ranks all detections of all images together."""
    parts = [_image_detections(t, p, s, iou_threshold) for t, p, s in images]
    scores = [s for d in parts for s in d.scores]
    tp = [v for d in parts for v in d.true_positive]
    truth = sum(d.truth for d in parts)
    matched = sum(d.matched for d in parts)
    precision, recall, f1 = _prf(matched, len(scores), truth)
    return DetectionScores(
        precision=precision,
        recall=recall,
        f1=f1,
        ap50=average_precision(scores, tp, truth),
        predicted=len(scores),
        truth=truth,
        matched=matched,
    )
