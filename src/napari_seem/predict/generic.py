"""Generic segmentation by the model's object queries (``panoptic``, ``instance``,
``semantic``): the official "segment everything" paths over a user vocabulary.

Built only on the predictor's public operations (its current encoding, class embeddings,
inference context and logits-to-mask resampling).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch

from napari_seem.core.results import ObjectMask
from napari_seem.model.postprocess import (
    instance_inference,
    panoptic_inference,
    semantic_inference,
)
from napari_seem.model.transforms import logits_to_image

if TYPE_CHECKING:
    from napari_seem.predict.predictor import SeemPredictor

__all__ = ["QueryMode", "segment_by_queries"]

QueryMode = Literal["panoptic", "instance", "semantic"]


def segment_by_queries(
    predictor: SeemPredictor,
    names: list[str],
    mode: str,
    *,
    object_mask_threshold: float = 0.4,
    overlap_threshold: float = 0.8,
    top_k: int = 100,
    min_area: int = 1,
) -> list[ObjectMask]:
    """Objects of the predictor's current image found by its object queries.

    Args:
        predictor: holds the current image (``set_image`` was called).
        names: clean class names (``"background"`` is appended by the text encoder).
        mode: ``"panoptic"``, ``"instance"`` or ``"semantic"`` (see
            :meth:`SeemPredictor.segment_everything`).
        object_mask_threshold, overlap_threshold: panoptic thresholds.
        top_k: instance: number of detections.
        min_area: drop objects smaller than this many level-0 pixels.

    Returns:
        Level-0 object masks with their class names and scores.

    Raises:
        ValueError: an unknown ``mode``.
    """
    if mode not in ("panoptic", "instance", "semantic"):
        raise ValueError(
            f"mode must be 'panoptic', 'instance', 'semantic', 'points' or 'auto'; got {mode!r}"
        )
    emb = predictor.class_embeddings(names)
    enc = predictor.encoded
    with predictor.inference():
        out = predictor.model.decode(
            enc.features,
            class_embeddings=emb.to(enc.features.mask_features.dtype),
            tasks=("object",),
        )
    assert out.pred_logits is not None and out.pred_masks is not None
    logits = out.pred_logits[0].float()  # (Q, K+1)
    masks = out.pred_masks[0].float()  # (Q, h, w)
    if mode == "semantic":
        return _semantic(predictor, names, logits, masks, min_area)
    if mode == "instance":
        return _instance(predictor, names, logits, masks, top_k, min_area)
    return _panoptic(
        predictor, names, logits, masks, object_mask_threshold, overlap_threshold, min_area
    )


def _semantic(
    predictor: SeemPredictor,
    names: list[str],
    logits: torch.Tensor,
    masks: torch.Tensor,
    min_area: int,
) -> list[ObjectMask]:
    """One object per class present; ``logits`` ``(Q, K+1)``, ``masks`` ``(Q, h, w)``."""
    frame = predictor.encoded.frame
    full = logits_to_image(masks, frame, frame.image_hw, method=predictor.mask_resize)
    sem = semantic_inference(logits, full)  # (K, H, W)
    label = sem.argmax(0).cpu().numpy()
    best = sem.max(0).values.cpu().numpy()
    objects = []
    for k, name in enumerate(names):
        mask = label == k
        if mask.sum() >= min_area:
            objects.append(
                ObjectMask.from_full(
                    mask,
                    score=float(best[mask].mean()),
                    class_name=name,
                    class_score=float(best[mask].mean()),
                    source="semantic",
                )
            )
    return objects


def _instance(
    predictor: SeemPredictor,
    names: list[str],
    logits: torch.Tensor,
    masks: torch.Tensor,
    top_k: int,
    min_area: int,
) -> list[ObjectMask]:
    """The ``top_k`` detections (may overlap)."""
    inst = instance_inference(logits, masks, top_k=top_k)
    keep = inst.scores > 0
    detections = predictor.logits_to_masks(masks[inst.queries[keep]])
    objects = []
    for mask, score, cls in zip(
        detections, inst.scores[keep].tolist(), inst.classes[keep].tolist(), strict=True
    ):
        if mask.sum() >= min_area:
            objects.append(
                ObjectMask.from_full(
                    mask, score=score, class_name=names[cls], class_score=score, source="instance"
                )
            )
    return objects


def _panoptic(
    predictor: SeemPredictor,
    names: list[str],
    logits: torch.Tensor,
    masks: torch.Tensor,
    object_mask_threshold: float,
    overlap_threshold: float,
    min_area: int,
) -> list[ObjectMask]:
    """Non-overlapping instances; every class counts as a "thing"."""
    prob, cls = logits.softmax(-1).max(-1)
    keep = (cls != len(names)) & (prob > object_mask_threshold)
    queries = torch.nonzero(keep)[:, 0]
    if not len(queries):
        return []
    frame = predictor.encoded.frame
    # resample only the kept queries: 101 full-size maps would not fit big images
    full = logits_to_image(masks[queries], frame, frame.image_hw, method=predictor.mask_resize)
    pano = panoptic_inference(
        logits[queries],
        full,
        object_mask_threshold=object_mask_threshold,
        overlap_threshold=overlap_threshold,
        thing_classes=range(len(names)),
    )
    seg = pano.segment_map.cpu().numpy()
    objects = []
    for segment in pano.segments:
        mask = seg == segment.id
        if segment.area >= min_area:
            objects.append(
                ObjectMask.from_full(
                    mask,
                    score=segment.score,
                    class_name=names[segment.category_id],
                    class_score=segment.score,
                    source="panoptic",
                )
            )
    return objects
