"""The SEEM trainer: cached frozen features, simulated prompts, Hungarian losses, AdamW.

One training step takes ``batch_size`` cached crops and, for each, decodes all three query
groups at once (they are independent inside the decoder):

- **object queries** against the data's class vocabulary: Hungarian matching to every
  object (instances; one segment per class for ``semantic`` data), class cross-entropy with
  SEEM's temperature (``exp(logit_scale) * cos``), mask BCE and dice;
- **grounding queries** with the text of one class present in the crop (the class name or
  a synonym): the best-matching query learns the union of that class's objects, and the
  similarity of the queries' caption embeddings to the sentence learns to rank it first;
- **spatial queries** for 1..``max_prompts`` objects prompted by simulated clicks,
  scribbles, polygons, boxes (centre click) and masks; with probability
  ``multi_round_prob`` 1-2 earlier rounds run without gradient, each adding the official
  corrective click and handing its mask to the memory tokens (``prev_mask``). The loss is
  that of the best of the prompt's ``Q`` candidates plus a cross-entropy teaching the
  pooled-embedding rule to select it.

Losses are summed over the final and all earlier decoder predictions (deep supervision).
Frozen parts (backbone, and the pixel decoder when it is frozen) run once per crop when the
cache is built; only the trainable parts run per step, which keeps CPU training practical.

Checkpoints (``last.pt``) hold the trainable weights, the optimizer, the step and the RNG
state; each step draws its randomness from ``numpy.random.default_rng([seed, step])``, so
a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_seem.model.build import resolve_device
from napari_seem.model.decoder import DecoderPrediction
from napari_seem.model.lite_weights import LITE_FROZEN_PREFIXES
from napari_seem.model.minilm_text import MINILM_TEMPLATES, MiniLMTextEncoder
from napari_seem.model.seem import ImageFeatures, SeemModel
from napari_seem.model.text_encoder import BACKGROUND_CLASS, LanguageEncoder
from napari_seem.model.transforms import make_frame, preprocess
from napari_seem.train.data import LabelledImage, TrainingDataError
from napari_seem.train.losses import class_loss, dice_loss, mask_bce_loss, soft_targets
from napari_seem.train.matching import hungarian_match
from napari_seem.train.prompts_sim import (
    PROMPT_KINDS,
    PromptKind,
    first_click,
    next_click,
    simulate_prompt,
    stamp_click,
)

__all__ = [
    "TASKS",
    "CachedCrop",
    "TrainConfig",
    "Trainer",
    "default_trainable",
    "export_checkpoint",
    "fine_tune_trainable",
]

TASKS = ("object", "grounding", "spatial")
_OFFICIAL_DECODER = ("sem_seg_head.predictor.",)
_OFFICIAL_FROZEN = ("sem_seg_head.predictor.lang_encoder.",)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Hyper-parameters of a training run (defaults: fine-tuning on a few images).

    Attributes:
        steps: optimizer steps.
        batch_size: crops per step.
        crop: side of the square training crops, pixels of the resized image.
        crops_per_image: augmented crops cached per training image (more: more variety,
            more memory and caching time).
        short_side: resize every image so its short side is this before cropping, the way
            the predictor resizes (``"auto"``: the variant's default; None: native size).
        scale_jitter: random extra scale factor range per crop.
        lr, weight_decay, warmup: AdamW with linear warm-up then cosine decay to 10 %.
        grad_clip: max gradient norm.
        tasks: which of ``"object"``, ``"grounding"``, ``"spatial"`` to train.
        max_prompts: spatial prompts per crop (1..max, at most the objects present).
        multi_round_prob: probability of 1-2 simulated earlier rounds with memory.
        prompt_kinds: simulated visual prompt kinds.
        synonyms: extra phrases per class name for grounding (the name itself is always used).
        loss weights: ``w_class``, ``w_mask``, ``w_dice`` (SEEM: 2, 5, 5), ``no_object_weight``.
        grounding_absent: probability that the grounding phrase names a class absent from
            the crop (target: an empty mask), so an answer can be "nothing here".
        neighbour_negative: probability that a spatial prompt also gets a negative click
            on a touching or nearby object (teaches "not that one").
        w_feature: weight of the auxiliary pixel-embedding loss (0: off; not in SEEM): the
            cosine similarity of ``mask_features`` to the feature at a point inside an
            object must segment that object. It teaches the pixel decoder instance-aware
            embeddings directly, which a short from-scratch run cannot get through the
            decoder alone (see :meth:`Trainer._feature_loss`).
        trainable: state-dict prefixes to train; None = the variant's default (seem-lite:
            everything but its packaged backbone and sentence encoder; official variants:
            the SEEM decoder without its text encoder).
        seed: seeds the crop cache and every step.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        num_threads: torch CPU threads (None: leave as is).
        checkpoint_every: steps between ``last.pt`` checkpoints (0: only at the end).
        cache_dtype: dtype of cached features (``"float16"`` halves memory).
    """

    steps: int = 300
    batch_size: int = 2
    crop: int = 256
    crops_per_image: int = 16
    short_side: int | str | None = "auto"
    scale_jitter: tuple[float, float] = (0.85, 1.2)
    lr: float = 1e-4
    weight_decay: float = 0.05
    warmup: int = 20
    grad_clip: float = 1.0
    tasks: tuple[str, ...] = TASKS
    max_prompts: int = 4
    multi_round_prob: float = 0.5
    prompt_kinds: tuple[PromptKind, ...] = PROMPT_KINDS
    synonyms: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    w_class: float = 2.0
    w_mask: float = 5.0
    w_dice: float = 5.0
    no_object_weight: float = 0.1
    w_feature: float = 0.0
    grounding_absent: float = 0.0
    neighbour_negative: float = 0.0
    trainable: tuple[str, ...] | None = None
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    checkpoint_every: int = 100
    cache_dtype: str = "float16"

    def __post_init__(self) -> None:
        if unknown := set(self.tasks) - set(TASKS):
            raise ValueError(f"unknown tasks {sorted(unknown)}; choose from {TASKS}")
        if not self.tasks:
            raise ValueError("tasks is empty: nothing to train")
        if self.crop % 32:
            raise ValueError(f"crop must be a multiple of 32, got {self.crop}")
        if self.steps < 0 or self.batch_size < 1 or self.crops_per_image < 1:
            raise ValueError("steps >= 0, batch_size >= 1 and crops_per_image >= 1 are required")
        if unknown_kinds := set(self.prompt_kinds) - set(PROMPT_KINDS):
            raise ValueError(f"unknown prompt kinds {sorted(unknown_kinds)}")


@dataclass
class CachedCrop:
    """One augmented training crop with the frozen part's output.

    Attributes:
        frozen: the frozen part's output for this crop: backbone maps ``{"res2".."res5"}``
            ``(1, C_i, S/s_i, S/s_i)`` or, with a frozen pixel decoder, ``ImageFeatures``.
        labels: ``(S, S)`` int32 segment ids in the padded crop frame (0 = none).
        segment_classes: ``{segment id: class index}`` into the trainer's vocabulary.
    """

    frozen: dict[str, torch.Tensor] | ImageFeatures
    labels: np.ndarray
    segment_classes: dict[int, int]


def default_trainable(model: SeemModel) -> tuple[str, ...]:
    """Trainable state-dict keys' prefixes of the variant (see ``TrainConfig.trainable``)."""
    if isinstance(model.text_encoder, MiniLMTextEncoder):
        return tuple(k for k in model.state_dict() if not k.startswith(LITE_FROZEN_PREFIXES))
    return _decoder_keys(model.state_dict())


def _decoder_keys(keys: Iterable[str]) -> tuple[str, ...]:
    """The SEEM decoder's keys among ``keys``, without its text encoder."""
    return tuple(
        k for k in keys if k.startswith(_OFFICIAL_DECODER) and not k.startswith(_OFFICIAL_FROZEN)
    )


def fine_tune_trainable(model: SeemModel) -> tuple[str, ...]:
    """What :func:`napari_seem.train.fine_tune` trains by default: the SEEM decoder (queries,
    attention, heads, visual sampler) without the text encoder. The pixel decoder stays as
    trained, so its output is cached once per crop and a few labelled objects cannot
    re-shape the image features every other prompt relies on (measured on a held-out
    BBBC007 image, 30 labelled objects, 150 steps: decoder-only NoC@85 16.2 -> 12.0 and
    1-click IoU 0.67 -> 0.65; decoder + pixel decoder NoC 16.2 -> 15.3, IoU 0.67 -> 0.50)."""
    return _decoder_keys(default_trainable(model))


class _TextCache:
    """Frozen text features of the vocabulary and of the grounding phrases.

    For MiniLM the frozen sentence-encoder outputs are cached and the trainable projection
    runs every step; the CLIP encoder is frozen entirely, so its final embeddings are cached.
    """

    def __init__(self, model: SeemModel, vocabulary: list[str], phrases: list[str]) -> None:
        self.encoder = model.text_encoder
        self.vocabulary = vocabulary
        self.tokenizer: Any
        if isinstance(self.encoder, MiniLMTextEncoder):
            self.tokenizer = self.encoder.bundled_tokenizer()
            prompts = [
                t.format(n) for n in [*vocabulary, BACKGROUND_CLASS] for t in MINILM_TEMPLATES
            ]
            self._vocab_pooled = self.encoder.encode_frozen(self.tokenizer(prompts)).pooled
            self._phrases = {p: self.encoder.encode_frozen(self.tokenizer([p])) for p in phrases}
        else:
            from napari_seem.model.tokenizer import load_clip_tokenizer

            assert isinstance(self.encoder, LanguageEncoder)
            self.tokenizer = load_clip_tokenizer()
            with torch.no_grad():
                self._vocab = self.encoder.class_vocabulary(vocabulary, self.tokenizer)
                self._official = {
                    p: (
                        *self.encoder.grounding_tokens([p], self.tokenizer),
                        self.encoder.sentence_embeddings([p], self.tokenizer)[0],
                    )
                    for p in phrases
                }

    def vocab(self) -> torch.Tensor:
        """``(K+1, D)`` unit class embeddings (background last)."""
        if isinstance(self.encoder, MiniLMTextEncoder):
            return self.encoder.vocabulary_from_frozen(self._vocab_pooled, len(MINILM_TEMPLATES))
        return self._vocab

    def phrase(self, text: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Grounding ``tokens (T, 1, D)``, ``padding (1, T)`` and unit ``sentence (D,)``."""
        if isinstance(self.encoder, MiniLMTextEncoder):
            frozen = self._phrases[text]
            tokens, padding = self.encoder.grounding_from_frozen(frozen)
            sentence = self.encoder.project(frozen.pooled[0])
            return tokens, padding, sentence / sentence.norm().clamp(min=1e-7)
        return self._official[text]


class Trainer:
    """Train (or fine-tune) a SEEM model on labelled images.

    Args:
        model: the model to train, its weights already loaded (it is modified in place).
        data: validated training images.
        config: hyper-parameters.
        out_dir: where ``last.pt`` checkpoints go (None: no checkpoints).
        progress: show a tqdm bar with the running loss.
    """

    def __init__(
        self,
        model: SeemModel,
        data: Sequence[LabelledImage],
        config: TrainConfig,
        *,
        out_dir: str | Path | None = None,
        progress: bool = True,
    ) -> None:
        if not data:
            raise TrainingDataError("no training images")
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.config = config
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        self.data = list(data)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.step = 0
        self.history: list[float] = []
        self.vocabulary = list(dict.fromkeys(c for d in self.data for c in d.class_names))
        self._class_index = {c: i for i, c in enumerate(self.vocabulary)}

        prefixes = config.trainable or default_trainable(model)
        self.trainable_keys = [k for k in model.state_dict() if k.startswith(tuple(prefixes))]
        named = dict(model.named_parameters())
        for p in model.parameters():
            p.requires_grad_(False)
        self.params = {k: named[k] for k in self.trainable_keys if k in named}
        if not self.params:
            raise ValueError(f"no parameters match the trainable prefixes {prefixes[:4]}")
        for p in self.params.values():
            p.requires_grad_(True)
        pixel_trainable = any(k.startswith("sem_seg_head.pixel_decoder.") for k in self.params)
        backbone_trainable = any(k.startswith("backbone.") for k in self.params)
        if backbone_trainable:
            raise ValueError("training the backbone is not supported: features are cached")
        self._cache_backbone = pixel_trainable
        decay = [p for k, p in self.params.items() if p.ndim >= 2 and "embed" not in k]
        no_decay = [p for k, p in self.params.items() if not (p.ndim >= 2 and "embed" not in k)]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": config.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=config.lr,
        )
        phrases = [p for c in self.vocabulary for p in self._phrases_of(c)]
        self.text = _TextCache(model, self.vocabulary, phrases)
        self.crops: list[CachedCrop] = []

    # ------------------------------------------------------------------ data

    def _phrases_of(self, name: str) -> list[str]:
        return list(dict.fromkeys([name, *self.config.synonyms.get(name, ())]))

    def _short_side(self) -> int | None:
        s = self.config.short_side
        if s == "auto":
            from napari_seem.model.build import get_config

            try:
                return get_config(self.model.name).short_side
            except ValueError:
                return None
        return None if s is None else int(s)

    @torch.no_grad()
    def build_cache(self) -> None:
        """Cache ``crops_per_image`` augmented crops of every image (frozen parts run once)."""
        from napari_seem.core.images import as_rgb_uint8

        cfg = self.config
        rng = np.random.default_rng([cfg.seed, 2**31])
        short = self._short_side()
        dtype = getattr(torch, cfg.cache_dtype)
        self.model.eval()
        crops: list[CachedCrop] = []
        for item in self.data:
            rgb = torch.from_numpy(as_rgb_uint8(item.image)).permute(2, 0, 1).float()
            labels = torch.from_numpy(item.labels)
            h, w = item.labels.shape
            native = float(getattr(self.model, "native_scale", None) or 1.0)
            base = item.scale or ((short / min(h, w)) if short else native)
            made = 0
            for _ in range(cfg.crops_per_image * 4):
                if made == cfg.crops_per_image:
                    break
                crop = self._augment(rgb, labels, base, item, rng)
                if crop is None:
                    continue
                image, seg, classes = crop
                crops.append(self._encode_crop(image, seg, classes, dtype))
                made += 1
        if not crops:
            raise TrainingDataError("no training crop contains an object; are the labels tiny?")
        self.crops = crops

    def _augment(
        self,
        rgb: torch.Tensor,
        labels: torch.Tensor,
        base: float,
        item: LabelledImage,
        rng: np.random.Generator,
    ) -> tuple[torch.Tensor, np.ndarray, dict[int, int]] | None:
        """One random crop ``(3, s, s)`` float 0..255, its segment ids and their classes."""
        cfg = self.config
        scale = base * float(rng.uniform(*cfg.scale_jitter))
        h, w = labels.shape
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        img = F.interpolate(rgb[None], (nh, nw), mode="bilinear", antialias=True)[0]
        img = img.round().clamp(0, 255)
        lab = F.interpolate(labels[None, None].float(), (nh, nw), mode="nearest")[0, 0].long()
        s = cfg.crop
        r0 = int(rng.integers(0, max(nh - s, 0) + 1))
        c0 = int(rng.integers(0, max(nw - s, 0) + 1))
        img, lab = img[:, r0 : r0 + s, c0 : c0 + s], lab[r0 : r0 + s, c0 : c0 + s]
        if rng.random() < 0.5:
            img, lab = img.flip(-1), lab.flip(-1)
        if rng.random() < 0.5:
            img, lab = img.flip(-2), lab.flip(-2)
        if img.shape[-1] == img.shape[-2] and rng.random() < 0.5:
            img, lab = img.transpose(-1, -2), lab.transpose(-1, -2)
        gamma = float(np.exp(rng.uniform(-0.3, 0.3)))
        img = (255.0 * (img / 255.0) ** gamma * float(rng.uniform(0.8, 1.2))).clamp(0, 255).round()
        seg = lab.numpy().astype(np.int32)
        ids, counts = np.unique(seg, return_counts=True)
        keep = [int(i) for i, n in zip(ids, counts, strict=True) if i > 0 and n >= 12]
        if not keep:
            return None
        seg = np.where(np.isin(seg, keep), seg, 0)
        classes = {i: self._class_index[item.classes[i]] for i in keep}
        return img, seg, classes

    def _encode_crop(
        self, image: torch.Tensor, seg: np.ndarray, classes: dict[int, int], dtype: torch.dtype
    ) -> CachedCrop:
        s = self.config.crop
        h, w = seg.shape
        frame = make_frame((h, w), size_divisibility=32)
        x = preprocess(
            image[None].to(self.device),
            frame,
            self.model.pixel_mean.flatten(),
            self.model.pixel_std.flatten(),
        )
        x = F.pad(x, (0, s - x.shape[-1], 0, s - x.shape[-2]))
        padded = np.zeros((s, s), np.int32)
        padded[:h, :w] = seg
        feats = self.model.backbone(x)
        frozen: dict[str, torch.Tensor] | ImageFeatures
        if self._cache_backbone:
            frozen = {k: v.to(dtype) for k, v in feats.items()}
        else:
            out = self.model.sem_seg_head.pixel_decoder.forward_features(feats)
            ms = out.multi_scale_features
            frozen = ImageFeatures(out.mask_features, (ms[0], ms[1], ms[2]), (s, s)).to(
                self.device, dtype
            )
        return CachedCrop(frozen, padded, classes)

    def _features(self, crops: list[CachedCrop]) -> ImageFeatures:
        s = self.config.crop
        param_dtype = next(iter(self.params.values())).dtype
        first = crops[0].frozen
        if isinstance(first, ImageFeatures):
            fs = [c.frozen for c in crops]
            assert all(isinstance(f, ImageFeatures) for f in fs)
            mf = torch.cat([f.mask_features for f in fs])  # type: ignore[union-attr]
            ms = tuple(
                torch.cat([f.multi_scale_features[i] for f in fs])  # type: ignore[union-attr]
                for i in range(3)
            )
            return ImageFeatures(mf, (ms[0], ms[1], ms[2]), (s, s)).to(self.device, param_dtype)
        feats = {
            k: torch.cat([c.frozen[k] for c in crops]).to(param_dtype)  # type: ignore[index]
            for k in first
        }
        out = self.model.sem_seg_head.pixel_decoder.forward_features(feats)
        ms = out.multi_scale_features
        return ImageFeatures(out.mask_features, (ms[0], ms[1], ms[2]), (s, s))

    # ------------------------------------------------------------------ losses

    def _mask_losses(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``(T,)`` weighted BCE + dice of matched ``(T, N)`` logits and targets."""
        cfg = self.config
        return cfg.w_mask * mask_bce_loss(logits, targets) + cfg.w_dice * dice_loss(logits, targets)

    def _object_loss(
        self, pred: DecoderPrediction, targets: torch.Tensor, classes: torch.Tensor
    ) -> torch.Tensor:
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
            loss = loss + self._mask_losses(masks[q_idx], targets[t_idx]).mean()
        return loss

    def _grounding_loss(
        self,
        pred: DecoderPrediction,
        target: torch.Tensor,
        sentence: torch.Tensor,
        absent: bool = False,
    ) -> torch.Tensor:
        assert pred.pred_gmasks is not None and pred.pred_gtexts is not None
        masks = pred.pred_gmasks[0].flatten(1)  # (Q, N)
        scale = self.model.text_encoder.logit_scale.exp().clamp(max=100.0)
        captions = pred.pred_gtexts[0]
        sim = scale * F.normalize(captions, dim=-1) @ sentence  # (Q,)
        if absent:
            # the phrase names nothing in the crop: the query it picks must answer empty
            best = int(sim.detach().argmax())
            return self._mask_losses(masks[best : best + 1], target[None])[0]
        with torch.no_grad():
            cost = self._mask_losses(masks, target[None].expand_as(masks))
            cost = cost - self.config.w_class * sim.softmax(0)
            best = int(cost.argmin())
        loss = self._mask_losses(masks[best : best + 1], target[None])[0]
        pick = torch.tensor([best], device=sim.device)
        return loss + self.config.w_class * F.cross_entropy(sim[None], pick)

    def _spatial_loss(
        self,
        pred: DecoderPrediction,
        targets: torch.Tensor,
        spatial_logits: torch.Tensor | None,
    ) -> torch.Tensor:
        assert pred.pred_smasks is not None
        q = self.model.decoder.config.queries_per_prompt
        num_prompts = targets.shape[0]
        masks = pred.pred_smasks[0].flatten(1).view(num_prompts, q, -1)  # (P, Q, N)
        per = self._mask_losses(
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

    # ------------------------------------------------------------------ step

    def _prompts(
        self, seg: np.ndarray, chosen: list[int], rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        kinds = self.config.prompt_kinds
        pos = np.zeros((len(chosen), *seg.shape), bool)
        neg = np.zeros_like(pos)
        for p, i in enumerate(chosen):
            target = seg == i
            kind = kinds[int(rng.integers(len(kinds)))]
            pos[p] = simulate_prompt(target, kind, rng)
            outside = np.nonzero(~target)
            if rng.random() < 0.15 and len(outside[0]):  # a negative click outside
                j = int(rng.integers(len(outside[0])))
                stamp_click(neg[p], int(outside[0][j]), int(outside[1][j]))
                neg[p] &= ~target
            if self.config.neighbour_negative and rng.random() < self.config.neighbour_negative:
                self._neighbour_click(seg, target, neg[p], rng)
        return pos, neg

    @staticmethod
    def _neighbour_click(
        seg: np.ndarray, target: np.ndarray, neg: np.ndarray, rng: np.random.Generator
    ) -> None:
        """A negative click (in place in ``neg``) at the deepest point of a random object
        within 6 px of ``target``: the correction a user makes when two touching objects
        come back as one."""
        from scipy import ndimage

        ring = ndimage.binary_dilation(target, iterations=6) & ~target
        near = np.unique(seg[ring])
        near = near[near > 0]
        if not len(near):
            return
        click = first_click(seg == near[int(rng.integers(len(near)))])  # its deepest point
        stamp_click(neg, click.row, click.col)
        neg &= ~target

    def _loss_one(
        self, features: ImageFeatures, crop: CachedCrop, rng: np.random.Generator
    ) -> torch.Tensor:
        cfg = self.config
        seg = crop.labels
        ids = sorted(crop.segment_classes)
        masks = torch.from_numpy(np.stack([seg == i for i in ids])).to(self.device)
        soft = soft_targets(masks).flatten(1)  # (T, N)
        classes = torch.tensor([crop.segment_classes[i] for i in ids], device=self.device)
        kwargs: dict[str, Any] = {}
        tasks: list[str] = []
        if "object" in cfg.tasks:
            kwargs["class_embeddings"] = self.text.vocab()
            tasks.append("object")
        ground_target = None
        sentence = None
        absent = False
        if "grounding" in cfg.tasks:
            present = sorted(set(classes.tolist()))
            k = present[int(rng.integers(len(present)))]
            others = [c for c in range(len(self.vocabulary)) if c not in present]
            if others and rng.random() < cfg.grounding_absent:
                k, absent = others[int(rng.integers(len(others)))], True
            phrases = self._phrases_of(self.vocabulary[k])
            phrase = phrases[int(rng.integers(len(phrases)))]
            tokens, padding, sentence = self.text.phrase(phrase)
            kwargs.update(grounding_tokens=tokens, grounding_padding=padding)
            union = torch.from_numpy(np.isin(seg, [i for i in ids if crop.segment_classes[i] == k]))
            ground_target = soft_targets(union[None].to(self.device)).flatten(1)[0]
            tasks.append("grounding")
        chosen_targets = None
        if "spatial" in cfg.tasks:
            n = int(rng.integers(1, min(cfg.max_prompts, len(ids)) + 1))
            chosen = [ids[int(j)] for j in rng.choice(len(ids), n, replace=False)]
            pos, neg = self._prompts(seg, chosen, rng)
            prev = None
            if rng.random() < cfg.multi_round_prob:
                for _ in range(int(rng.integers(1, 3))):
                    prev = self._earlier_round(features, seg, chosen, pos, neg, prev)
            kwargs["visual_prompts"] = self.model.encode_visual_prompts(
                features,
                torch.from_numpy(pos[None]).to(self.device),
                torch.from_numpy(neg[None]).to(self.device),
            )
            kwargs["prev_mask"] = prev
            chosen_targets = soft[[ids.index(i) for i in chosen]]
            tasks.append("spatial")
        aux = torch.zeros((), device=self.device)
        if cfg.w_feature > 0:
            aux = cfg.w_feature * self._feature_loss(features, soft, rng)
        out = self.model.decode(features, tasks=tasks, return_aux=True, **kwargs)  # type: ignore[arg-type]
        total = torch.zeros((), device=self.device)
        for pred in (*out.aux, out):
            final = pred is out
            if "object" in tasks:
                total = total + self._object_loss(pred, soft, classes)
            if ground_target is not None and sentence is not None:
                total = total + self._grounding_loss(pred, ground_target, sentence, absent)
            if chosen_targets is not None:
                total = total + self._spatial_loss(
                    pred, chosen_targets, out.spatial_logits if final else None
                )
        return total / (len(out.aux) + 1) + aux

    _FEATURE_ANCHORS = 24
    _FEATURE_SCALE = 15.0
    _FEATURE_MARGIN = 0.5

    def _feature_loss(
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
        return self._mask_losses(logits, soft[torch.as_tensor(order)]).mean()

    @torch.no_grad()
    def _earlier_round(
        self,
        features: ImageFeatures,
        seg: np.ndarray,
        chosen: list[int],
        pos: np.ndarray,
        neg: np.ndarray,
        prev: torch.Tensor | None,
    ) -> torch.Tensor:
        """Decode the prompts so far, add the protocol's corrective click per object (in
        place in ``pos`` / ``neg``) and return the answer's mask logits as memory."""
        tokens = self.model.encode_visual_prompts(
            features,
            torch.from_numpy(pos[None]).to(self.device),
            torch.from_numpy(neg[None]).to(self.device),
        )
        out = self.model.decode(
            features, visual_prompts=tokens, prev_mask=prev, tasks=("spatial",), return_aux=False
        )
        assert out.prev_mask is not None
        logits = out.prev_mask  # (1, P, h, w)
        full = F.interpolate(logits.float(), size=seg.shape, mode="bilinear", align_corners=False)[
            0
        ]
        pred = (full > 0).cpu().numpy()
        for p, i in enumerate(chosen):
            click = next_click(pred[p], seg == i)
            if click is not None:
                stamp_click(pos[p] if click.positive else neg[p], click.row, click.col)
        return logits.detach()

    @torch.no_grad()
    def eval_loss(self, seed: int = 12345) -> float:
        """Mean training loss over every cached crop with fixed randomness (no update):
        a deterministic yardstick for before/after comparisons on any data."""
        if not self.crops:
            self.build_cache()
        self.model.eval()
        total = 0.0
        for n, crop in enumerate(self.crops):
            rng = np.random.default_rng([seed, n])
            features = self._features([crop])
            total += float(self._loss_one(features, crop, rng))
        return total / len(self.crops)

    def _lr(self, step: int) -> float:
        cfg = self.config
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))

    def train_step(self) -> float:
        """One optimizer step; returns its loss."""
        if not self.crops:
            self.build_cache()
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, self.step])
        picks = rng.integers(len(self.crops), size=cfg.batch_size)
        batch = [self.crops[int(i)] for i in picks]
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr(self.step)
        features = self._features(batch)
        loss = torch.zeros((), device=self.device)
        for b, crop in enumerate(batch):
            loss = loss + self._loss_one(features.select(b), crop, rng)
        loss = loss / len(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(self.params.values()), cfg.grad_clip)
        self.optimizer.step()
        self.model.eval()
        self.step += 1
        value = float(loss.detach())
        self.history.append(value)
        return value

    def train(
        self,
        steps: int | None = None,
        *,
        callback: Callable[[int, float], bool | None] | None = None,
    ) -> list[float]:
        """Train until ``steps`` (default ``config.steps``) total steps are done.

        ``callback(step, loss)`` runs after every step; returning True stops early (a
        checkpoint is written). Returns the losses of the steps run by this call.
        """
        from tqdm import tqdm

        total = self.config.steps if steps is None else steps
        if not self.crops:
            self.build_cache()
        losses: list[float] = []
        bar = tqdm(
            total=total, initial=self.step, desc="train", disable=not self.progress, unit="step"
        )
        start = time.perf_counter()
        try:
            while self.step < total:
                value = self.train_step()
                losses.append(value)
                recent = self.history[-20:]
                bar.set_postfix(loss=f"{sum(recent) / len(recent):.3f}")
                bar.update(1)
                if not self.progress and self.step % 25 == 0:
                    print(
                        f"step {self.step}/{total} loss {sum(recent) / len(recent):.3f} "
                        f"({time.perf_counter() - start:.0f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
                every = self.config.checkpoint_every
                if self.out_dir is not None and every and self.step % every == 0:
                    self.save_checkpoint(self.out_dir / "last.pt")
                if callback is not None and callback(self.step, value):
                    break
        finally:
            bar.close()
            if self.out_dir is not None:
                self.save_checkpoint(self.out_dir / "last.pt")
        self.elapsed = time.perf_counter() - start
        return losses

    # ------------------------------------------------------------------ checkpoints

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The trainable tensors (parameters and buffers under the trainable keys), on CPU."""
        state = self.model.state_dict()
        return {k: state[k].detach().cpu().clone() for k in self.trainable_keys}

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write model (trainable part), optimizer, step and RNG state (atomically)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "variant": self.model.name,
            "trained": self.trained_state(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "history": list(self.history),
            "config": asdict(self.config),
            "torch_rng": torch.get_rng_state(),
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Resume from :meth:`save_checkpoint` output (same model variant and data)."""
        payload = torch.load(str(path), map_location="cpu", weights_only=False)
        if payload.get("variant") != self.model.name:
            raise ValueError(
                f"{path} was written for {payload.get('variant')!r}, not {self.model.name!r}"
            )
        missing = set(self.trainable_keys) - set(payload["trained"])
        if missing:
            raise ValueError(f"{path} lacks trainable weights: {sorted(missing)[:5]}")
        self.model.load_state_dict(payload["trained"], strict=False)
        self.optimizer.load_state_dict(payload["optimizer"])
        self.step = int(payload["step"])
        self.history = list(payload["history"])
        torch.set_rng_state(payload["torch_rng"])

    def save_cache(self, path: str | Path) -> Path:
        """Write the cached crops (so a resumed run skips the frozen forward passes)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save({"signature": self._cache_signature(), "crops": self.crops}, tmp)
        os.replace(tmp, path)
        return path

    def load_cache(self, path: str | Path) -> bool:
        """Use crops written by :meth:`save_cache` if they were made with the same settings
        and data; returns whether they were used."""
        path = Path(path)
        if not path.exists():
            return False
        payload = torch.load(str(path), map_location=self.device, weights_only=False)
        if payload.get("signature") != self._cache_signature():
            return False
        self.crops = payload["crops"]
        return True

    def _cache_signature(self) -> str:
        cfg = self.config
        parts = [
            self.model.name,
            str(cfg.seed),
            str(cfg.crop),
            str(cfg.crops_per_image),
            str(cfg.short_side),
            str(cfg.scale_jitter),
            cfg.cache_dtype,
            str(self._cache_backbone),
            *(f"{d.name}:{d.labels.shape}:{int(d.labels.sum())}" for d in self.data),
        ]
        return "|".join(parts)

    def export(self, path: str | Path, *, half: bool = False) -> Path:
        """Write the trained weights as safetensors (what ``build_seem(checkpoint=)`` or
        :func:`napari_seem.train.load_finetuned` reads)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # every part the variant's weight file holds, also those this run kept frozen (a
        # decoder-only fine-tune must still load as a complete seem-lite file)
        full = self.model.state_dict()
        keys = dict.fromkeys([*default_trainable(self.model), *self.trainable_keys])
        state = {k: full[k].detach().cpu().clone() for k in keys}
        if half:
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        meta = {
            "format": "napari-seem-trained-parts",
            "variant": self.model.name,
            "steps": str(self.step),
            "vocabulary": ",".join(self.vocabulary),
        }
        save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=meta)
        return path


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, half: bool = True) -> Path:
    """Turn a trainer ``last.pt`` into the safetensors weight file :meth:`Trainer.export`
    writes (e.g. to ship the weights of a run that was stopped early)."""
    from safetensors.torch import save_file

    payload = torch.load(str(checkpoint), map_location="cpu", weights_only=False)
    state = payload["trained"]
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    meta = {
        "format": "napari-seem-trained-parts",
        "variant": str(payload["variant"]),
        "steps": str(payload["step"]),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out), metadata=meta)
    return out
