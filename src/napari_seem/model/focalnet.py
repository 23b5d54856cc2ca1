"""FocalNet image backbones of the Focal SEEM variants (Focal-T and Focal-L).

Two official flavours exist and differ in more than size:

- ``"focal_dw"`` (Focal-T): every block is wrapped in residual 3x3 depth-wise convolutions
  ``dw1`` / ``dw2`` and its post-LN normalises *after* each residual sum; the 7x7 stride-4
  stem pads by 3.
- ``"focal"`` (Focal-L): no depth-wise convolutions; the post-LN normalises the branch
  output *before* it is added to the residual; the stem pads by 2.

Module and parameter names reproduce the official state dict under ``backbone.``
(``patch_embed.proj``, ``layers.{i}.blocks.{j}.modulation.focal_layers.{k}.0``,
``layers.{i}.downsample``, ``norm0`` .. ``norm3``), so official checkpoints load strictly.
Only inference is implemented: no dropout or stochastic depth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FOCAL_L", "FOCAL_T", "FocalNet", "FocalNetConfig"]

FocalVariant = Literal["focal_dw", "focal"]


@dataclass(frozen=True, kw_only=True)
class FocalNetConfig:
    """Hyper-parameters of a FocalNet backbone (four stages, strides 4, 8, 16, 32).

    Stage ``i`` has ``embed_dim * 2**i`` channels and ``depths[i]`` blocks.
    """

    # selects the official source file, which fixes the block layout and the stem padding
    variant: FocalVariant
    embed_dim: int
    depths: tuple[int, int, int, int]
    # number of hierarchical context levels per block; level k uses a depth-wise
    # kernel of size focal_window + 2 * k (3, 5, 7[, 9] in the released models)
    focal_level: int
    focal_window: int = 3
    mlp_ratio: float = 4.0
    # learned per-channel residual scales gamma_1 / gamma_2 (initialised to 1e-4)
    use_layerscale: bool = True
    # divide the gated context sum by focal_level + 1 (on in every released model)
    scaling_modulator: bool = True

    @property
    def stem_padding(self) -> int:
        """Padding of the 7x7 stride-4 stem convolution (differs between the two files)."""
        return 3 if self.variant == "focal_dw" else 2

    @property
    def channels(self) -> tuple[int, int, int, int]:
        """Channels of ``res2`` .. ``res5``."""
        d = self.embed_dim
        return (d, 2 * d, 4 * d, 8 * d)


FOCAL_T = FocalNetConfig(variant="focal_dw", embed_dim=96, depths=(2, 2, 6, 2), focal_level=3)
"""Focal-T of ``seem_focalt_v*.pt`` (channels 96/192/384/768)."""

FOCAL_L = FocalNetConfig(variant="focal", embed_dim=192, depths=(2, 2, 18, 2), focal_level=4)
"""Focal-L of ``seem_focall_v*.pt`` (channels 192/384/768/1536)."""


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad an NCHW tensor bottom/right so that H and W are multiples of ``multiple``."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    return x


def _channels_first(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply an NCHW module to a channels-last ``(B, H, W, C)`` tensor."""
    return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class PatchEmbed(nn.Module):
    """Strided convolution + LayerNorm: the stem and the between-stage downsampling.

    The input is first zero-padded bottom/right to a multiple of ``stride``, as the
    official code does; without this the Focal-L stem (padding 2) would drop a row or
    column for sizes that are not multiples of 4.

    Keys: ``proj.weight [out, in, k, k]``, ``proj.bias``, ``norm.weight``, ``norm.bias``.
    """

    def __init__(
        self, *, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int
    ) -> None:
        super().__init__()
        self.stride = stride
        self.proj = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding
        )
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` NCHW -> ``(B, ceil(H/s), ceil(W/s), C_out)`` channels-last."""
        x = self.proj(_pad_to_multiple(x, self.stride))
        return self.norm(x.permute(0, 2, 3, 1))


class FocalModulation(nn.Module):
    """Focal modulation: a query modulated by gated multi-scale depth-wise context.

    Keys: ``f`` (Linear C -> 2C + L + 1: query, context, L + 1 gates), ``h`` (1x1 conv),
    ``proj`` (Linear), ``focal_layers.{k}.0`` (depth-wise conv, no bias; ``.1`` is a GELU).
    """

    def __init__(
        self, *, dim: int, focal_level: int, focal_window: int, scaling_modulator: bool
    ) -> None:
        super().__init__()
        self.focal_level = focal_level
        self.scaling_modulator = scaling_modulator
        self.f = nn.Linear(dim, 2 * dim + focal_level + 1)
        self.h = nn.Conv2d(dim, dim, kernel_size=1)
        self.proj = nn.Linear(dim, dim)
        kernels = [focal_window + 2 * k for k in range(focal_level)]
        self.focal_layers = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim, bias=False), nn.GELU())
            for k in kernels
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` channels-last -> ``(B, H, W, C)``."""
        c = x.shape[-1]
        q, ctx, gates = (
            self.f(x).permute(0, 3, 1, 2).split((c, c, self.focal_level + 1), dim=1)
        )  # (B, C, H, W), (B, C, H, W), (B, L + 1, H, W)
        # each level convolves the previous level's context, so receptive fields grow
        modulator = torch.zeros_like(ctx)
        for level, layer in enumerate(self.focal_layers):
            ctx = layer(ctx)
            modulator = modulator + ctx * gates[:, level : level + 1]
        global_ctx = F.gelu(ctx.mean(dim=(2, 3), keepdim=True))  # (B, C, 1, 1)
        modulator = modulator + global_ctx * gates[:, self.focal_level :]
        if self.scaling_modulator:
            modulator = modulator / (self.focal_level + 1)
        out = q * self.h(modulator)
        return self.proj(out.permute(0, 2, 3, 1))


class FocalBlock(nn.Module):
    """One post-LN focal modulation block (layout depends on ``variant``, see module doc).

    Keys: ``gamma_1``/``gamma_2`` ``[C]`` (layerscale), ``dw1``/``dw2`` (focal_dw only:
    3x3 depth-wise conv with bias), ``norm1``, ``modulation.*``, ``norm2``,
    ``mlp.fc1`` ``[C*r, C]``, ``mlp.fc2`` ``[C, C*r]``.
    """

    def __init__(self, *, dim: int, config: FocalNetConfig) -> None:
        """``dim``: the channels of the block's stage; ``config``: the backbone's settings
        (variant, focal level and window, MLP ratio, layerscale, scaling modulator)."""
        super().__init__()
        variant = config.variant
        self.variant = variant
        self.gamma_1: nn.Parameter | None = None
        self.gamma_2: nn.Parameter | None = None
        if config.use_layerscale:
            self.gamma_1 = nn.Parameter(torch.full((dim,), 1e-4))
            self.gamma_2 = nn.Parameter(torch.full((dim,), 1e-4))
        self.dw1: nn.Conv2d | None = None
        self.dw2: nn.Conv2d | None = None
        if variant == "focal_dw":
            self.dw1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.modulation = FocalModulation(
            dim=dim,
            focal_level=config.focal_level,
            focal_window=config.focal_window,
            scaling_modulator=config.scaling_modulator,
        )
        if variant == "focal_dw":
            self.dw2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * config.mlp_ratio)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", nn.Linear(dim, hidden))
        self.mlp.add_module("act", nn.GELU())
        self.mlp.add_module("fc2", nn.Linear(hidden, dim))

    @staticmethod
    def _scale(gamma: nn.Parameter | None, x: torch.Tensor) -> torch.Tensor:
        return x if gamma is None else gamma * x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` channels-last -> ``(B, H, W, C)``."""
        if self.dw1 is not None and self.dw2 is not None:
            x = x + _channels_first(self.dw1, x)
            x = self.norm1(x + self._scale(self.gamma_1, self.modulation(x)))
            x = x + _channels_first(self.dw2, x)
            return self.norm2(x + self._scale(self.gamma_2, self.mlp(x)))
        x = x + self._scale(self.gamma_1, self.norm1(self.modulation(x)))
        return x + self._scale(self.gamma_2, self.norm2(self.mlp(x)))


class FocalStage(nn.Module):
    """Blocks of one stage plus the optional 3x3 stride-2 ``downsample`` that follows it.

    Keys: ``blocks.{j}.*``, ``downsample.proj.*``, ``downsample.norm.*``.
    """

    def __init__(self, *, blocks: list[FocalBlock], downsample: PatchEmbed | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(B, H, W, C)`` -> (stage output ``(B, H, W, C)``, next stage input
        ``(B, ceil(H/2), ceil(W/2), 2C)`` or None for the last stage)."""
        for block in self.blocks:
            x = block(x)
        if self.downsample is None:
            return x, None
        return x, self.downsample(x.permute(0, 3, 1, 2))


class FocalNet(nn.Module):
    """FocalNet backbone producing ``res2`` .. ``res5``.

    Input: ``(B, 3, H, W)`` float image, normalised with the SEEM pixel mean/std and padded
    bottom/right (to a multiple of 32 in the official pipeline). Sizes that are not a
    multiple of 4 (or odd sizes between stages) are zero-padded bottom/right internally,
    as the official code does, so ``res{k}`` has spatial size ``ceil(H / 2**k)``.

    Output: ``{"res2": (B, C0, H/4, W/4), "res3": (B, C1, H/8, W/8),
    "res4": (B, C2, H/16, W/16), "res5": (B, C3, H/32, W/32)}``, NCHW, in the padded input
    frame; each map is the stage output (before downsampling) after LayerNorm ``norm{i}``.
    """

    # the official pipeline pads images to a multiple of this before the backbone
    size_divisibility: ClassVar[int] = 32

    def __init__(self, config: FocalNetConfig) -> None:
        super().__init__()
        self.config = config
        channels = config.channels
        self.patch_embed = PatchEmbed(
            in_channels=3,
            out_channels=channels[0],
            kernel_size=7,
            stride=4,
            padding=config.stem_padding,
        )
        stages = []
        for i, (dim, depth) in enumerate(zip(channels, config.depths, strict=True)):
            blocks = [FocalBlock(dim=dim, config=config) for _ in range(depth)]
            downsample = None
            if i < len(channels) - 1:
                downsample = PatchEmbed(
                    in_channels=dim, out_channels=2 * dim, kernel_size=3, stride=2, padding=1
                )
            stages.append(FocalStage(blocks=blocks, downsample=downsample))
        self.layers = nn.ModuleList(stages)
        # per-stage output norms live on the backbone itself: keys norm0 .. norm3
        for i, dim in enumerate(channels):
            self.add_module(f"norm{i}", nn.LayerNorm(dim))

    @property
    def out_channels(self) -> dict[str, int]:
        """Channels of each output map, ``{"res2": C0, ..., "res5": C3}``."""
        return {f"res{i + 2}": c for i, c in enumerate(self.config.channels)}

    @property
    def out_strides(self) -> dict[str, int]:
        """Stride of each output map relative to the input, ``{"res2": 4, ..., "res5": 32}``."""
        return {f"res{i + 2}": 2 ** (i + 2) for i in range(len(self.config.channels))}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """See the class docstring for shapes."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"FocalNet expects a (B, 3, H, W) image, got {tuple(x.shape)}")
        outputs: dict[str, torch.Tensor] = {}
        h: torch.Tensor | None = self.patch_embed(x)  # (B, H/4, W/4, C0)
        for i, stage in enumerate(self.layers):
            assert h is not None
            out, h = stage(h)
            norm = self.get_submodule(f"norm{i}")
            outputs[f"res{i + 2}"] = norm(out).permute(0, 3, 1, 2).contiguous()
        return outputs
