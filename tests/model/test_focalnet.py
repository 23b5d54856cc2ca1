"""FocalNet backbones: parity with the official Focal-T tiny fixture, full-size state-dict
layout of Focal-T and Focal-L, and shapes on inputs that are not multiples of 32."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_seem.model.focalnet import FOCAL_L, FOCAL_T, FocalNet, FocalNetConfig
from tests.model import reference as ref

FIXTURE = "focalt_v1_tiny"


def tiny_focal_config() -> FocalNetConfig:
    """The reduced Focal-T backbone of the fixture, read from its ``config.json``."""
    with open(ref.reference_dir() / FIXTURE / "config.json") as f:
        cfg = json.load(f)["effective"]["backbone"]
    assert cfg["name"] == "focal_dw"
    assert len(set(cfg["FOCAL_LEVELS"])) == 1 and len(set(cfg["FOCAL_WINDOWS"])) == 1
    assert cfg["USE_POSTLN"] and not cfg["USE_POSTLN_IN_MODULATION"] and cfg["PATCH_NORM"]
    return FocalNetConfig(
        variant="focal_dw",
        embed_dim=cfg["EMBED_DIM"],
        depths=tuple(cfg["DEPTHS"]),
        focal_level=cfg["FOCAL_LEVELS"][0],
        focal_window=cfg["FOCAL_WINDOWS"][0],
        mlp_ratio=cfg["MLP_RATIO"],
        use_layerscale=cfg["USE_LAYERSCALE"],
        scaling_modulator=cfg["SCALING_MODULATOR"],
    )


def fixture_input(data: dict[str, np.ndarray], prefix: str) -> torch.Tensor:
    """``(1, 3, H_pad, W_pad)`` model input for ``{prefix}image``: normalised, then
    zero-padded bottom/right to a multiple of 32 (README §2.2). The fixture stores it for
    the target image only; the referring image's is rebuilt the same way."""
    if not prefix:
        return torch.from_numpy(data["input_normalized_padded"])
    return normalise_and_pad(data[f"{prefix}image"], data["pixel_mean"], data["pixel_std"])


def normalise_and_pad(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """HWC uint8 RGB -> ``(1, 3, H_pad, W_pad)`` float32, padding after normalisation."""
    x = torch.from_numpy(image).permute(2, 0, 1).float()
    x = (x - torch.from_numpy(mean)[:, None, None]) / torch.from_numpy(std)[:, None, None]
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % 32, 0, -h % 32))[None]


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return ref.load_npz(FIXTURE, "backbone_pixel_decoder")


@pytest.fixture(scope="module")
def backbone() -> FocalNet:
    model = FocalNet(tiny_focal_config()).eval()
    model.load_state_dict(ref.sub_state_dict(ref.load_weights(FIXTURE), "backbone."), strict=True)
    return model


def test_input_convention_reproduces_the_fixture(data: dict[str, np.ndarray]) -> None:
    rebuilt = normalise_and_pad(data["image"], data["pixel_mean"], data["pixel_std"])
    np.testing.assert_array_equal(rebuilt.numpy(), data["input_normalized_padded"])


@pytest.mark.parametrize("prefix", ["", "ref_"])
def test_tiny_parity(backbone: FocalNet, data: dict[str, np.ndarray], prefix: str) -> None:
    with torch.no_grad():
        out = backbone(fixture_input(data, prefix))
    assert list(out) == list(ref.LEVELS)
    for name in ref.LEVELS:
        ref.assert_close(out[name], data[f"{prefix}{name}"], f"{prefix}{name}")


@pytest.mark.parametrize(
    ("config", "key_file", "channels"),
    [
        (FOCAL_T, "seem_focalt_v1", (96, 192, 384, 768)),
        (FOCAL_L, "seem_focall_v1", (192, 384, 768, 1536)),
    ],
)
def test_full_size_state_dict_layout(
    config: FocalNetConfig, key_file: str, channels: tuple[int, ...]
) -> None:
    with torch.device("meta"):
        model = FocalNet(config)
    ref.assert_official_layout(model, key_file, "backbone.")
    assert model.out_channels == dict(zip(ref.LEVELS, channels, strict=True))
    assert model.out_strides == dict(zip(ref.LEVELS, (4, 8, 16, 32), strict=True))


@pytest.mark.parametrize("variant", ["focal_dw", "focal"])
def test_unaligned_input_is_padded_bottom_right(variant: str) -> None:
    torch.manual_seed(0)
    config = FocalNetConfig(
        variant=variant,  # type: ignore[arg-type]
        embed_dim=8,
        depths=(1, 1, 1, 1),
        focal_level=2,
    )
    model = FocalNet(config).eval()
    x = torch.randn(2, 3, 70, 90)  # neither a multiple of 4 nor of 32
    with torch.no_grad():
        out = model(x)
        # explicit bottom/right zero padding to a multiple of 4 changes nothing
        padded = model(F.pad(x, (0, 2, 0, 2)))
    sizes = {"res2": (18, 23), "res3": (9, 12), "res4": (5, 6), "res5": (3, 3)}
    for name, (h, w) in sizes.items():
        assert out[name].shape == (2, model.out_channels[name], h, w)
        assert out[name].is_contiguous()
        torch.testing.assert_close(out[name], padded[name], rtol=0, atol=1e-6)


def test_runs_in_float64() -> None:
    model = FocalNet(
        FocalNetConfig(variant="focal", embed_dim=8, depths=(1, 1, 1, 1), focal_level=4)
    ).double()
    out = model(torch.zeros(1, 3, 64, 64, dtype=torch.float64))
    assert all(v.dtype == torch.float64 for v in out.values())
    assert out["res5"].shape == (1, 64, 2, 2)


def test_rejects_non_rgb_input() -> None:
    model = FocalNet(
        FocalNetConfig(variant="focal_dw", embed_dim=8, depths=(1, 1, 1, 1), focal_level=1)
    )
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.zeros(1, 1, 32, 32))
