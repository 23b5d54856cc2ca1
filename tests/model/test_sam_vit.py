"""SAM ViT backbone: parity with the official tiny fixture and full-size state-dict layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_seem.model.build import get_config
from napari_seem.model.sam_vit import SAM_VIT_B, SAM_VIT_L, SamViTBackbone, SamViTConfig
from tests.model import reference as ref

FIXTURE = "samvitb_v1_tiny"

# README §2.1: the reduced ImageEncoderViT / SimpleFPN of the SAM-ViT-B fixture, which is
# the backbone of the "seem-tiny-sam" variant.
_tiny = get_config("seem-tiny-sam").backbone
assert isinstance(_tiny, SamViTConfig)
TINY: SamViTConfig = _tiny


def normalized_padded(data: dict[str, np.ndarray], image_key: str, size: int) -> torch.Tensor:
    """HWC uint8 image -> ``(1, 3, size, size)``: normalise, then zero-pad bottom/right."""
    x = torch.from_numpy(data[image_key]).permute(2, 0, 1).float()
    mean = torch.from_numpy(data["pixel_mean"])[:, None, None]
    std = torch.from_numpy(data["pixel_std"])[:, None, None]
    x = (x - mean) / std
    out = torch.zeros(1, 3, size, size)
    out[0, :, : x.shape[1], : x.shape[2]] = x
    return out


@pytest.fixture(scope="module")
def tiny_backbone() -> SamViTBackbone:
    model = SamViTBackbone(TINY).eval()
    model.load_state_dict(ref.sub_state_dict(ref.load_weights(FIXTURE), "backbone."), strict=True)
    return model


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return ref.load_npz(FIXTURE, "backbone_pixel_decoder")


def test_input_convention_matches_fixture(data: dict[str, np.ndarray]) -> None:
    expected = data["input_normalized_padded"]
    np.testing.assert_allclose(normalized_padded(data, "image", 128).numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("prefix", ["", "ref_"])
def test_tiny_parity(
    tiny_backbone: SamViTBackbone, data: dict[str, np.ndarray], prefix: str
) -> None:
    image = normalized_padded(data, f"{prefix}image", TINY.img_size)
    with torch.no_grad():
        out = tiny_backbone(image)
    assert list(out) == list(ref.LEVELS)
    for name in ref.LEVELS:
        ref.assert_close(out[name], data[f"{prefix}{name}"], f"{prefix}{name}")


def test_shapes_channels_and_strides() -> None:
    model = SamViTBackbone(TINY).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 128, 128))
    for name in ref.LEVELS:
        stride = model.out_strides[name]
        assert out[name].shape == (2, model.out_channels[name], 128 // stride, 128 // stride)
    assert model.out_channels == {"res2": 32, "res3": 64, "res4": 128, "res5": 256}


def test_rejects_other_input_sizes() -> None:
    model = SamViTBackbone(TINY)
    with pytest.raises(ValueError, match="128"):
        model(torch.zeros(1, 3, 96, 128))


@pytest.mark.parametrize(
    ("config", "key_file"), [(SAM_VIT_B, "seem_samvitb_v1"), (SAM_VIT_L, "seem_samvitl_v1")]
)
def test_full_size_state_dict_layout(config: SamViTConfig, key_file: str) -> None:
    with torch.device("meta"):
        model = SamViTBackbone(config)
    ref.assert_official_layout(model, key_file, "backbone.")
    assert model.out_channels == {"res2": 128, "res3": 256, "res4": 512, "res5": 1024}
