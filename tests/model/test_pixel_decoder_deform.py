"""Deformable pixel decoder: parity with the official tiny fixture, sampling convention and
full-size state-dict layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_seem.model.pixel_decoder_deform import (
    DeformPixelDecoder,
    DeformPixelDecoderConfig,
    deformable_sample,
)
from napari_seem.model.sam_vit import SAM_VIT_B, SAM_VIT_L, SamViTBackbone, SamViTConfig
from tests.model import reference as ref
from tests.model.test_sam_vit import TINY

FIXTURE = "samvitb_v1_tiny"

# README §2.1: transformer_encoder_deform with d=64, 4 heads, 4 points, FFN 1024, 2 layers.
TINY_DECODER = DeformPixelDecoderConfig(
    in_channels=TINY.fpn_channels, conv_dim=64, mask_dim=64, num_heads=4, num_layers=2
)


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    return ref.load_weights(FIXTURE)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def decoder(weights: dict[str, torch.Tensor]) -> DeformPixelDecoder:
    model = DeformPixelDecoder(TINY_DECODER).eval()
    model.load_state_dict(ref.sub_state_dict(weights, "sem_seg_head.pixel_decoder."), strict=True)
    return model


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return ref.load_npz(FIXTURE, "backbone_pixel_decoder")


@pytest.mark.parametrize("prefix", ["", "ref_"])
def test_tiny_parity_from_fixture_features(
    decoder: DeformPixelDecoder, data: dict[str, np.ndarray], prefix: str
) -> None:
    out = ref.decode_fixture_features(decoder, data, prefix)
    ref.assert_pixel_features(out, data, prefix)
    assert out.transformer_encoder_features is out.multi_scale_features[0]
    if not prefix:  # the fixture stores it for the target image only
        expected = data["transformer_encoder_features"]
        ref.assert_close(out.transformer_encoder_features, expected, "encoder features")


def test_tiny_parity_image_to_mask_features(
    decoder: DeformPixelDecoder, weights: dict[str, torch.Tensor], data: dict[str, np.ndarray]
) -> None:
    backbone = SamViTBackbone(TINY).eval()
    backbone.load_state_dict(ref.sub_state_dict(weights, "backbone."), strict=True)
    with torch.no_grad():
        out = decoder(backbone(torch.from_numpy(data["input_normalized_padded"])))
    ref.assert_pixel_features(out, data, "")


def test_sampling_at_pixel_centres_reads_pixels() -> None:
    # Two levels of 3x4 and 2x2, one head, two points: point 0 at a pixel centre with all
    # the weight, point 1 outside the map (reads zero padding).
    torch.manual_seed(0)
    shapes = [(3, 4), (2, 2)]
    value = torch.randn(1, 3 * 4 + 2 * 2, 1, 5)  # (B, S, M, Dh)
    row, col = 1, 2
    centre = torch.tensor([(col + 0.5) / 4, (row + 0.5) / 3])
    outside = torch.tensor([-1.0, -1.0])
    locations = torch.stack([centre, outside]).expand(1, 1, 1, 2, 2, 2)  # (B, Q, M, L, P, 2)
    weights = torch.tensor([[1.0, 0.5], [0.0, 0.0]]).expand(1, 1, 1, 2, 2)
    out = deformable_sample(value, shapes, locations, weights)
    assert out.shape == (1, 1, 5)
    torch.testing.assert_close(out[0, 0], value[0, row * 4 + col, 0])


@pytest.mark.parametrize(
    ("backbone", "key_file"), [(SAM_VIT_B, "seem_samvitb_v1"), (SAM_VIT_L, "seem_samvitl_v1")]
)
def test_full_size_state_dict_layout(backbone: SamViTConfig, key_file: str) -> None:
    with torch.device("meta"):
        model = DeformPixelDecoder(DeformPixelDecoderConfig(in_channels=backbone.fpn_channels))
    ref.assert_official_layout(model, key_file, "sem_seg_head.pixel_decoder.")
