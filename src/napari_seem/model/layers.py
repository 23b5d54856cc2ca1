"""Small building blocks shared by several model parts.

The parameter names of these blocks are the official SEEM (detectron2 / X-Decoder)
state-dict names: a convolution with an attached normalisation stores ``weight``,
``bias`` and ``norm.*``; an MLP stores ``layers.{i}.weight`` / ``layers.{i}.bias``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MLP", "ConvNorm", "group_norm", "l2_normalize", "sine_position_encoding"]


def l2_normalize(x: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """``x / (||x|| + eps)`` over the last dimension: SEEM's normalisation of text vectors,
    caption embeddings and grounding similarities (``(..., D)`` -> ``(..., D)``)."""
    return x / (x.norm(dim=-1, keepdim=True) + eps)


class ConvNorm(nn.Conv2d):
    """``nn.Conv2d`` followed by an optional normalisation and activation.

    The norm is a child module named ``norm`` so that the state-dict keys are
    ``<name>.weight``, ``<name>.bias`` (absent when ``bias=False``) and ``<name>.norm.*``,
    as in detectron2's ``layers.Conv2d``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        norm: nn.Module | None = None,
        activation: nn.Module | None = None,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias
        )
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """detectron2's ``get_norm("GN", C)``: GroupNorm with 32 groups, eps 1e-5."""
    return nn.GroupNorm(groups, channels)


class MLP(nn.Module):
    """A stack of ``num_layers`` linear layers with ReLU between them (none after the last).

    Keys: ``layers.{i}.weight`` ``[out_i, in_i]``, ``layers.{i}.bias`` ``[out_i]``.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims_in = [in_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims_in, dims_out, strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x


def sine_position_encoding(
    x: torch.Tensor,
    num_pos_feats: int,
    *,
    temperature: float = 10000.0,
    normalize: bool = True,
    scale: float = 2 * math.pi,
) -> torch.Tensor:
    """2-D sine/cosine position encoding of a feature map (DETR convention, no padding mask).

    Args:
        x: ``(B, C, H, W)`` feature map; only its shape, dtype and device are used.
        num_pos_feats: features per axis; the result has ``2 * num_pos_feats`` channels.
        normalize: map positions to ``(0, scale]`` as ``k / (n + 1e-6) * scale`` for the
            1-based index ``k`` of ``n`` positions along an axis.

    Returns:
        ``(B, 2 * num_pos_feats, H, W)`` tensor: the first half encodes the row (y), the
        second half the column (x); within each half, channels alternate sin, cos.
    """
    b, _, h, w = x.shape
    # computed in at least float32: in bf16 the angles alone would be off by ~1e-2
    dtype = torch.promote_types(x.dtype, torch.float32)
    ys = torch.arange(1, h + 1, dtype=dtype, device=x.device)
    xs = torch.arange(1, w + 1, dtype=dtype, device=x.device)
    if normalize:
        eps = 1e-6
        ys = ys / (ys[-1:] + eps) * scale
        xs = xs / (xs[-1:] + eps) * scale
    k = torch.arange(num_pos_feats, dtype=dtype, device=x.device)
    freq = temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / num_pos_feats)

    def encode(pos: torch.Tensor) -> torch.Tensor:  # (n,) -> (n, num_pos_feats)
        angles = pos[:, None] / freq
        # interleave sin of even channels with cos of odd channels: s0 c1 s2 c3 ...
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = encode(ys)[:, None, :].expand(h, w, num_pos_feats)
    pos_x = encode(xs)[None, :, :].expand(h, w, num_pos_feats)
    pos = torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1)  # (2F, H, W)
    return pos.to(x.dtype).unsqueeze(0).expand(b, -1, -1, -1)
