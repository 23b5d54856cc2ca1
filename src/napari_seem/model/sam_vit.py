"""SAM ViT image encoder with SEEM's simple FPN neck (official backbone ``vit``).

The encoder is the Segment Anything ViT: 16 x 16 patches, absolute position embedding,
pre-norm blocks with windowed attention (global attention in a few listed blocks) and
decomposed relative position biases. SEEM drops SAM's 256-channel neck and instead builds
four maps from the stride-16 token grid: transposed convolutions up to strides 4 and 8, a
1x1 convolution at 16 and a stride-2 convolution down to 32, each followed by
``GroupNorm(1)`` (+ GELU).

State-dict names are the official ones under ``backbone.``: ``pos_embed``,
``patch_embed.proj``, ``blocks.{i}.{norm1,attn.{qkv,proj,rel_pos_h,rel_pos_w},norm2,
mlp.{lin1,lin2}}`` and ``neck.down_{4,8,16,32}.{j}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SAM_VIT_B", "SAM_VIT_L", "SamViTBackbone", "SamViTConfig", "SimpleFPN"]

_LEVELS = ("res2", "res3", "res4", "res5")
_STRIDES = (4, 8, 16, 32)


@dataclass(frozen=True, kw_only=True)
class SamViTConfig:
    """Sizes of the SAM ViT backbone and its simple FPN neck.

    The defaults are SAM ViT-B as used by ``seem_samvitb_v1``.
    """

    # The absolute position embedding is added without interpolation, so the (padded)
    # input must be exactly img_size x img_size.
    img_size: int = 1024
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    # Side of the square attention windows of non-global blocks; the token grid is
    # zero-padded up to a multiple of it (64 -> 70 for the released models).
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    # Channels of res2..res5 produced by the neck.
    fpn_channels: tuple[int, int, int, int] = (128, 256, 512, 1024)
    # SAM builds its LayerNorms with eps 1e-6 (not torch's default 1e-5).
    layer_norm_eps: float = 1e-6

    @property
    def grid_size(self) -> int:
        """Side of the token grid, ``img_size // patch_size`` (64 for the released models)."""
        return self.img_size // self.patch_size

    @property
    def out_channels(self) -> dict[str, int]:
        """Channels of each output map: ``{"res2": ..., "res5": ...}``."""
        return dict(zip(_LEVELS, self.fpn_channels, strict=True))

    @property
    def out_strides(self) -> dict[str, int]:
        """Stride of each output map relative to the input: 4, 8, 16, 32."""
        return dict(zip(_LEVELS, _STRIDES, strict=True))


SAM_VIT_B = SamViTConfig()
SAM_VIT_L = SamViTConfig(
    embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)
)


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch x patch`` convolution from RGB to tokens.

    Maps ``(B, 3, H, W)`` to channels-last ``(B, H / patch, W / patch, dim)``.
    """

    def __init__(self, *, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class ViTMLP(nn.Module):
    """``lin2(GELU(lin1(x)))`` on the last dimension."""

    def __init__(self, *, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden_dim)
        self.lin2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(F.gelu(self.lin1(x)))


def _relative_table(table: torch.Tensor, size: int) -> torch.Tensor:
    """Gather a ``(2 * size - 1, C)`` relative-position table into ``(size, size, C)``.

    Entry ``[i, j]`` is the embedding of offset ``i - j`` (row ``i - j + size - 1``).
    """
    if table.shape[0] != 2 * size - 1:
        raise ValueError(
            f"relative position table has {table.shape[0]} rows; {2 * size - 1} are needed "
            f"for an attention extent of {size}"
        )
    pos = torch.arange(size, device=table.device)
    return table[pos[:, None] - pos[None, :] + (size - 1)]


class RelPosAttention(nn.Module):
    """Multi-head self-attention over a 2-D token grid with decomposed relative positions.

    The attention logit between query ``(y, x)`` and key ``(y', x')`` gets the bias
    ``q . Rh[y - y'] + q . Rw[x - x']`` (MViTv2), with the *unscaled* query. The grid side
    must equal ``extent`` (the window size, or the whole grid for global blocks).
    """

    def __init__(self, *, dim: int, num_heads: int, extent: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * extent - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * extent - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend within each ``(B, H, W, C)`` grid; returns the same shape."""
        b, h, w, c = x.shape
        head_dim = c // self.num_heads
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, HW, hd)

        rel_h = _relative_table(self.rel_pos_h, h)  # (h, h', hd)
        rel_w = _relative_table(self.rel_pos_w, w)  # (w, w', hd)
        q_grid = q.reshape(b, self.num_heads, h, w, head_dim)
        bias_h = torch.einsum("bnhwc,hkc->bnhwk", q_grid, rel_h)  # (B, nh, h, w, h')
        bias_w = torch.einsum("bnhwc,wkc->bnhwk", q_grid, rel_w)  # (B, nh, h, w, w')
        bias = (bias_h[..., :, None] + bias_w[..., None, :]).reshape(
            b, self.num_heads, h * w, h * w
        )  # (B, nh, HW, HW), keys in raster order (y', x')

        # A fused kernel avoids keeping both the logits and the probabilities of the
        # 4096-token global blocks in memory.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        out = out.transpose(1, 2).reshape(b, h, w, c)  # (B, H, W, nh * hd)
        return self.proj(out)


def _split_windows(x: torch.Tensor, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad ``(B, H, W, C)`` bottom/right to multiples of ``size`` and cut it into windows.

    Returns ``(B * nWh * nWw, size, size, C)`` windows (row-major over windows) and the
    padded grid size ``(Hp, Wp)``.
    """
    b, h, w, c = x.shape
    hp = -(-h // size) * size
    wp = -(-w // size) * size
    x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
    x = x.reshape(b, hp // size, size, wp // size, size, c)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, size, size, c)
    return windows, (hp, wp)


def _merge_windows(
    windows: torch.Tensor, size: int, padded: tuple[int, int], original: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`_split_windows`: ``(B * nW, size, size, C)`` to ``(B, H, W, C)``."""
    hp, wp = padded
    h, w = original
    c = windows.shape[-1]
    x = windows.reshape(-1, hp // size, wp // size, size, size, c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, hp, wp, c)  # (B, Hp, Wp, C)
    return x[:, :h, :w, :]


class ViTBlock(nn.Module):
    """Pre-norm transformer block on a channels-last grid ``(B, H, W, C)``.

    ``window_size == 0`` means global attention over the whole ``grid_size`` grid.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        window_size: int,
        grid_size: int,
        eps: float,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = RelPosAttention(
            dim=dim, num_heads=num_heads, extent=window_size if window_size else grid_size
        )
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = ViTMLP(dim=dim, hidden_dim=int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        if self.window_size:
            hw = (x.shape[1], x.shape[2])
            windows, padded = _split_windows(y, self.window_size)
            y = _merge_windows(self.attn(windows), self.window_size, padded, hw)
        else:
            y = self.attn(y)
        x = x + y
        return x + self.mlp(self.norm2(x))


def _gn1(channels: int) -> nn.GroupNorm:
    """GroupNorm with a single group (a LayerNorm over C, H, W with per-channel affine)."""
    return nn.GroupNorm(1, channels)


class SimpleFPN(nn.Module):
    """SEEM's neck: four maps at strides 4, 8, 16, 32 from the stride-16 ViT map.

    The ``nn.Sequential`` layouts fix the official key indices (``down_4.0`` ... ``down_4.6``,
    ``down_8.0`` ... ``down_8.3``, ``down_16.0`` / ``.1``, ``down_32.0`` ... ``down_32.3``);
    GELU and the missing activation after ``down_4.4`` are part of that layout.
    """

    def __init__(self, *, in_dim: int, out_dims: tuple[int, int, int, int]) -> None:
        super().__init__()
        c4 = max(2 * out_dims[0], in_dim // 2)
        c8 = max(out_dims[1], in_dim // 2)
        c32 = max(out_dims[3], 2 * in_dim)
        self.down_4 = nn.Sequential(
            nn.ConvTranspose2d(in_dim, c4, kernel_size=2, stride=2),
            _gn1(c4),
            nn.GELU(),
            nn.ConvTranspose2d(c4, c4 // 2, kernel_size=2, stride=2),
            _gn1(c4 // 2),
            nn.Conv2d(c4 // 2, out_dims[0], kernel_size=1),
            _gn1(out_dims[0]),
            nn.GELU(),
        )
        self.down_8 = nn.Sequential(
            nn.ConvTranspose2d(in_dim, c8, kernel_size=2, stride=2),
            _gn1(c8),
            nn.Conv2d(c8, out_dims[1], kernel_size=1),
            _gn1(out_dims[1]),
            nn.GELU(),
        )
        self.down_16 = nn.Sequential(
            nn.Conv2d(in_dim, out_dims[2], kernel_size=1),
            _gn1(out_dims[2]),
            nn.GELU(),
        )
        self.down_32 = nn.Sequential(
            nn.Conv2d(in_dim, c32, kernel_size=2, stride=2),
            _gn1(c32),
            nn.Conv2d(c32, out_dims[3], kernel_size=1),
            _gn1(out_dims[3]),
            nn.GELU(),
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, in_dim, h, w)`` stride-16 map to ``{"res2": (B, c2, 4h, 4w), ...,
        "res5": (B, c5, h/2, w/2)}``."""
        return {
            "res2": self.down_4(x),
            "res3": self.down_8(x),
            "res4": self.down_16(x),
            "res5": self.down_32(x),
        }


class SamViTBackbone(nn.Module):
    """SAM ViT encoder + simple FPN: image to ``res2..res5``.

    Input: ``(B, 3, S, S)`` float, the normalised RGB image zero-padded bottom/right to
    ``S = config.img_size`` (the padded model frame). Output: dict of NCHW maps ``res2``
    ``(B, c2, S/4, S/4)``, ``res3`` (S/8), ``res4`` (S/16), ``res5`` (S/32) with channels
    ``config.fpn_channels``, same dtype and device as the input.
    """

    def __init__(self, config: SamViTConfig) -> None:
        super().__init__()
        self.config = config
        g = config.grid_size
        self.pos_embed = nn.Parameter(torch.zeros(1, g, g, config.embed_dim))
        self.patch_embed = PatchEmbed(
            patch_size=config.patch_size, in_chans=3, embed_dim=config.embed_dim
        )
        self.blocks = nn.ModuleList(
            ViTBlock(
                dim=config.embed_dim,
                num_heads=config.num_heads,
                mlp_ratio=config.mlp_ratio,
                window_size=0 if i in config.global_attn_indexes else config.window_size,
                grid_size=g,
                eps=config.layer_norm_eps,
            )
            for i in range(config.depth)
        )
        self.neck = SimpleFPN(in_dim=config.embed_dim, out_dims=config.fpn_channels)

    @property
    def out_channels(self) -> dict[str, int]:
        """Channels of each output map: ``{"res2": c2, "res3": c3, "res4": c4, "res5": c5}``."""
        return self.config.out_channels

    @property
    def out_strides(self) -> dict[str, int]:
        """Stride of each output map: ``{"res2": 4, "res3": 8, "res4": 16, "res5": 32}``."""
        return self.config.out_strides

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        size = self.config.img_size
        if image.ndim != 4 or tuple(image.shape[-2:]) != (size, size):
            raise ValueError(
                f"SAM ViT expects a (B, 3, {size}, {size}) padded image, got {tuple(image.shape)}"
            )
        x = self.patch_embed(image) + self.pos_embed  # (B, g, g, C)
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))  # neck takes (B, C, g, g)
