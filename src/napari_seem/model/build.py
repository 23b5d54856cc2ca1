"""Model variants as plain configs and one :func:`build_seem`.

Every variant is a function returning a frozen :class:`SeemConfig`; :data:`VARIANTS` is a
plain dict of them (no registry, nothing happens at import time).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from napari_seem.model.checkpoint import LoadReport, load_checkpoint
from napari_seem.model.decoder import SeemDecoder, SeemDecoderConfig
from napari_seem.model.efficientnet_lite import (
    EFFICIENTNET_LITE0,
    EfficientNetLite,
    EfficientNetLiteConfig,
    load_efficientnet_lite_weights,
)
from napari_seem.model.focalnet import FOCAL_L, FOCAL_T, FocalNet, FocalNetConfig
from napari_seem.model.lite_weights import load_lite_weights
from napari_seem.model.minilm_text import MiniLMConfig, MiniLMTextEncoder
from napari_seem.model.pixel_decoder_deform import DeformPixelDecoder, DeformPixelDecoderConfig
from napari_seem.model.pixel_decoder_fpn import FPNPixelDecoder, FPNPixelDecoderConfig
from napari_seem.model.sam_vit import SAM_VIT_B, SAM_VIT_L, SamViTBackbone, SamViTConfig
from napari_seem.model.seem import SeemModel
from napari_seem.model.text_encoder import LanguageEncoder, TextEncoderConfig
from napari_seem.model.transforms import PIXEL_MEAN, PIXEL_STD

__all__ = ["VARIANTS", "SeemConfig", "build_seem", "resolve_device"]


@dataclass(frozen=True, kw_only=True)
class SeemConfig:
    """Everything needed to build one SEEM variant.

    Attributes:
        name: variant name (``seem-focalt-v1``).
        backbone, pixel_decoder, decoder, text: part configs.
        size_divisibility: the padded input is a multiple of this (Focal backbones).
        fixed_size: SAM ViT backbones take exactly this square input (their image size).
        short_side: default resize of the shorter image side before encoding (the official
            demo uses 512; tiles of large images are encoded at this size).
        prompt_window: decode visual prompts in a window of this side around them (model
            pixels; seem-lite: its training crop); None decodes against the whole image.
        native_scale: tiles of large images (encoded "at native resolution") are resized by
            this factor (seem-lite: 2.25, the mean scale of its training images, e.g. a
            450-px BBBC007 image at short side 1024).
    """

    name: str
    backbone: FocalNetConfig | SamViTConfig | EfficientNetLiteConfig
    pixel_decoder: FPNPixelDecoderConfig | DeformPixelDecoderConfig
    decoder: SeemDecoderConfig
    text: TextEncoderConfig | MiniLMConfig
    size_divisibility: int = 32
    fixed_size: int | None = None
    short_side: int = 512
    prompt_window: int | None = None
    native_scale: float | None = None
    pixel_mean: tuple[float, float, float] = PIXEL_MEAN
    pixel_std: tuple[float, float, float] = PIXEL_STD


def _full_size(
    name: str,
    backbone: FocalNetConfig | SamViTConfig,
    pixel_decoder: FPNPixelDecoderConfig | DeformPixelDecoderConfig,
) -> SeemConfig:
    """An official variant: its backbone and pixel decoder, the full-size decoder and text."""
    return SeemConfig(
        name=name,
        backbone=backbone,
        pixel_decoder=pixel_decoder,
        decoder=SeemDecoderConfig(),
        text=TextEncoderConfig(),
    )


def _focal(name: str, backbone: FocalNetConfig) -> SeemConfig:
    return _full_size(name, backbone, FPNPixelDecoderConfig(in_channels=backbone.channels))


def _sam(name: str, backbone: SamViTConfig) -> SeemConfig:
    config = _full_size(name, backbone, DeformPixelDecoderConfig(in_channels=backbone.fpn_channels))
    return replace(config, fixed_size=backbone.img_size, short_side=backbone.img_size)


def _tiny_decoder_and_text() -> tuple[SeemDecoderConfig, TextEncoderConfig]:
    # the reduced sizes of the official parity fixtures (reference README section 2.1)
    decoder = SeemDecoderConfig(
        hidden_dim=64, num_heads=4, dim_feedforward=128, num_layers=3, dim_proj=64, mask_dim=64
    )
    return decoder, TextEncoderConfig(width=64, heads=4, layers=2, dim_proj=64)


def _tiny_focal() -> SeemConfig:
    backbone = FocalNetConfig(variant="focal_dw", embed_dim=32, depths=(1, 1, 2, 1), focal_level=3)
    decoder, text = _tiny_decoder_and_text()
    return SeemConfig(
        name="seem-tiny-focal",
        backbone=backbone,
        pixel_decoder=FPNPixelDecoderConfig(
            in_channels=backbone.channels,
            conv_dim=64,
            mask_dim=64,
            num_encoder_layers=2,
            num_heads=4,
            dim_feedforward=128,
        ),
        decoder=decoder,
        text=text,
        short_side=256,
    )


def _tiny_sam() -> SeemConfig:
    backbone = SamViTConfig(
        img_size=128,
        embed_dim=64,
        depth=2,
        num_heads=4,
        window_size=5,
        global_attn_indexes=(1,),
        fpn_channels=(32, 64, 128, 256),
    )
    decoder, text = _tiny_decoder_and_text()
    return SeemConfig(
        name="seem-tiny-sam",
        backbone=backbone,
        pixel_decoder=DeformPixelDecoderConfig(
            in_channels=backbone.fpn_channels, conv_dim=64, mask_dim=64, num_heads=4, num_layers=2
        ),
        decoder=decoder,
        text=text,
        fixed_size=128,
        short_side=128,
    )


# EfficientNet-Lite's TensorFlow preprocessing: (x - 127) / 128 on the 0..255 scale
LITE_PIXEL_MEAN = (127.0, 127.0, 127.0)
LITE_PIXEL_STD = (128.0, 128.0, 128.0)


def _lite() -> SeemConfig:
    """``seem-lite``: the official decoder, sampler and FPN pixel decoder at width 128 on
    EfficientNet-Lite0 (ImageNet) and all-MiniLM-L6-v2 (both frozen, from their packages)."""
    # periodic position channels (16 per level) let prompt tokens tell neighbours apart
    backbone = replace(EFFICIENTNET_LITE0, position_periods=(16.0, 32.0, 64.0, 128.0))
    width = 128
    return SeemConfig(
        name="seem-lite",
        backbone=backbone,
        pixel_decoder=FPNPixelDecoderConfig(
            in_channels=backbone.channels,
            conv_dim=width,
            mask_dim=width,
            num_encoder_layers=2,
            num_heads=4,
            dim_feedforward=4 * width,
        ),
        decoder=SeemDecoderConfig(
            hidden_dim=width,
            num_heads=4,
            dim_feedforward=4 * width,
            num_layers=6,
            dim_proj=width,
            mask_dim=width,
        ),
        text=MiniLMConfig(dim_proj=width),
        # nuclei of a typical 0.3-1 um/px fluorescence image are 10-20 px across; at 1024
        # they cover enough stride-4 cells for a sharp boundary
        short_side=1024,
        prompt_window=256,  # the training crop
        native_scale=2.25,
        pixel_mean=LITE_PIXEL_MEAN,
        pixel_std=LITE_PIXEL_STD,
    )


VARIANTS: dict[str, Callable[[], SeemConfig]] = {
    "seem-focalt-v1": lambda: _focal("seem-focalt-v1", FOCAL_T),
    "seem-focall-v1": lambda: _focal("seem-focall-v1", FOCAL_L),
    "seem-samvitb-v1": lambda: _sam("seem-samvitb-v1", SAM_VIT_B),
    "seem-samvitl-v1": lambda: _sam("seem-samvitl-v1", SAM_VIT_L),
    # the embedded default: small, trained by this project, weights inside the package
    "seem-lite": _lite,
    # reduced random configurations: tests, demos and benchmarks of the plumbing only
    "seem-tiny-focal": _tiny_focal,
    "seem-tiny-sam": _tiny_sam,
}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> CUDA if available, else Apple MPS if available, else CPU."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def get_config(variant: str | SeemConfig) -> SeemConfig:
    """The config of a variant name (or the config itself)."""
    if isinstance(variant, SeemConfig):
        return variant
    try:
        return VARIANTS[variant]()
    except KeyError:
        raise ValueError(
            f"unknown model variant {variant!r}; known variants: {', '.join(VARIANTS)}"
        ) from None


def build_seem(
    variant: str | SeemConfig,
    *,
    checkpoint: str | Path | Mapping[str, torch.Tensor] | None = None,
    device: str | torch.device | None = "cpu",
    seed: int | None = 0,
    shipped_weights: bool = True,
) -> SeemModel:
    """Build a SEEM model in eval mode.

    Args:
        variant: a name from :data:`VARIANTS` or a config.
        checkpoint: weights with official key names (file path or state dict), loaded
            strictly (:func:`~napari_seem.model.checkpoint.load_checkpoint`). Without one, the
            weights are random (seeded by ``seed``): fine for tests and speed benchmarks only.
            ``seem-lite`` is different: its frozen backbone and text encoder always load
            from their packages, and ``checkpoint`` holds only the trained parts; without
            one the weights shipped inside napari-seem are used (strictly; no download).
        device: ``"cpu"``, ``"cuda"``, ``"mps"``, ``"auto"``, or a torch device.
        seed: seed for the random initialisation (None: do not touch the global RNG).
        shipped_weights: ``seem-lite`` without ``checkpoint``: load the weights shipped in
            the package (True) or keep the trained parts random (False: training from
            scratch). Ignored by the other variants.
    """
    config = get_config(variant)
    target = resolve_device(device)
    if target.type == "meta":  # shapes only: key-list checks and size estimates
        if isinstance(config.text, MiniLMConfig):
            config = replace(config, text=replace(config.text, pretrained=False))
        with torch.device("meta"):
            return _assemble(config)
    if seed is not None:
        torch.manual_seed(seed)
    model = _assemble(config)
    if isinstance(config.backbone, EfficientNetLiteConfig):
        assert isinstance(model.backbone, EfficientNetLite)
        load_efficientnet_lite_weights(model.backbone)
        model.load_report = load_lite_weights(model, checkpoint, shipped=shipped_weights)
    elif checkpoint is not None:
        report: LoadReport = load_checkpoint(model, checkpoint, expected_variant=config.name)
        model.load_report = report
    return model.to(target)


def _assemble(config: SeemConfig) -> SeemModel:
    backbone: torch.nn.Module
    pixel_decoder: torch.nn.Module
    text_encoder: LanguageEncoder | MiniLMTextEncoder
    if isinstance(config.backbone, FocalNetConfig):
        backbone = FocalNet(config.backbone)
    elif isinstance(config.backbone, EfficientNetLiteConfig):
        backbone = EfficientNetLite(config.backbone)
    else:
        backbone = SamViTBackbone(config.backbone)
    if isinstance(config.text, MiniLMConfig):
        text_encoder = MiniLMTextEncoder(config.text)
    else:
        text_encoder = LanguageEncoder(config.text)
    if isinstance(config.pixel_decoder, FPNPixelDecoderConfig):
        pixel_decoder = FPNPixelDecoder(config.pixel_decoder)
    else:
        pixel_decoder = DeformPixelDecoder(config.pixel_decoder)
    model = SeemModel(
        name=config.name,
        backbone=backbone,
        pixel_decoder=pixel_decoder,
        decoder=SeemDecoder(config.decoder),
        text_encoder=text_encoder,
        pixel_mean=config.pixel_mean,
        pixel_std=config.pixel_std,
        size_divisibility=config.size_divisibility,
        fixed_size=config.fixed_size,
        prompt_window=config.prompt_window,
        native_scale=config.native_scale,
    )
    return model.eval()
