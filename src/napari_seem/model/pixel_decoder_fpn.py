"""FPN pixel decoder of the Focal SEEM variants (official ``transformer_encoder_fpn``).

A 1x1 ``input_proj`` and a post-norm transformer encoder refine ``res5``; an FPN then runs
top-down res5 -> res2 (lateral 1x1 ``adapter_i`` + GN, nearest upsampling, 3x3 ``layer_i``
+ GN + ReLU); ``mask_features`` is a 3x3 conv on the stride-4 map. Parameter names are the
official ones under ``sem_seg_head.pixel_decoder.``. Index ``i`` in ``adapter_i`` /
``layer_i`` counts from the finest level: 1 = res2, ..., 4 = res5.

Also defines :class:`PixelDecoderOutput`, the typed result shared by every pixel decoder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from napari_seem.model.layers import ConvNorm, group_norm, sine_position_encoding

__all__ = [
    "FPN_FOCAL_L",
    "FPN_FOCAL_T",
    "FPNPixelDecoder",
    "FPNPixelDecoderConfig",
    "PixelDecoderOutput",
]


@dataclass(frozen=True)
class PixelDecoderOutput:
    """What a pixel decoder hands to the SEEM decoder.

    All tensors are ``float`` NCHW maps in the padded model frame (input ``H x W``, padded
    bottom/right), with ``C`` the pixel decoder's channel count (512 for released models).

    Attributes:
        mask_features: ``(B, C, H/4, W/4)``; per-pixel embeddings that query embeddings are
            dotted with to give mask logits.
        transformer_encoder_features: ``(B, C, H/32, W/32)``; the coarsest map after the
            pixel decoder's transformer encoder.
        multi_scale_features: three maps at strides 32, 16, 8, in that order, the memory that
            decoder layer ``i`` cross-attends at level ``i % 3``.
    """

    mask_features: torch.Tensor
    transformer_encoder_features: torch.Tensor
    multi_scale_features: tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True, kw_only=True)
class FPNPixelDecoderConfig:
    """Hyper-parameters of :class:`FPNPixelDecoder`."""

    # channels of the backbone's res2 .. res5
    in_channels: tuple[int, int, int, int]
    conv_dim: int = 512
    mask_dim: int = 512
    num_encoder_layers: int = 6
    # the official code takes these three from the SEEM decoder's settings
    # (DECODER.NHEADS / DIM_FEEDFORWARD / PRE_NORM=False), not from the encoder's
    num_heads: int = 8
    dim_feedforward: int = 2048
    norm_groups: int = 32


FPN_FOCAL_T = FPNPixelDecoderConfig(in_channels=(96, 192, 384, 768))
"""Pixel decoder of ``seem_focalt_v*.pt``."""

FPN_FOCAL_L = FPNPixelDecoderConfig(in_channels=(192, 384, 768, 1536))
"""Pixel decoder of ``seem_focall_v*.pt``."""


class EncoderLayer(nn.Module):
    """Post-norm transformer encoder layer (self-attention, then ReLU FFN), dropout-free.

    The position encoding is added to queries and keys only, not to values.
    Keys: ``self_attn.in_proj_weight [3D, D]``, ``self_attn.in_proj_bias``,
    ``self_attn.out_proj.*``, ``linear1 [F, D]``, ``linear2 [D, F]``, ``norm1``, ``norm2``.
    """

    def __init__(self, *, dim: int, num_heads: int, dim_feedforward: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads)
        self.linear1 = nn.Linear(dim, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """``src``, ``pos``: ``(L, B, D)`` sequence-first tokens -> ``(L, B, D)``."""
        qk = src + pos
        attn = self.self_attn(qk, qk, src, need_weights=False)[0]
        src = self.norm1(src + attn)
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class _EncoderLayers(nn.Module):
    """A stack of :class:`EncoderLayer` (keys ``layers.{i}.*``), no final norm."""

    def __init__(self, layers: list[EncoderLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            src = layer(src, pos)
        return src


class MapEncoder(nn.Module):
    """Transformer encoder over all positions of one feature map (keys ``encoder.layers.*``).

    The extra ``encoder`` level exists only to reproduce the official key names.
    """

    def __init__(self, *, dim: int, num_layers: int, num_heads: int, dim_feedforward: int) -> None:
        super().__init__()
        layers = [
            EncoderLayer(dim=dim, num_heads=num_heads, dim_feedforward=dim_feedforward)
            for _ in range(num_layers)
        ]
        self.encoder = _EncoderLayers(layers)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """``x``, ``pos``: ``(B, D, h, w)`` -> ``(B, D, h, w)``."""
        b, d, h, w = x.shape
        tokens = x.flatten(2).permute(2, 0, 1)  # (h*w, B, D)
        out = self.encoder(tokens, pos.flatten(2).permute(2, 0, 1))
        return out.permute(1, 2, 0).reshape(b, d, h, w)


class FPNPixelDecoder(nn.Module):
    """Transformer-encoder + FPN pixel decoder (official ``transformer_encoder_fpn``).

    Keys (D = ``conv_dim``): ``adapter_{1,2,3}`` (1x1 conv, no bias, ``norm`` = GN) on
    res2/res3/res4; ``layer_{1,2,3,4}`` (3x3 conv, no bias, ``norm`` = GN, then ReLU) at
    res2 .. res5; ``mask_features`` (3x3 conv with bias); ``input_proj`` (1x1 conv with
    bias, res5 -> D); ``transformer.encoder.layers.{i}.*`` (see :class:`EncoderLayer`).
    """

    def __init__(self, config: FPNPixelDecoderConfig) -> None:
        super().__init__()
        self.config = config
        d = config.conv_dim

        def gn() -> nn.GroupNorm:
            return group_norm(d, config.norm_groups)

        # registration order follows the official state dict (layer_4 comes last there)
        for i, c_in in enumerate(config.in_channels[:3], start=1):
            self.add_module(f"adapter_{i}", ConvNorm(c_in, d, 1, bias=False, norm=gn()))
            self.add_module(f"layer_{i}", self._output_conv(d, gn()))
        self.mask_features = nn.Conv2d(d, config.mask_dim, 3, padding=1)
        self.input_proj = nn.Conv2d(config.in_channels[3], d, 1)
        self.transformer = MapEncoder(
            dim=d,
            num_layers=config.num_encoder_layers,
            num_heads=config.num_heads,
            dim_feedforward=config.dim_feedforward,
        )
        self.layer_4 = self._output_conv(d, gn())

    @staticmethod
    def _output_conv(dim: int, norm: nn.Module) -> ConvNorm:
        return ConvNorm(dim, dim, 3, padding=1, bias=False, norm=norm, activation=nn.ReLU())

    def forward_features(self, features: Mapping[str, torch.Tensor]) -> PixelDecoderOutput:
        """Decode backbone maps into mask features and the decoder's multi-scale memory.

        Args:
            features: ``res2`` .. ``res5``, NCHW float maps of the padded input at strides
                4, 8, 16, 32, with ``config.in_channels`` channels (extra keys are ignored).

        Returns:
            :class:`PixelDecoderOutput` whose maps have ``conv_dim`` channels
            (``mask_dim`` for ``mask_features``) and the spatial sizes of res2 / res5 /
            (res5, res4, res3).
        """
        res5 = features["res5"]
        # the official sine encoding uses hidden/2 features per axis, normalised to 2*pi
        pos = sine_position_encoding(res5, self.config.conv_dim // 2)
        encoded = self.transformer(self.input_proj(res5), pos)  # (B, D, H/32, W/32)
        y = self.layer_4(encoded)
        levels = [y]
        for i, name in ((3, "res4"), (2, "res3"), (1, "res2")):
            lateral = self.get_submodule(f"adapter_{i}")(features[name])
            y = lateral + F.interpolate(y, size=lateral.shape[-2:], mode="nearest")
            y = self.get_submodule(f"layer_{i}")(y)
            levels.append(y)
        return PixelDecoderOutput(
            mask_features=self.mask_features(y),
            transformer_encoder_features=encoded,
            multi_scale_features=(levels[0], levels[1], levels[2]),
        )

    def forward(self, features: Mapping[str, torch.Tensor]) -> PixelDecoderOutput:
        """Same as :meth:`forward_features`."""
        return self.forward_features(features)
