"""Turn decoder outputs (class logits + mask logits) into semantic, panoptic, instance and
text-grounding results, with the official SEEM semantics.

All functions work on one image. Class logits ``pred_logits`` are ``(Q, K + 1)`` for ``Q``
queries and a vocabulary of ``K`` classes plus a trailing no-object ("background")
column. Mask logits are ``(Q, H, W)`` on whatever pixel grid the caller chose; the
official evaluation first brings them to the output image with
:func:`napari_seem.model.transforms.logits_to_image` and runs these functions there, and so
do the parity tests. Results are on the same grid as the mask logits given.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import torch

from napari_seem.model.layers import l2_normalize

__all__ = [
    "GroundingMatches",
    "InstanceResult",
    "PanopticResult",
    "PanopticSegment",
    "best_grounding_queries",
    "instance_inference",
    "l2_normalize",
    "masks_to_boxes",
    "panoptic_inference",
    "rank_grounding_queries",
    "semantic_inference",
    "vl_similarity",
]

#: ``vl_similarity`` caps the learned temperature exp(logit_scale) at this value.
MAX_GROUNDING_SCALE = 100.0


@dataclass(frozen=True)
class PanopticSegment:
    """One segment of a :class:`PanopticResult`.

    Attributes:
        id: value of the segment in ``segment_map`` (1, 2, ...; 0 is void).
        category_id: class index into the vocabulary (``0 .. K-1``).
        isthing: whether the class is a countable "thing" (else "stuff": all queries of
            a stuff class merge into one segment).
        score: class probability of the query that made the segment (the highest one
            for a merged stuff segment).
        area: number of pixels of ``segment_map`` equal to ``id``.
        query: index of the query that made the segment (the first one when merged).
    """

    id: int
    category_id: int
    isthing: bool
    score: float
    area: int
    query: int


@dataclass(frozen=True)
class PanopticResult:
    """Panoptic segmentation of one image.

    Attributes:
        segment_map: ``(H, W)`` int32 segment ids on the mask-logit grid, 0 = void.
        segments: the segments in id order (``segments[i].id == i + 1``).
    """

    segment_map: torch.Tensor
    segments: tuple[PanopticSegment, ...]


@dataclass(frozen=True)
class InstanceResult:
    """Instance segmentation of one image, ``N`` detections sorted by descending score.

    Attributes:
        scores: ``(N,)`` float: class probability x mean mask probability inside the mask.
        classes: ``(N,)`` int64 class indices (``0 .. K-1``).
        masks: ``(N, H, W)`` bool, ``mask logit > 0``, on the mask-logit grid.
        boxes: ``(N, 4)`` float ``(row_min, col_min, row_max, col_max)`` in pixels of that
            grid, max exclusive (a one-pixel mask at (r, c) is ``(r, c, r+1, c+1)``);
            all zeros for an empty mask.
        queries: ``(N,)`` int64 index of the query each detection came from (a query
            can appear once per class).
    """

    scores: torch.Tensor
    classes: torch.Tensor
    masks: torch.Tensor
    boxes: torch.Tensor
    queries: torch.Tensor


@dataclass(frozen=True)
class GroundingMatches:
    """The queries that answer one text, best first.

    Attributes:
        queries: ``(N,)`` int64 grounding-query indices; ``queries[0]`` is the official
            single answer (:func:`best_grounding_queries`).
        scores: ``(N,)`` float: each query's share of the softmax over all queries of the
            text's similarity logits (see :func:`rank_grounding_queries`).
        similarity: ``(N,)`` float: the raw ``vl_similarity`` logits of those queries.
    """

    queries: torch.Tensor
    scores: torch.Tensor
    similarity: torch.Tensor


def semantic_inference(pred_logits: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """Per-class soft semantic map: ``sum_q softmax(class)_q,c * sigmoid(mask)_q``.

    Args:
        pred_logits: ``(Q, K + 1)`` class logits, background last.
        mask_logits: ``(Q, H, W)`` mask logits.

    Returns:
        ``(K, H, W)`` float class scores (not normalised over classes) on the mask grid.
    """
    class_prob = pred_logits.softmax(-1)[:, :-1]
    return torch.einsum("qc,qhw->chw", class_prob, mask_logits.sigmoid())


def panoptic_inference(
    pred_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    *,
    object_mask_threshold: float = 0.8,
    overlap_threshold: float = 0.8,
    thing_classes: Collection[int],
) -> PanopticResult:
    """Non-overlapping segments from the queries, as the official ``panoptic_inference``.

    A query is kept when its best class is not background and that class probability is
    above ``object_mask_threshold`` (config 0.8 for v1 evaluation, 0.4 in the demo).
    Every pixel goes to the kept query with the largest ``score * sigmoid(mask)``; a
    query becomes a segment on the pixels it wins where its own ``sigmoid(mask) >= 0.5``,
    unless the pixels it wins are fewer than ``overlap_threshold`` times its own area
    (``sigmoid >= 0.5``). Queries of the same stuff class share one segment id.

    Args:
        pred_logits: ``(Q, K + 1)`` class logits, background last.
        mask_logits: ``(Q, H, W)`` mask logits.
        thing_classes: class indices that count as things; all others are stuff.

    Returns:
        The segment map (int32, on the mask grid) and the segments.
    """
    num_classes = pred_logits.shape[-1] - 1
    scores, labels = pred_logits.softmax(-1).max(-1)
    keep = labels.ne(num_classes) & (scores > object_mask_threshold)
    kept_queries = keep.nonzero()[:, 0]
    height, width = mask_logits.shape[-2:]
    segment_map = torch.zeros((height, width), dtype=torch.int32, device=mask_logits.device)
    n = int(kept_queries.numel())
    if n == 0:
        return PanopticResult(segment_map=segment_map, segments=())

    masks = mask_logits[keep].sigmoid()  # (n, H, W)
    cur_scores = scores[keep]
    winner = (cur_scores[:, None, None] * masks).argmax(0)  # (H, W) index into kept
    # a pixel belongs to its winner only where the winner's own mask is on
    owned = masks.gather(0, winner[None])[0] >= 0.5
    won_area = torch.bincount(winner.flatten(), minlength=n).tolist()
    own_area = (masks >= 0.5).flatten(1).sum(1).tolist()
    owned_area = torch.bincount(winner[owned], minlength=n).tolist()

    things = set(thing_classes)
    seg_of_kept = [0] * n
    founders: list[tuple[int, int, bool, float, int]] = []  # (id, class, isthing, score, query)
    stuff_segment: dict[int, int] = {}
    for k, (cls, score, query) in enumerate(
        zip(labels[keep].tolist(), cur_scores.tolist(), kept_queries.tolist(), strict=True)
    ):
        if not (won_area[k] > 0 and own_area[k] > 0 and owned_area[k] > 0):
            continue
        if won_area[k] / own_area[k] < overlap_threshold:
            continue
        isthing = cls in things
        if not isthing and cls in stuff_segment:
            seg_id = stuff_segment[cls]
            seg_of_kept[k] = seg_id
            sid, scls, sthing, sscore, squery = founders[seg_id - 1]
            founders[seg_id - 1] = (sid, scls, sthing, max(sscore, score), squery)
            continue
        seg_id = len(founders) + 1
        if not isthing:
            stuff_segment[cls] = seg_id
        seg_of_kept[k] = seg_id
        founders.append((seg_id, cls, isthing, score, query))

    lookup = torch.tensor(seg_of_kept, dtype=torch.int32, device=segment_map.device)
    segment_map = torch.where(owned, lookup[winner], segment_map)
    areas = torch.bincount(segment_map.flatten().long(), minlength=len(founders) + 1).tolist()
    segments = tuple(
        PanopticSegment(
            id=sid, category_id=cls, isthing=isthing, score=score, area=areas[sid], query=query
        )
        for sid, cls, isthing, score, query in founders
    )
    return PanopticResult(segment_map=segment_map, segments=segments)


def instance_inference(
    pred_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    *,
    top_k: int = 100,
    thing_classes: Collection[int] | None = None,
) -> InstanceResult:
    """Instance detections, as the official ``instance_inference``.

    The ``top_k`` largest class probabilities over all (query, class) pairs (background
    excluded) are taken; with ``thing_classes`` given (the official panoptic setting)
    pairs of other classes are then dropped. Each pair's mask is ``mask logit > 0`` and
    its score is ``class prob * mean(sigmoid(mask logit) inside the mask)``. The official
    code leaves the order unspecified (``topk(sorted=False)``); here detections are
    sorted by descending score (stable, ties keep class-probability order).

    Args:
        pred_logits: ``(Q, K + 1)`` class logits, background last.
        mask_logits: ``(Q, H, W)`` mask logits.
        top_k: pairs kept before the thing filter (``TEST.DETECTIONS_PER_IMAGE``).
        thing_classes: keep only these classes; None keeps all.

    Returns:
        The detections, on the mask grid.
    """
    class_prob = pred_logits.softmax(-1)[:, :-1]  # (Q, K)
    num_classes = class_prob.shape[1]
    pair_prob, pair_index = class_prob.flatten().topk(min(top_k, class_prob.numel()))
    classes = pair_index % num_classes
    queries = torch.div(pair_index, num_classes, rounding_mode="floor")
    if thing_classes is not None:
        allowed = torch.tensor(
            sorted(set(thing_classes)), dtype=classes.dtype, device=classes.device
        )
        is_thing = torch.isin(classes, allowed)
        pair_prob, classes, queries = pair_prob[is_thing], classes[is_thing], queries[is_thing]

    # a query can pair with several classes: score its mask once
    unique_queries, inverse = queries.unique(return_inverse=True)
    logits = mask_logits[unique_queries]
    on = (logits > 0).to(logits.dtype).flatten(1)
    mask_score = (logits.sigmoid().flatten(1) * on).sum(1) / (on.sum(1) + 1e-6)
    scores = pair_prob * mask_score[inverse]

    order = scores.argsort(descending=True, stable=True)
    scores, classes, queries = scores[order], classes[order], queries[order]
    masks = logits[inverse[order]] > 0
    return InstanceResult(
        scores=scores, classes=classes, masks=masks, boxes=masks_to_boxes(masks), queries=queries
    )


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes of binary masks.

    Args:
        masks: ``(N, H, W)`` bool masks.

    Returns:
        ``(N, 4)`` float32 ``(row_min, col_min, row_max, col_max)``, max exclusive, in the
        masks' pixel grid; all zeros for an empty mask.
    """
    height, width = masks.shape[-2:]
    rows = masks.any(2)  # (N, H)
    cols = masks.any(1)  # (N, W)
    # argmax of a bool row finds its first True; flipping finds the last
    r0 = rows.to(torch.uint8).argmax(1)
    c0 = cols.to(torch.uint8).argmax(1)
    r1 = height - rows.flip(1).to(torch.uint8).argmax(1)
    c1 = width - cols.flip(1).to(torch.uint8).argmax(1)
    boxes = torch.stack((r0, c0, r1, c1), dim=1).to(torch.float32)
    return boxes * rows.any(1, keepdim=True)


def vl_similarity(
    visual: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor | float
) -> torch.Tensor:
    """Grounding similarity logits: ``min(exp(logit_scale), 100) * cos(visual, text)``.

    Both sides are normalised with :func:`l2_normalize` (eps 1e-7) as in the official
    ``evaluate_grounding``. Class logits use the *unclamped* ``exp(logit_scale)``; only
    grounding clamps it.

    Args:
        visual: ``(Q, D)`` caption embeddings of the grounding queries (``pred_gtexts``).
        text: ``(T, D)`` sentence embeddings of the texts (``class_emb``, unnormalised).
        logit_scale: the text encoder's ``logit_scale`` (0-d tensor or float), log scale.

    Returns:
        ``(Q, T)`` similarity logits.
    """
    scale = torch.as_tensor(logit_scale, dtype=visual.dtype, device=visual.device)
    cosine = l2_normalize(visual) @ l2_normalize(text).t()
    return scale.exp().clamp(max=MAX_GROUNDING_SCALE) * cosine


def best_grounding_queries(similarity: torch.Tensor) -> torch.Tensor:
    """The official answer to each text: the single query with the largest similarity.

    Args:
        similarity: ``(Q, T)`` logits from :func:`vl_similarity`.

    Returns:
        ``(T,)`` int64 query index per text.
    """
    return similarity.argmax(0)


def rank_grounding_queries(
    similarity: torch.Tensor,
    mask_logits: torch.Tensor,
    *,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.8,
    max_matches: int | None = None,
) -> tuple[GroundingMatches, ...]:
    """Every query that answers a text, ranked: all instances of "cell", not just one.

    The official code keeps only the best query per text. Here each query gets a score:
    the softmax over all queries of the text's similarity logits, i.e. the probability,
    under the grounding loss the model was trained with (cross-entropy over queries),
    that this query is the answer. Several instances of the described thing share that
    mass, so the threshold is on the probability, not on the raw cosine.

    Per text, queries are visited best first and kept when

    - it is the best query (always kept, so ``queries[0]`` equals the official answer),
      or its score is ``>= score_threshold`` and its mask (``logit > 0``) is not empty;
    - and its mask IoU with every query already kept is ``<= iou_threshold`` (near
      duplicates of a better answer are dropped).

    Args:
        similarity: ``(Q, T)`` logits from :func:`vl_similarity`.
        mask_logits: ``(Q, H, W)`` mask logits of the same queries on any grid (the
            stride-4 grid is enough for the IoU test).
        score_threshold: minimum score of a query other than the best.
        iou_threshold: maximum mask IoU with a better kept query.
        max_matches: keep at most this many per text (None: no limit).

    Returns:
        One :class:`GroundingMatches` per text, in text order.
    """
    num_queries, num_texts = similarity.shape
    prob = similarity.softmax(0)
    masks = (mask_logits > 0).flatten(1).to(torch.float32)  # (Q, HW)
    area = masks.sum(1)
    inter = masks @ masks.t()
    iou = inter / (area[:, None] + area[None, :] - inter).clamp(min=1.0)
    area_list = area.tolist()

    results = []
    limit = num_queries if max_matches is None else max(int(max_matches), 1)
    for t in range(num_texts):
        # sort the logits, not the probabilities, so that ties resolve as in argmax
        order = similarity[:, t].argsort(descending=True, stable=True).tolist()
        kept: list[int] = []
        for rank, q in enumerate(order):
            if len(kept) >= limit:
                break
            if rank > 0:
                if float(prob[q, t]) < score_threshold:
                    break
                if area_list[q] == 0:
                    continue
                if kept and float(iou[q, kept].max()) > iou_threshold:
                    continue
            kept.append(q)
        index = torch.tensor(kept, dtype=torch.int64, device=similarity.device)
        results.append(
            GroundingMatches(queries=index, scores=prob[index, t], similarity=similarity[index, t])
        )
    return tuple(results)
