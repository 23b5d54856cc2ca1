"""Deformable-attention pixel decoder of the SAM SEEM variants (official
``transformer_encoder_deform``, Mask2Former's ``MSDeformAttnPixelDecoder``).

res3..res5 are projected to ``conv_dim`` channels (1x1 conv + GroupNorm(32)) and refined
jointly by a stack of multi-scale deformable-attention encoder layers (Deformable DETR):
every token of every level attends to ``num_points`` bilinearly sampled locations per head
and per level around its own position. The three refined levels are the decoder's
multi-scale memory; one FPN step adds res2 (bilinear upsampling) and a 1x1 conv gives the
stride-4 mask features.

The official code runs a custom CUDA op or, without it, a ``grid_sample`` fallback; this
module is the ``grid_sample`` formulation (``align_corners=False``, zero padding) only.

State-dict names are the official ones under ``sem_seg_head.pixel_decoder.``:
``input_proj.{0,1,2}.{0,1}`` (res5, res4, res3), ``transformer.level_embed``,
``transformer.encoder.layers.{i}.{self_attn.{sampling_offsets,attention_weights,
value_proj,output_proj},norm1,linear1,linear2,norm2}``, ``mask_features``, ``adapter_1``,
``layer_1``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from napari_seem.model.layers import ConvNorm, group_norm, sine_position_encoding
from napari_seem.model.pixel_decoder_fpn import PixelDecoderOutput

__all__ = [
    "DeformEncoderLayer",
    "DeformPixelDecoder",
    "DeformPixelDecoderConfig",
    "MultiScaleDeformableAttention",
    "deformable_sample",
]


@dataclass(frozen=True, kw_only=True)
class DeformPixelDecoderConfig:
    """Sizes of the deformable pixel decoder; defaults are the released SAM SEEM models."""

    # Channels of res2, res3, res4, res5 (the SAM simple-FPN outputs).
    in_channels: tuple[int, int, int, int] = (128, 256, 512, 1024)
    conv_dim: int = 512
    mask_dim: int = 512
    # The official builder takes this from MODEL.DECODER.NHEADS.
    num_heads: int = 8
    num_points: int = 4
    # Hard-coded to 1024 officially, whatever MODEL.DECODER.DIM_FEEDFORWARD says.
    ffn_dim: int = 1024
    num_layers: int = 6


def deformable_sample(
    value: torch.Tensor,
    shapes: Sequence[tuple[int, int]],
    locations: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """Weighted sum of bilinear samples of several feature levels (the MSDeformAttn core).

    Args:
        value: ``(B, S, M, Dh)`` per-head values of all levels, each level flattened in
            raster order and the levels concatenated (``S = sum(h * w)``).
        shapes: ``(h, w)`` of each of the ``L`` levels, in the order of ``value``.
        locations: ``(B, Q, M, L, P, 2)`` sampling points as ``(x, y)`` in ``[0, 1]``
            image-relative units, ``0`` the left/top edge and ``1`` the right/bottom edge of
            the level (pixel ``j`` has its centre at ``(j + 0.5) / w``). Outside points read 0.
        weights: ``(B, Q, M, L, P)`` attention weights.

    Returns:
        ``(B, Q, M * Dh)``, heads concatenated.
    """
    b, _, m, dh = value.shape
    q = locations.shape[1]
    grids = 2 * locations - 1  # grid_sample's [-1, 1] frame with align_corners=False
    out = value.new_zeros(b * m, dh, q)
    per_level = value.split([h * w for h, w in shapes], dim=1)
    for lvl, ((h, w), v) in enumerate(zip(shapes, per_level, strict=True)):
        v = v.flatten(2).transpose(1, 2).reshape(b * m, dh, h, w)
        grid = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)  # (B*M, Q, P, 2)
        sampled = F.grid_sample(
            v, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (B*M, Dh, Q, P)
        w_l = weights[:, :, :, lvl].transpose(1, 2).reshape(b * m, 1, q, -1)  # (B*M, 1, Q, P)
        out = out + (sampled * w_l).sum(-1)
    return out.reshape(b, m * dh, q).transpose(1, 2)


class MultiScaleDeformableAttention(nn.Module):
    """Multi-scale deformable attention (Deformable DETR, two-coordinate reference points).

    Each query predicts, per head, level and point, an offset (in pixels of that level)
    from its reference point and a weight (softmax over all levels and points of a head).
    """

    def __init__(self, *, dim: int, num_levels: int, num_heads: int, num_points: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_levels = num_levels
        self.num_heads = num_heads
        self.num_points = num_points
        self.sampling_offsets = nn.Linear(dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Deformable DETR's initialisation: head ``k`` starts sampling along direction
        ``2 pi k / num_heads`` at 1..P pixels, with uniform weights."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angle = torch.arange(self.num_heads, dtype=torch.float32) * (2 * math.pi / self.num_heads)
        direction = torch.stack((angle.cos(), angle.sin()), -1)  # (M, 2)
        direction = direction / direction.abs().amax(-1, keepdim=True)
        steps = torch.arange(1, self.num_points + 1, dtype=torch.float32)
        grid = direction[:, None, None, :] * steps[None, None, :, None]  # (M, 1, P, 2)
        grid = grid.expand(-1, self.num_levels, -1, -1)  # (M, L, P, 2)
        self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference: torch.Tensor,
        value: torch.Tensor,
        shapes: Sequence[tuple[int, int]],
    ) -> torch.Tensor:
        """Attend from ``query`` to the multi-level map ``value``.

        Args:
            query: ``(B, Q, C)``.
            reference: ``(Q, 2)`` reference point of each query as ``(x, y)`` in ``[0, 1]``
                (see :func:`deformable_sample`), shared by all levels and batch elements.
            value: ``(B, S, C)`` levels flattened in raster order and concatenated.
            shapes: ``(h, w)`` of each level, ``sum(h * w) == S``.

        Returns:
            ``(B, Q, C)``.
        """
        b, q, c = query.shape
        m, n_lvl, n_pt = self.num_heads, self.num_levels, self.num_points
        v = self.value_proj(value).reshape(b, value.shape[1], m, c // m)  # (B, S, M, Dh)
        offsets = self.sampling_offsets(query).reshape(b, q, m, n_lvl, n_pt, 2)
        weights = self.attention_weights(query).reshape(b, q, m, n_lvl * n_pt)
        weights = weights.softmax(-1).reshape(b, q, m, n_lvl, n_pt)
        # offsets are in pixels of their level; (w, h) turns them into [0, 1] units
        level_wh = torch.tensor(
            [(w, h) for h, w in shapes], dtype=query.dtype, device=query.device
        )  # (L, 2)
        locations = reference[None, :, None, None, None, :] + offsets / level_wh[:, None, :]
        return self.output_proj(deformable_sample(v, shapes, locations, weights))


class DeformEncoderLayer(nn.Module):
    """Post-norm encoder layer: deformable self-attention, then a ReLU FFN.

    Tokens ``(B, S, C)`` of all levels in, same shape out; the position encoding is added
    to the queries only, the values are the un-encoded tokens.
    """

    def __init__(
        self, *, dim: int, ffn_dim: int, num_levels: int, num_heads: int, num_points: int
    ) -> None:
        super().__init__()
        self.self_attn = MultiScaleDeformableAttention(
            dim=dim, num_levels=num_levels, num_heads=num_heads, num_points=num_points
        )
        self.norm1 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(
        self,
        src: torch.Tensor,
        pos: torch.Tensor,
        reference: torch.Tensor,
        shapes: Sequence[tuple[int, int]],
    ) -> torch.Tensor:
        """``src``/``pos`` ``(B, S, C)``, ``reference`` ``(S, 2)``; returns ``(B, S, C)``."""
        src = self.norm1(src + self.self_attn(src + pos, reference, src, shapes))
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class _LayerStack(nn.Module):
    """Holds the encoder layers under the official name ``encoder.layers``."""

    def __init__(self, layers: list[DeformEncoderLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)


def _reference_points(
    shapes: Sequence[tuple[int, int]], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Pixel centres ``((j + 0.5) / w, (i + 0.5) / h)`` of every level, raster order,
    concatenated: ``(sum(h * w), 2)`` as ``(x, y)``."""
    points = []
    for h, w in shapes:
        ys = (torch.arange(h, dtype=dtype, device=device) + 0.5) / h
        xs = (torch.arange(w, dtype=dtype, device=device) + 0.5) / w
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (h, w) each
        points.append(torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), -1))
    return torch.cat(points, 0)


class DeformTransformerEncoder(nn.Module):
    """The encoder stack with its per-level embedding (official ``transformer``).

    ``level_embed`` is ``(L, C)``: row ``l`` is added to the position encoding of level ``l``
    (level 0 = the coarsest map).
    """

    def __init__(
        self,
        *,
        dim: int,
        ffn_dim: int,
        num_layers: int,
        num_levels: int,
        num_heads: int,
        num_points: int,
    ) -> None:
        super().__init__()
        self.level_embed = nn.Parameter(torch.zeros(num_levels, dim))
        nn.init.normal_(self.level_embed)
        self.encoder = _LayerStack(
            [
                DeformEncoderLayer(
                    dim=dim,
                    ffn_dim=ffn_dim,
                    num_levels=num_levels,
                    num_heads=num_heads,
                    num_points=num_points,
                )
                for _ in range(num_layers)
            ]
        )

    def forward(self, srcs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Refine ``L`` maps ``(B, C, h_l, w_l)`` jointly; returns them with the same shapes."""
        shapes = [(int(s.shape[2]), int(s.shape[3])) for s in srcs]
        tokens = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)  # (B, S, C)
        dim = tokens.shape[2]
        pos = torch.cat(
            [
                sine_position_encoding(s, dim // 2).flatten(2).transpose(1, 2)
                + self.level_embed[lvl]
                for lvl, s in enumerate(srcs)
            ],
            1,
        )  # (B, S, C)
        reference = _reference_points(shapes, tokens.dtype, tokens.device)
        for layer in self.encoder.layers:
            tokens = layer(tokens, pos, reference, shapes)
        levels = tokens.split([h * w for h, w in shapes], dim=1)
        return [
            t.transpose(1, 2).reshape(t.shape[0], dim, h, w)  # (B, C, h, w)
            for t, (h, w) in zip(levels, shapes, strict=True)
        ]


class DeformPixelDecoder(nn.Module):
    """Backbone maps ``res2..res5`` to mask features and the decoder's multi-scale memory."""

    def __init__(self, config: DeformPixelDecoderConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.conv_dim
        c2, c3, c4, c5 = config.in_channels
        # coarse to fine (res5, res4, res3), the order of the encoder levels
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, dim, kernel_size=1), group_norm(dim)) for c in (c5, c4, c3)
        )
        self.transformer = DeformTransformerEncoder(
            dim=dim,
            ffn_dim=config.ffn_dim,
            num_layers=config.num_layers,
            num_levels=3,
            num_heads=config.num_heads,
            num_points=config.num_points,
        )
        self.mask_features = nn.Conv2d(dim, config.mask_dim, kernel_size=1)
        self.adapter_1 = ConvNorm(c2, dim, 1, bias=False, norm=group_norm(dim))
        self.layer_1 = ConvNorm(
            dim, dim, 3, padding=1, bias=False, norm=group_norm(dim), activation=nn.ReLU()
        )

    def forward_features(self, features: Mapping[str, torch.Tensor]) -> PixelDecoderOutput:
        """Run the decoder.

        Args:
            features: ``res2..res5`` NCHW maps at strides 4, 8, 16, 32 of the padded model
                frame, with ``config.in_channels`` channels.

        Returns:
            ``mask_features`` ``(B, mask_dim, H/4, W/4)``; ``transformer_encoder_features``
            = the refined stride-32 map; ``multi_scale_features`` = the refined maps at
            strides 32, 16, 8 (``(B, conv_dim, ., .)``).
        """
        srcs = [
            proj(features[name])
            for proj, name in zip(self.input_proj, ("res5", "res4", "res3"), strict=True)
        ]
        s32, s16, s8 = self.transformer(srcs)
        lateral = self.adapter_1(features["res2"])
        up = F.interpolate(s8, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
        fine = self.layer_1(lateral + up)
        return PixelDecoderOutput(
            mask_features=self.mask_features(fine),
            transformer_encoder_features=s32,
            multi_scale_features=(s32, s16, s8),
        )

    def forward(self, features: Mapping[str, torch.Tensor]) -> PixelDecoderOutput:
        """Same as :meth:`forward_features`."""
        return self.forward_features(features)
