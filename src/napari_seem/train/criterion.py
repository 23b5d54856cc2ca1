"""The training criterion: Hungarian object loss, grounding loss, spatial best-of-Q loss
and the auxiliary pixel-embedding loss (see :mod:`napari_seem.train.loop`).

Targets are soft stride-4 masks ``(T, N)`` (``N`` = cells of the crop, flattened) from
:func:`napari_seem.train.losses.soft_targets`; predictions are one image's
:class:`~napari_seem.model.decoder.DecoderPrediction`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from napari_seem.model.decoder import DecoderPrediction
from napari_seem.model.seem import ImageFeatures, SeemModel
from napari_seem.train.config import TrainConfig
from napari_seem.train.losses import class_loss, dice_loss, mask_bce_loss
from napari_seem.train.matching import hungarian_match

__all__ = ["Criterion"]


class Criterion:
    """The weighted losses of one training run.

    Args:
        config: the loss weights (``w_class``, ``w_mask``, ``w_dice``, ``no_object_weight``).
        model: the model being trained (its text ``logit_scale`` and queries per prompt).
    """

    def __init__(self, config: TrainConfig, model: SeemModel) -> None:
        self.config = config
        self.model = model

    def mask_losses(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``(T,)`` weighted BCE + dice of matched ``(T, N)`` logits and targets."""
        cfg = self.config
        return cfg.w_mask * mask_bce_loss(logits, targets) + cfg.w_dice * dice_loss(logits, targets)

    def object_loss(
        self, pred: DecoderPrediction, targets: torch.Tensor, classes: torch.Tensor
    ) -> torch.Tensor:
        """Object queries: Hungarian matching of the ``(Q, N)`` masks to the ``(T, N)``
        targets of classes ``(T,)``; class cross-entropy (unmatched: background) plus the
        matched mask losses."""
        assert pred.pred_logits is not None and pred.pred_masks is not None
        logits = pred.pred_logits[0]  # (Q, K+1)
        masks = pred.pred_masks[0].flatten(1)  # (Q, N)
        targets = targets[: masks.shape[0]]
        classes = classes[: masks.shape[0]]
        q_idx, t_idx = hungarian_match(
            masks.detach(),
            targets,
            logits.detach().softmax(-1),
            classes,
            w_class=self.config.w_class,
            w_mask=self.config.w_mask,
            w_dice=self.config.w_dice,
        )
        target_cls = torch.full(
            (logits.shape[0],), logits.shape[1] - 1, dtype=torch.long, device=logits.device
        )
        target_cls[q_idx] = classes[t_idx]
        loss = self.config.w_class * class_loss(
            logits, target_cls, no_object_weight=self.config.no_object_weight
        )
        if len(q_idx):
            loss = loss + self.mask_losses(masks[q_idx], targets[t_idx]).mean()
        return loss

    def grounding_loss(
        self,
        pred: DecoderPrediction,
        target: torch.Tensor,
        sentence: torch.Tensor,
        absent: bool = False,
    ) -> torch.Tensor:
        """Grounding queries: the best query (mask cost minus caption similarity) learns
        the ``(N,)`` union ``target`` of the phrase's class and to rank first against the
        unit ``(D,)`` ``sentence``; an ``absent`` phrase's chosen query learns an empty mask."""
        assert pred.pred_gmasks is not None and pred.pred_gtexts is not None
        masks = pred.pred_gmasks[0].flatten(1)  # (Q, N)
        scale = self.model.text_encoder.logit_scale.exp().clamp(max=100.0)
        captions = pred.pred_gtexts[0]
        sim = scale * F.normalize(captions, dim=-1) @ sentence  # (Q,)
        if absent:
            # the phrase names nothing in the crop: the query it picks must answer empty
            best = int(sim.detach().argmax())
            return self.mask_losses(masks[best : best + 1], target[None])[0]
        with torch.no_grad():
            cost = self.mask_losses(masks, target[None].expand_as(masks))
            cost = cost - self.config.w_class * sim.softmax(0)
            best = int(cost.argmin())
        loss = self.mask_losses(masks[best : best + 1], target[None])[0]
        pick = torch.tensor([best], device=sim.device)
        return loss + self.config.w_class * F.cross_entropy(sim[None], pick)

    def spatial_loss(
        self,
        pred: DecoderPrediction,
        targets: torch.Tensor,
        spatial_logits: torch.Tensor | None,
    ) -> torch.Tensor:
        """Spatial queries: the best of each prompt's ``Q`` candidates learns its ``(N,)``
        target (``targets`` ``(P, N)``); with the final ``spatial_logits`` ``(1, P*Q, P)``
        a cross-entropy teaches the pooled-embedding rule to select that candidate."""
        assert pred.pred_smasks is not None
        q = self.model.decoder.config.queries_per_prompt
        num_prompts = targets.shape[0]
        masks = pred.pred_smasks[0].flatten(1).view(num_prompts, q, -1)  # (P, Q, N)
        per = self.mask_losses(
            masks.reshape(num_prompts * q, -1),
            targets[:, None].expand(-1, q, -1).reshape(num_prompts * q, -1),
        ).view(num_prompts, q)
        best = per.detach().argmin(1)
        loss = per.gather(1, best[:, None]).mean()
        if spatial_logits is not None:
            rows = torch.stack(
                [spatial_logits[0, p * q : (p + 1) * q, p] for p in range(num_prompts)]
            )  # (P, Q)
            loss = loss + F.cross_entropy(rows.float(), best)
        return loss

    _FEATURE_ANCHORS = 24
    _FEATURE_SCALE = 15.0
    _FEATURE_MARGIN = 0.5

    def feature_loss(
        self, features: ImageFeatures, soft: torch.Tensor, rng: np.random.Generator
    ) -> torch.Tensor:
        """Auxiliary pixel-embedding loss: for up to 24 objects, a random cell well inside
        the object is the anchor; ``15 * (cos(F(anchor), F(x)) - 0.5)`` are mask logits over
        the crop, scored with the mask BCE + dice against the object's soft mask ``(T, N)``."""
        fn = F.normalize(features.mask_features[0].flatten(1).float(), dim=0)  # (C, N)
        order = rng.permutation(soft.shape[0])[: self._FEATURE_ANCHORS]
        anchors = []
        for t in order:
            row = soft[int(t)]
            inside = torch.nonzero(row >= 0.99).flatten()
            if len(inside) == 0:
                inside = row.argmax()[None]
            anchors.append(int(inside[int(rng.integers(len(inside)))]))
        logits = self._FEATURE_SCALE * (fn[:, anchors].T @ fn - self._FEATURE_MARGIN)
        return self.mask_losses(logits, soft[torch.as_tensor(order)]).mean()
