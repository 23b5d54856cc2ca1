"""The seem-lite v2 trainer: fresh crops every step and the interactive task trained with the
model's own errors over several rounds.

:class:`StreamTrainer` is a :class:`~napari_seem.train.loop.Trainer` whose step draws
``batch_size`` new crops from a :class:`~napari_seem.train.stream.CropStream` (seeded by
``(seed, step)``; the frozen backbone runs on them under ``no_grad``) instead of picking
cached ones. Per crop the loss is:

- **round 1**: every task decoded at once, as in the v1 trainer (object queries, grounding,
  spatial prompts of random kinds with optional negative clicks on touching neighbours),
  with deep supervision, plus the auxiliary pixel-embedding loss;
- **rounds 2..R** (``R - 1`` drawn from ``RoundsConfig.extra_rounds``): after each round the
  answer of every prompt gives its next click from its own errors
  (:func:`~napari_seem.train.own_errors.own_error_clicks`: positive in the largest false
  negative, negative in the largest false positive or on a swallowed touching neighbour),
  the answer's logits become the memory (``prev_mask``) of the next round; the middle rounds
  run without gradient and the **last round** is trained again (spatial loss, deep
  supervision), weighted ``RoundsConfig.w_last``.

Checkpoints and the step-seeded randomness are the parent's: a run resumed from
``last.pt`` repeats an uninterrupted one exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_seem.model.seem import ImageFeatures, SeemModel
from napari_seem.train.config import CachedCrop, TrainConfig
from napari_seem.train.data import labelled_image
from napari_seem.train.loop import Trainer
from napari_seem.train.losses import soft_targets
from napari_seem.train.own_errors import own_error_clicks
from napari_seem.train.rounds import prompted_objects
from napari_seem.train.stream import CropStream, StreamCrop
from napari_seem.train.text_cache import TextCache

__all__ = ["RoundsConfig", "StreamTrainer"]


@dataclass(frozen=True, kw_only=True)
class RoundsConfig:
    """The multi-round interactive training of :class:`StreamTrainer`.

    Attributes:
        extra_rounds: probabilities of 0, 1, 2, ... corrective rounds after the first.
        w_last: weight of the last round's spatial loss (the first round's weight is 1).
        merged_prob: probability per round that a swallowed touching neighbour (>= 30 % of
            it inside the answer) gets the negative click instead of the largest error.
        min_pixels: instances smaller than this (crop pixels) are dropped from the targets.
    """

    extra_rounds: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)
    w_last: float = 1.0
    merged_prob: float = 0.5
    min_pixels: int = 12

    def __post_init__(self) -> None:
        if not self.extra_rounds or min(self.extra_rounds) < 0 or sum(self.extra_rounds) <= 0:
            raise ValueError(f"extra_rounds must be probabilities, got {self.extra_rounds}")


class StreamTrainer(Trainer):
    """Train on a :class:`CropStream` (see the module docstring).

    Args:
        model: the model (weights loaded; modified in place).
        stream: the crop source; its :meth:`~CropStream.vocabulary` is the class vocabulary.
        config: hyper-parameters (``crop`` must equal ``stream.crop``; ``crops_per_image``
            and ``scale_jitter`` are unused: the stream draws and zooms).
        rounds: the multi-round settings.
        out_dir, progress: as :class:`Trainer`.
    """

    def __init__(
        self,
        model: SeemModel,
        stream: CropStream,
        config: TrainConfig,
        rounds: RoundsConfig = RoundsConfig(),
        *,
        out_dir: str | Path | None = None,
        progress: bool = True,
    ) -> None:
        if config.crop != stream.crop:
            raise ValueError(f"config.crop {config.crop} != stream.crop {stream.crop}")
        first = stream.draw(config.seed, 2**31 - 1)  # an example for the parent's checks
        example = labelled_image(first.rgb, first.instances, dict(first.classes), name="stream")
        super().__init__(model, [example], config, out_dir=out_dir, progress=progress)
        self.stream = stream
        self.rounds = rounds
        self.vocabulary = stream.vocabulary()
        self._class_index = {c: i for i, c in enumerate(self.vocabulary)}
        phrases = [p for c in self.vocabulary for p in self._phrases_of(c)]
        self.text = TextCache(model, self.vocabulary, phrases)
        self.last_sources: list[str] = []

    def build_cache(self) -> None:
        """Nothing to cache: every step draws new crops."""

    def stream_crops(self, step: int) -> list[StreamCrop]:
        """The ``batch_size`` crops of ``step`` (a pure function of seed and step)."""
        return [self.stream.draw(self.config.seed, step, b) for b in range(self.config.batch_size)]

    @torch.no_grad()
    def encode(self, crop: StreamCrop) -> CachedCrop | None:
        """The frozen part's output for one crop, or None when no instance is large enough."""
        seg = crop.instances
        ids, counts = np.unique(seg, return_counts=True)
        keep = [
            int(i)
            for i, n in zip(ids, counts, strict=True)
            if i > 0 and n >= self.rounds.min_pixels
        ]
        if not keep:
            return None
        seg = np.where(np.isin(seg, keep), seg, 0).astype(np.int32)
        classes = {i: self._class_index[crop.classes[i]] for i in keep}
        image = torch.from_numpy(np.ascontiguousarray(crop.rgb)).permute(2, 0, 1).float()
        self.model.eval()
        return self._encode_crop(image, seg, classes, torch.float32)

    def train_step(self) -> float:
        """One optimizer step on fresh crops; returns its loss."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, self.step])
        drawn = self.stream_crops(self.step)
        self.last_sources = [c.source for c in drawn]
        batch = [c for c in (self.encode(d) for d in drawn) if c is not None]
        return self._optimise(batch, rng, self.crop_loss)

    # ------------------------------------------------------------------ the loss

    def _grounding(
        self, crop: CachedCrop, ids: list[int], classes: torch.Tensor, rng: np.random.Generator
    ) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor, bool]:
        cfg = self.config
        present = sorted(set(classes.tolist()))
        k = present[int(rng.integers(len(present)))]
        others = [c for c in range(len(self.vocabulary)) if c not in present]
        absent = bool(others) and rng.random() < cfg.grounding_absent
        if absent:
            k = others[int(rng.integers(len(others)))]
        phrases = self._phrases_of(self.vocabulary[k])
        tokens, padding, sentence = self.text.phrase(phrases[int(rng.integers(len(phrases)))])
        union = np.isin(crop.labels, [i for i in ids if crop.segment_classes[i] == k])
        target = soft_targets(torch.from_numpy(union)[None].to(self.device)).flatten(1)[0]
        return {"grounding_tokens": tokens, "grounding_padding": padding}, target, sentence, absent

    def crop_loss(
        self, features: ImageFeatures, crop: CachedCrop, rng: np.random.Generator
    ) -> torch.Tensor:
        """The multi-round loss of one crop (see the module docstring)."""
        cfg = self.config
        seg = crop.labels
        ids = sorted(crop.segment_classes)
        masks = torch.from_numpy(np.stack([seg == i for i in ids])).to(self.device)
        soft = soft_targets(masks).flatten(1)
        classes = torch.tensor([crop.segment_classes[i] for i in ids], device=self.device)
        kwargs: dict[str, Any] = {}
        tasks: list[str] = [t for t in ("object", "grounding") if t in cfg.tasks]
        if "object" in tasks:
            kwargs["class_embeddings"] = self.text.vocab()
        ground = None
        if "grounding" in tasks:
            text, target, sentence, absent = self._grounding(crop, ids, classes, rng)
            kwargs.update(text)
            ground = (target, sentence, absent)
        chosen: list[int] = []
        if "spatial" in cfg.tasks:
            chosen, pos, neg = prompted_objects(
                seg,
                ids,
                rng,
                max_prompts=cfg.max_prompts,
                kinds=cfg.prompt_kinds,
                neighbour_negative=cfg.neighbour_negative,
            )
            kwargs["visual_prompts"] = self._tokens(features, pos, neg)
            tasks.append("spatial")
        targets = soft[[ids.index(i) for i in chosen]] if chosen else None
        aux = torch.zeros((), device=self.device)
        if cfg.w_feature > 0:
            aux = cfg.w_feature * self.criterion.feature_loss(features, soft, rng)
        out = self.model.decode(features, tasks=tasks, return_aux=True, **kwargs)  # type: ignore[arg-type]
        total = self._supervise(out, soft, classes, ground, targets)
        if targets is None:
            return total + aux
        extra = int(rng.choice(len(self.rounds.extra_rounds), p=self._round_p()))
        prev = out.prev_mask
        for r in range(extra):
            assert prev is not None
            self.correct(prev, seg, chosen, pos, neg, rng)
            tokens = self._tokens(features, pos, neg)
            last = r == extra - 1
            with torch.set_grad_enabled(last and torch.is_grad_enabled()):
                out = self.model.decode(
                    features,
                    visual_prompts=tokens,
                    prev_mask=prev.detach(),
                    tasks=("spatial",),
                    return_aux=last,
                )
            if last:
                total = total + self.rounds.w_last * self._supervise(out, None, None, None, targets)
            prev = out.prev_mask
        return total + aux

    def _round_p(self) -> np.ndarray:
        p = np.asarray(self.rounds.extra_rounds, np.float64)
        return p / p.sum()

    def _tokens(self, features: ImageFeatures, pos: np.ndarray, neg: np.ndarray) -> Any:
        return self.model.encode_visual_prompts(
            features,
            torch.from_numpy(pos[None]).to(self.device),
            torch.from_numpy(neg[None]).to(self.device),
        )

    @torch.no_grad()
    def correct(
        self,
        logits: torch.Tensor,
        seg: np.ndarray,
        chosen: Sequence[int],
        pos: np.ndarray,
        neg: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        """Add each prompt's next click from the answer ``logits`` ``(1, P, h, w)``."""
        full = F.interpolate(logits.float(), size=seg.shape, mode="bilinear", align_corners=False)
        pred = (full[0] > 0).cpu().numpy()
        merged = 0.3 if rng.random() < self.rounds.merged_prob else None
        own_error_clicks(pred, seg, chosen, pos, neg, merged_fraction=merged)

    def _supervise(
        self,
        out: Any,
        soft: torch.Tensor | None,
        classes: torch.Tensor | None,
        ground: tuple[torch.Tensor, torch.Tensor, bool] | None,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        """Deep-supervised losses of one decoder output for the tasks it answered."""
        total = torch.zeros((), device=self.device)
        preds = (*out.aux, out)
        for pred in preds:
            if soft is not None and classes is not None and pred.pred_logits is not None:
                total = total + self.criterion.object_loss(pred, soft, classes)
            if ground is not None and pred.pred_gmasks is not None:
                total = total + self.criterion.grounding_loss(pred, *ground)
            if targets is not None and pred.pred_smasks is not None:
                final = pred is out
                total = total + self.criterion.spatial_loss(
                    pred, targets, out.spatial_logits if final else None
                )
        return total / len(preds)
