"""Frames, resize/pad rules, coordinates, preprocessing and the logit resize chain."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_seem.model.transforms import (
    PIXEL_MEAN,
    PIXEL_STD,
    ModelFrame,
    grid_xy,
    logits_to_image,
    make_frame,
    masks_to_model_frame,
    preprocess,
)

from .reference import load_npz

FIXTURES = [("focalt_v1_tiny", None), ("samvitb_v1_tiny", 128)]


# --- make_frame: resize and padding rules -------------------------------------------------


@pytest.mark.parametrize(
    ("image_hw", "kwargs", "resized", "padded"),
    [
        ((120, 150), {}, (120, 150), (128, 160)),  # Focal-T fixture
        ((128, 160), {}, (128, 160), (128, 160)),  # already divisible: no padding
        ((100, 120), {"fixed_size": 128}, (100, 120), (128, 128)),  # SAM fixture
        ((100, 120), {"fixed_size": (112, 128)}, (100, 120), (112, 128)),
        ((100, 120), {"size_divisibility": 0}, (100, 120), (100, 120)),
        ((480, 640), {"short_side": 800, "long_max": 1333}, (800, 1067), (800, 1088)),
        # long side capped: 500x2000 -> 800x3200 -> x(1333/3200) = 333.25 x 1333
        ((500, 2000), {"short_side": 800, "long_max": 1333}, (333, 1333), (352, 1344)),
        ((2000, 500), {"short_side": 800, "long_max": 1333}, (1333, 333), (1344, 352)),
        ((120, 150), {"short_side": 512}, (512, 640), (512, 640)),
        ((600, 800), {"long_side": 1024, "fixed_size": 1024}, (768, 1024), (1024, 1024)),
        ((300, 200), {"long_side": 1024, "fixed_size": 1024}, (1024, 683), (1024, 1024)),
        ((3000, 1500), {"long_max": 1000}, (1000, 500), (1024, 512)),
        ((300, 150), {"long_max": 1000}, (300, 150), (320, 160)),  # long_max never enlarges
    ],
)
def test_make_frame_rules(
    image_hw: tuple[int, int],
    kwargs: dict,
    resized: tuple[int, int],
    padded: tuple[int, int],
) -> None:
    frame = make_frame(image_hw, **kwargs)
    assert frame.image_hw == image_hw
    assert frame.resized_hw == resized
    assert frame.padded_hw == padded
    assert frame.resizes == (resized != image_hw)


def test_make_frame_rejects_bad_requests() -> None:
    with pytest.raises(ValueError, match="exceeds the fixed"):
        make_frame((200, 100), fixed_size=128)
    with pytest.raises(ValueError, match="exceeds the fixed"):
        make_frame((600, 800), short_side=800, fixed_size=1024)
    with pytest.raises(ValueError, match="not both"):
        make_frame((10, 10), short_side=8, long_side=8)
    with pytest.raises(ValueError):
        make_frame((0, 10))
    with pytest.raises(ValueError, match="does not fit"):
        ModelFrame(image_hw=(10, 10), resized_hw=(10, 10), padded_hw=(8, 16))


# --- coordinates --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        make_frame((120, 150)),
        make_frame((97, 203), short_side=512),
        make_frame((3000, 1500), long_side=1024, fixed_size=1024),
    ],
)
def test_coordinates_round_trip(frame: ModelFrame) -> None:
    gen = torch.Generator().manual_seed(0)
    rc = torch.rand(50, 2, generator=gen, dtype=torch.float64) * torch.tensor(
        frame.image_hw, dtype=torch.float64
    )
    back = frame.model_to_image(frame.image_to_model(rc))
    torch.testing.assert_close(back, rc, atol=1e-9, rtol=0)
    # the image extent (pixel edges) maps onto the resized extent
    edges = torch.tensor([[-0.5, -0.5], [frame.image_hw[0] - 0.5, frame.image_hw[1] - 0.5]])
    expected = torch.tensor([[-0.5, -0.5], [frame.resized_hw[0] - 0.5, frame.resized_hw[1] - 0.5]])
    torch.testing.assert_close(frame.image_to_model(edges), expected)


def test_coordinates_identity_without_resize_and_int_input() -> None:
    frame = make_frame((120, 150))
    rc = torch.tensor([[0, 0], [119, 149], [7, 3]])
    out = frame.image_to_model(rc)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, rc.float())


def test_coordinates_follow_the_image_resize() -> None:
    # an image whose value is its own row (col) coordinate: after the model's resize, the
    # value at a resized pixel must be the image coordinate that model_to_image reports
    frame = make_frame((40, 50), short_side=96)  # upsampling: bilinear is exact on ramps
    h, w = frame.image_hw
    rows = torch.arange(h, dtype=torch.float64)[:, None].expand(h, w)
    cols = torch.arange(w, dtype=torch.float64)[None, :].expand(h, w)
    ramp = torch.stack((rows, cols))[None]
    resized = F.interpolate(ramp, size=frame.resized_hw, mode="bilinear", align_corners=False)[0]
    rr, cc = torch.meshgrid(
        torch.arange(3, frame.resized_hw[0] - 3, dtype=torch.float64),
        torch.arange(3, frame.resized_hw[1] - 3, dtype=torch.float64),
        indexing="ij",
    )
    model_rc = torch.stack((rr.flatten(), cc.flatten()), dim=1)
    image_rc = frame.model_to_image(model_rc)
    got = resized[:, rr.long().flatten(), cc.long().flatten()].t()
    torch.testing.assert_close(got, image_rc, atol=1e-9, rtol=0)


def test_grid_xy_official_point_convention() -> None:
    # README 2.2: pixel (y, x) samples feature location
    # (x / W_pad * (w_f - 1), y / H_pad * (h_f - 1))
    frame = make_frame((120, 150))
    h_pad, w_pad = frame.padded_hw
    h_f, w_f = h_pad // 4, w_pad // 4
    ys = torch.arange(h_f, dtype=torch.float64)[:, None].expand(h_f, w_f)
    xs = torch.arange(w_f, dtype=torch.float64)[None, :].expand(h_f, w_f)
    feat = torch.stack((ys, xs))[None]  # (1, 2, h_f, w_f): channel 0 = row, 1 = col
    rc = torch.tensor([[0, 0], [10, 37], [119, 149], [127, 159]])
    grid = frame.grid_xy(rc)
    assert grid.shape == (4, 2)
    torch.testing.assert_close(grid, grid_xy(rc, frame.padded_hw))
    sampled = F.grid_sample(feat, grid[None, None].double(), align_corners=True)[0, :, 0].t()
    expected = rc.double() / torch.tensor([h_pad, w_pad]) * torch.tensor([h_f - 1, w_f - 1])
    torch.testing.assert_close(sampled, expected.double())


# --- preprocess ---------------------------------------------------------------------------


@pytest.mark.parametrize(("fixture", "fixed"), FIXTURES)
def test_preprocess_matches_fixture(fixture: str, fixed: int | None) -> None:
    ref = load_npz(fixture, "backbone_pixel_decoder")
    image = torch.from_numpy(ref["image"])
    frame = make_frame((image.shape[0], image.shape[1]), fixed_size=fixed)
    expected = torch.from_numpy(ref["input_normalized_padded"])
    np.testing.assert_array_equal(ref["pixel_mean"], np.array(PIXEL_MEAN, dtype=np.float32))
    np.testing.assert_array_equal(ref["pixel_std"], np.array(PIXEL_STD, dtype=np.float32))

    x = preprocess(
        image, frame, torch.from_numpy(ref["pixel_mean"]), torch.from_numpy(ref["pixel_std"])
    )
    assert x.shape == expected.shape and x.dtype == torch.float32
    torch.testing.assert_close(x, expected, atol=1e-6, rtol=0)
    # float BCHW input and the default constants give the same
    bchw = image.permute(2, 0, 1)[None].float()
    torch.testing.assert_close(preprocess(bchw, frame), expected, atol=1e-6, rtol=0)


def test_preprocess_resizes_then_pads_with_zero() -> None:
    gen = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (50, 70, 3), generator=gen, dtype=torch.uint8)
    frame = make_frame((50, 70), short_side=64)  # -> 64 x 90, padded 64 x 96
    x = preprocess(image, frame)
    assert x.shape == (1, 3, 64, 96)
    assert torch.all(x[..., 90:] == 0)
    # integer input is rounded back to integers after the resize, like a PIL uint8 resize
    raw = (
        x[..., :90] * torch.tensor(PIXEL_STD)[:, None, None]
        + torch.tensor(PIXEL_MEAN)[:, None, None]
    )
    torch.testing.assert_close(raw, raw.round(), atol=1e-3, rtol=0)
    assert preprocess(image, frame, dtype=torch.float64).dtype == torch.float64
    with pytest.raises(ValueError, match="frame image size"):
        preprocess(image, make_frame((51, 70)))


# --- prompt masks -------------------------------------------------------------------------


@pytest.mark.parametrize(("fixture", "fixed"), FIXTURES)
def test_masks_to_model_frame_matches_fixture(fixture: str, fixed: int | None) -> None:
    ref = load_npz(fixture, "interactive")
    stroke = torch.from_numpy(ref["stroke_A_imgsize"])
    frame = make_frame((stroke.shape[0], stroke.shape[1]), fixed_size=fixed)
    padded = masks_to_model_frame(stroke[None], frame)
    assert padded.dtype == torch.bool
    np.testing.assert_array_equal(padded.numpy(), ref["single_r1_pos_mask"][0].astype(bool))


def test_masks_to_model_frame_resizes_nearest() -> None:
    masks = torch.zeros(2, 4, 5, dtype=torch.bool)
    masks[0, 1, 2] = True
    masks[1, 3, 4] = True
    frame = make_frame((4, 5), short_side=8, size_divisibility=16)  # exact 2x: 8 x 10 -> 16 x 16
    out = masks_to_model_frame(masks, frame)
    assert out.shape == (2, 16, 16)
    expected = masks.repeat_interleave(2, 1).repeat_interleave(2, 2)
    assert torch.equal(out[:, :8, :10], expected)
    assert not out[:, 8:].any() and not out[:, :, 10:].any()
    # the resized pixel block sits where image_to_model puts the pixel centre
    centre = frame.image_to_model(torch.tensor([[1.0, 2.0]]))[0]
    assert out[0, int(centre[0].round()), int(centre[1].round())]


# --- logits back to the image -------------------------------------------------------------


@pytest.mark.parametrize(("fixture", "fixed"), FIXTURES)
def test_logits_to_image_matches_grounding_mask(fixture: str, fixed: int | None) -> None:
    ref = load_npz(fixture, "grounding")
    image_hw = (ref["image"].shape[0], ref["image"].shape[1])
    logits = torch.from_numpy(ref["pred_gmasks"][0])
    frame = make_frame(image_hw, fixed_size=fixed)
    assert frame.padded_hw == (4 * logits.shape[-2], 4 * logits.shape[-1])
    out_hw = (int(ref["output_height"]), int(ref["output_width"]))
    chosen = logits[torch.from_numpy(ref["matched_query"])]
    got = logits_to_image(chosen, frame, out_hw)
    expected = torch.from_numpy(ref["grounding_mask"])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # leading dims are kept
    assert logits_to_image(chosen[None], frame, out_hw).shape == (1, 3, *out_hw)
    # the cheap path approximates the official chain: same sign almost everywhere
    fast = logits_to_image(chosen, frame, out_hw, method="bilinear")
    assert fast.shape == expected.shape
    assert ((fast > 0) != (expected > 0)).float().mean() < 0.02


def test_logits_to_image_bilinear_path_is_exact_bilinear_upsampling() -> None:
    # no resize, no padding and output = padded size: the cheap path is plain bilinear
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 32, 40, generator=gen)
    frame = make_frame((128, 160))
    fast = logits_to_image(logits, frame, method="bilinear")
    plain = F.interpolate(logits[None], size=(128, 160), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=0)


def test_logits_to_image_crops_padding_and_defaults_to_image_size() -> None:
    # logits that are positive only over the padding must vanish after the crop
    frame = make_frame((100, 120), fixed_size=128)
    logits = torch.full((1, 32, 32), -10.0)
    logits[:, 26:, :] = 10.0  # rows >= 104 of the padded frame, beyond the image
    for method in ("official", "bilinear"):
        out = logits_to_image(logits, frame, method=method)
        assert out.shape == (1, 100, 120)
        assert (out[:, :95] < 0).all()
    with pytest.raises(ValueError, match="unknown method"):
        logits_to_image(logits, frame, method="nearest")  # type: ignore[arg-type]
