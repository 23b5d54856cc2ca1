"""FPN pixel decoder (Focal variants): parity with the official Focal-T tiny fixture,
full-size state-dict layout and shapes on inputs that are not multiples of 32."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_seem.model.focalnet import FOCAL_L, FOCAL_T, FocalNet, FocalNetConfig
from napari_seem.model.pixel_decoder_fpn import (
    FPN_FOCAL_L,
    FPN_FOCAL_T,
    FPNPixelDecoder,
    FPNPixelDecoderConfig,
    PixelDecoderOutput,
)
from tests.model import reference as ref
from tests.model.test_focalnet import (
    FIXTURE,
    fixture_input,
    tiny_focal_config,
)

PREFIX = "sem_seg_head.pixel_decoder."


def tiny_decoder_config() -> FPNPixelDecoderConfig:
    """The fixture's reduced pixel decoder, read from its ``config.json``."""
    with open(ref.reference_dir() / FIXTURE / "config.json") as f:
        cfg = json.load(f)["effective"]["pixel_decoder"]
    assert cfg["name"] == "transformer_encoder_fpn" and not cfg["pre_norm"]
    return FPNPixelDecoderConfig(
        in_channels=tiny_focal_config().channels,
        conv_dim=cfg["CONVS_DIM"],
        mask_dim=cfg["MASK_DIM"],
        num_encoder_layers=cfg["TRANSFORMER_ENC_LAYERS"],
        num_heads=cfg["nheads (=DECODER.NHEADS)"],
        dim_feedforward=cfg["dim_feedforward (=DECODER.DIM_FEEDFORWARD)"],
    )


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    return ref.load_weights(FIXTURE)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def decoder(weights: dict[str, torch.Tensor]) -> FPNPixelDecoder:
    model = FPNPixelDecoder(tiny_decoder_config()).eval()
    model.load_state_dict(ref.sub_state_dict(weights, PREFIX), strict=True)
    return model


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return ref.load_npz(FIXTURE, "backbone_pixel_decoder")


def assert_matches_fixture(
    out: PixelDecoderOutput, data: dict[str, np.ndarray], prefix: str
) -> None:
    assert len(out.multi_scale_features) == 3
    ref.assert_pixel_features(out, data, prefix)
    if f"{prefix}transformer_encoder_features" in data:  # stored for the target image only
        expected = data[f"{prefix}transformer_encoder_features"]
        ref.assert_close(out.transformer_encoder_features, expected, "encoder features")


@pytest.mark.parametrize("prefix", ["", "ref_"])
def test_tiny_parity_from_fixture_features(
    decoder: FPNPixelDecoder, data: dict[str, np.ndarray], prefix: str
) -> None:
    out = ref.decode_fixture_features(decoder, data, prefix)
    assert_matches_fixture(out, data, prefix)


@pytest.mark.parametrize("prefix", ["", "ref_"])
def test_tiny_parity_image_to_pixel_features(
    decoder: FPNPixelDecoder,
    weights: dict[str, torch.Tensor],
    data: dict[str, np.ndarray],
    prefix: str,
) -> None:
    backbone = FocalNet(tiny_focal_config()).eval()
    backbone.load_state_dict(ref.sub_state_dict(weights, "backbone."), strict=True)
    with torch.no_grad():
        out = decoder(backbone(fixture_input(data, prefix)))
    assert_matches_fixture(out, data, prefix)


@pytest.mark.parametrize(
    ("config", "key_file"), [(FPN_FOCAL_T, "seem_focalt_v1"), (FPN_FOCAL_L, "seem_focall_v1")]
)
def test_full_size_state_dict_layout(config: FPNPixelDecoderConfig, key_file: str) -> None:
    with torch.device("meta"):
        model = FPNPixelDecoder(config)
    ref.assert_official_layout(model, key_file, PREFIX)


@pytest.mark.parametrize(
    ("backbone_config", "decoder_config"), [(FOCAL_T, FPN_FOCAL_T), (FOCAL_L, FPN_FOCAL_L)]
)
def test_full_size_configs_fit_together(
    backbone_config: FocalNetConfig, decoder_config: FPNPixelDecoderConfig
) -> None:
    assert decoder_config.in_channels == backbone_config.channels
    assert (decoder_config.conv_dim, decoder_config.mask_dim) == (512, 512)
    assert decoder_config.num_encoder_layers == 6 and decoder_config.num_heads == 8
    assert decoder_config.dim_feedforward == 2048


def test_unaligned_input_shapes() -> None:
    torch.manual_seed(0)
    backbone = FocalNet(
        FocalNetConfig(variant="focal_dw", embed_dim=8, depths=(1, 1, 1, 1), focal_level=2)
    ).eval()
    decoder = FPNPixelDecoder(
        FPNPixelDecoderConfig(
            in_channels=backbone.config.channels,
            conv_dim=32,
            mask_dim=16,
            num_encoder_layers=1,
            num_heads=2,
            dim_feedforward=48,
        )
    ).eval()
    with torch.no_grad():
        out = decoder.forward_features(backbone(torch.randn(2, 3, 72, 100)))  # not x32
    assert out.mask_features.shape == (2, 16, 18, 25)
    assert out.transformer_encoder_features.shape == (2, 32, 3, 4)
    shapes = [tuple(level.shape) for level in out.multi_scale_features]
    assert shapes == [(2, 32, 3, 4), (2, 32, 5, 7), (2, 32, 9, 13)]
    assert all(torch.isfinite(t).all() for t in (out.mask_features, *out.multi_scale_features))
