"""The whole SEEM model: backbone -> pixel decoder -> SEEM decoder, plus the text encoder.

This module only wires parts together. The attribute names reproduce the official
state-dict layout (``backbone.*``, ``sem_seg_head.pixel_decoder.*``,
``sem_seg_head.predictor.*`` with ``sem_seg_head.predictor.lang_encoder.*`` inside, and the
``dilation_kernel`` buffer), so an official checkpoint loads with an identity key map.

The model is stateless: it encodes images and decodes prompts; caches and round history
belong to :class:`napari_seem.predict.predictor.SeemPredictor`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from napari_seem.model.checkpoint import LoadReport
from napari_seem.model.decoder import DecoderOutput, ImageMemory, SeemDecoder, Task
from napari_seem.model.minilm_text import MiniLMTextEncoder
from napari_seem.model.pixel_decoder_fpn import PixelDecoderOutput
from napari_seem.model.prompt_encoder import VisualPromptTokens
from napari_seem.model.text_encoder import LanguageEncoder

__all__ = ["ImageFeatures", "SeemModel", "SemSegHead"]


@dataclass(frozen=True)
class ImageFeatures:
    """Encoded images: everything the decoder needs, nothing else (this is what gets cached).

    All maps are in the padded model frame of their batch.

    Attributes:
        mask_features: ``(B, D, H_pad/4, W_pad/4)`` per-pixel embeddings for the mask head.
        multi_scale_features: three ``(B, D, h_i, w_i)`` maps at strides 32, 16, 8.
        padded_hw: ``(H_pad, W_pad)`` of the model input.
    """

    mask_features: torch.Tensor
    multi_scale_features: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    padded_hw: tuple[int, int]

    @property
    def batch_size(self) -> int:
        return int(self.mask_features.shape[0])

    @property
    def nbytes(self) -> int:
        tensors = (self.mask_features, *self.multi_scale_features)
        return sum(t.numel() * t.element_size() for t in tensors)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> ImageFeatures:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype or t.dtype)

        ms = self.multi_scale_features
        return ImageFeatures(
            move(self.mask_features), (move(ms[0]), move(ms[1]), move(ms[2])), self.padded_hw
        )

    def select(self, index: int) -> ImageFeatures:
        """Batch element ``index`` as a batch of one."""
        s = slice(index, index + 1)
        ms = self.multi_scale_features
        return ImageFeatures(self.mask_features[s], (ms[0][s], ms[1][s], ms[2][s]), self.padded_hw)


class PixelDecoder(Protocol):
    """What the model needs of a pixel decoder (FPN or deformable)."""

    def forward_features(self, features: Mapping[str, torch.Tensor]) -> PixelDecoderOutput: ...


class SemSegHead(nn.Module):
    """Container reproducing the official ``sem_seg_head`` prefix."""

    pixel_decoder: PixelDecoder
    predictor: SeemDecoder

    def __init__(self, pixel_decoder: nn.Module, predictor: SeemDecoder) -> None:
        super().__init__()
        self.add_module("pixel_decoder", pixel_decoder)
        self.predictor = predictor


class SeemModel(nn.Module):
    """SEEM v1 with injected parts.

    Args:
        backbone: image -> ``{"res2".."res5"}`` feature maps.
        pixel_decoder: module with ``forward_features(features) -> PixelDecoderOutput``.
        decoder: the SEEM decoder; ``text_encoder`` is registered inside it as
            ``lang_encoder`` (official key layout).
        text_encoder: the language encoder.
        pixel_mean, pixel_std: per-channel RGB normalisation on the 0..255 scale.
        name: variant name, for messages and cache signatures.
        size_divisibility: the padded input is a multiple of this (Focal: 32).
        fixed_size: pad to exactly this square size instead (SAM ViT: its image size).
        prompt_window: decode each visual prompt inside a window of this many model pixels
            around it (the crop size the model was trained on; None: the whole image).
        native_scale: resize factor for "native resolution" encoding (tiles of large
            images): the scale the model was trained at relative to typical pixels.
    """

    dilation_kernel: torch.Tensor
    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(
        self,
        *,
        name: str = "seem",
        backbone: nn.Module,
        pixel_decoder: nn.Module,
        decoder: SeemDecoder,
        text_encoder: LanguageEncoder | MiniLMTextEncoder,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        size_divisibility: int = 32,
        fixed_size: int | None = None,
        prompt_window: int | None = None,
        native_scale: float | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        # how the current weights were loaded (None: random initialisation)
        self.load_report: LoadReport | None = None
        # first in the official state dict; all ones, used to dilate simulated clicks
        self.register_buffer("dilation_kernel", torch.ones(1, 1, 3, 3))
        self.backbone = backbone
        decoder.lang_encoder = text_encoder
        self.sem_seg_head = SemSegHead(pixel_decoder, decoder)
        self.register_buffer(
            "pixel_mean", torch.tensor(list(pixel_mean)).view(3, 1, 1), persistent=False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(list(pixel_std)).view(3, 1, 1), persistent=False
        )
        self.size_divisibility = size_divisibility
        self.fixed_size = fixed_size
        self.prompt_window = prompt_window
        self.native_scale = native_scale

    @property
    def decoder(self) -> SeemDecoder:
        return self.sem_seg_head.predictor

    @property
    def text_encoder(self) -> LanguageEncoder | MiniLMTextEncoder:
        encoder = self.sem_seg_head.predictor.lang_encoder
        assert isinstance(encoder, LanguageEncoder | MiniLMTextEncoder)
        return encoder

    @property
    def device(self) -> torch.device:
        return self.dilation_kernel.device

    def encode_image(self, images: torch.Tensor) -> ImageFeatures:
        """Backbone and pixel decoder.

        Args:
            images: ``(B, 3, H_pad, W_pad)`` normalised, zero-padded images (see
                :func:`napari_seem.model.transforms.preprocess`).
        """
        out = self.sem_seg_head.pixel_decoder.forward_features(self.backbone(images))
        ms = out.multi_scale_features
        return ImageFeatures(
            out.mask_features, (ms[0], ms[1], ms[2]), (int(images.shape[-2]), int(images.shape[-1]))
        )

    def encode_visual_prompts(
        self,
        features: ImageFeatures,
        pos_masks: torch.Tensor,
        neg_masks: torch.Tensor | None = None,
    ) -> VisualPromptTokens:
        """Prompt tokens from ``(B, P, H_pad, W_pad)`` bool masks in ``features``' padded frame.

        For a referring example pass the *example* image's features and masks: the tokens
        can then be decoded against any other image.
        """
        return self.decoder.encode_visual_prompts(
            pos_masks, neg_masks, features.multi_scale_features, features.mask_features
        )

    def decode(
        self,
        features: ImageFeatures,
        *,
        class_embeddings: torch.Tensor | None = None,
        grounding_tokens: torch.Tensor | None = None,
        grounding_padding: torch.Tensor | None = None,
        visual_prompts: VisualPromptTokens | None = None,
        prev_mask: torch.Tensor | None = None,
        tasks: Iterable[Task] | None = None,
        return_aux: bool = False,
        image_memory: ImageMemory | None = None,
    ) -> DecoderOutput:
        """Run the SEEM decoder on encoded images; see :meth:`SeemDecoder.forward`.

        ``image_memory`` (from ``self.decoder.project_image``) skips re-projecting the image
        keys/values of every layer: the interactive fast path.
        """
        return self.decoder(
            features.multi_scale_features,
            features.mask_features,
            class_embeddings=class_embeddings,
            logit_scale=self.text_encoder.logit_scale,
            grounding_tokens=grounding_tokens,
            grounding_padding=grounding_padding,
            visual_prompts=visual_prompts,
            prev_mask=prev_mask,
            tasks=tasks,
            return_aux=return_aux,
            image_memory=image_memory,
        )
