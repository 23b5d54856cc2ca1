"""What a training run is: :class:`TrainConfig`, the cached :class:`CachedCrop` and the
default trainable parts of each variant."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from napari_seem.model.lite_weights import LITE_FROZEN_PREFIXES
from napari_seem.model.minilm_text import MiniLMTextEncoder
from napari_seem.model.seem import ImageFeatures, SeemModel
from napari_seem.train.prompts_sim import PROMPT_KINDS, PromptKind

__all__ = [
    "TASKS",
    "CachedCrop",
    "TrainConfig",
    "decoder_keys",
    "default_trainable",
    "fine_tune_trainable",
]

#: The query groups a run can train.
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
    return decoder_keys(model.state_dict())


def decoder_keys(keys: Iterable[str]) -> tuple[str, ...]:
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
    return decoder_keys(default_trainable(model))
