"""The visual sampler against RULE_POINTS and the official reference fixtures."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from napari_seem.model.prompt_encoder import (
    PromptPoints,
    VisualPromptTokens,
    encode_visual_prompts,
    sample_prompt_points,
)
from tests.model.reference import load_npz, load_weights

ATOL = 1e-5
PREFIX = "sem_seg_head.predictor."
FIXTURES = ("focalt_v1_tiny", "samvitb_v1_tiny")


# --- sample_prompt_points ------------------------------------------------------------------


def test_points_are_raster_order_prompt_major_and_normalised() -> None:
    masks = torch.zeros(2, 4, 8, dtype=torch.bool)
    masks[1, 0, 3] = True
    masks[0, 2, 1] = True
    masks[0, 1, 5] = True
    masks[1, 3, 0] = True

    points = sample_prompt_points(masks)

    assert points.prompt_index.tolist() == [0, 0, 1, 1]
    assert points.prompt_index.dtype == torch.long
    assert points.yx.dtype == torch.float32
    expected = [[1 / 4, 5 / 8], [2 / 4, 1 / 8], [0 / 4, 3 / 8], [3 / 4, 0 / 8]]
    torch.testing.assert_close(points.yx, torch.tensor(expected), rtol=0, atol=0)


def test_subsampling_takes_floor_k_n_over_max_across_all_prompts() -> None:
    # Prompt 0 has 3 pixels, prompt 1 has 7: the cap of 4 applies to all 10 together,
    # as the official draw works on the whole (P, H, W) stack of one batch element.
    masks = torch.zeros(2, 1, 10, dtype=torch.bool)
    masks[0, 0, :3] = True
    masks[1, 0, 3:] = True

    points = sample_prompt_points(masks, max_points=4)

    # floor(k * 10 / 4) for k = 0..3 -> list positions 0, 2, 5, 7.
    assert points.prompt_index.tolist() == [0, 0, 1, 1]
    torch.testing.assert_close(points.yx[:, 1], torch.tensor([0.0, 2.0, 5.0, 7.0]) / 10)


def test_at_most_max_points_keeps_every_pixel() -> None:
    masks = torch.ones(1, 2, 3, dtype=torch.uint8)
    assert sample_prompt_points(masks, max_points=6).yx.shape == (6, 2)
    assert sample_prompt_points(masks, max_points=5).yx.shape == (5, 2)


def test_empty_masks_give_no_points() -> None:
    points = sample_prompt_points(torch.zeros(3, 5, 5, dtype=torch.bool))
    assert points.prompt_index.shape == (0,)
    assert points.yx.shape == (0, 2)


def test_bad_mask_rank_is_rejected() -> None:
    with pytest.raises(ValueError, match="P, H_pad, W_pad"):
        sample_prompt_points(torch.zeros(5, 5, dtype=torch.bool))


def test_big_box_is_subsampled_by_rule_points() -> None:
    big = load_npz("focalt_v1_tiny", "interactive")["big_r1_pos_mask"][0]  # (1, H, W)
    pixels = np.argwhere(big)  # raster order, (N, 3)
    assert len(pixels) == 1225

    points = sample_prompt_points(torch.from_numpy(big))

    keep = np.arange(512) * len(pixels) // 512
    expected = pixels[keep][:, 1:] / np.array(big.shape[1:])
    assert points.yx.shape == (512, 2)
    np.testing.assert_allclose(points.yx.numpy(), expected, rtol=0, atol=1e-7)


# --- parity with the official fixtures -----------------------------------------------------


def _params(weights: dict[str, Any]) -> dict[str, Any]:
    return {
        "level_embed": weights[PREFIX + "level_embed.weight"],
        "mask_spatial_embed": [weights[PREFIX + f"mask_sptial_embed.{i}"] for i in range(3)],
        "pn_indicator": weights[PREFIX + "pn_indicator.weight"],
    }


def _load_fixture(name: str) -> dict[str, Any]:
    feats = load_npz(name, "backbone_pixel_decoder")
    return {
        "name": name,
        "params": _params(load_weights(name)),
        "interactive": load_npz(name, "interactive"),
        "referring": load_npz(name, "referring_image"),
        "features": [torch.from_numpy(feats[f"multi_scale_features_{i}"]) for i in range(3)],
        "mask_features": torch.from_numpy(feats["mask_features"]),
        "ref_features": [
            torch.from_numpy(feats[f"ref_multi_scale_features_{i}"]) for i in range(3)
        ],
        "ref_mask_features": torch.from_numpy(feats["ref_mask_features"]),
    }


@pytest.fixture(scope="module", params=FIXTURES)
def fixture(request: pytest.FixtureRequest) -> dict[str, Any]:
    return _load_fixture(request.param)


@pytest.fixture(scope="module")
def focalt() -> dict[str, Any]:
    return _load_fixture("focalt_v1_tiny")


def _encode_case(fx: dict[str, Any], case: str) -> VisualPromptTokens:
    data = fx["interactive"]
    return encode_visual_prompts(
        torch.from_numpy(data[f"{case}_pos_mask"]).bool(),  # (1, P, H_pad, W_pad)
        torch.from_numpy(data[f"{case}_neg_mask"]).bool(),
        fx["features"],
        fx["mask_features"],
        **fx["params"],
    )


def _cases(data: dict[str, np.ndarray], suffix: str) -> list[str]:
    return sorted(k[: -len(suffix)] for k in data if k.endswith(suffix))


def _max_diff(actual: torch.Tensor, expected: np.ndarray) -> float:
    assert tuple(actual.shape) == expected.shape
    return float(np.abs(actual.numpy() - expected).max(initial=0.0))


def test_pooled_vectors_match_every_interactive_case(fixture: dict[str, Any]) -> None:
    data = fixture["interactive"]
    cases = _cases(data, "_pred_pspatials")
    expected_cases = ["single_r1", "single_r2"]
    if fixture["name"] == "focalt_v1_tiny":
        expected_cases += ["multi_r1", "multi_r2", "big_r1"]
    assert sorted(cases) == sorted(expected_cases)
    for case in cases:
        out = _encode_case(fixture, case)
        # The fixture stores (B, P, D); ours is (P, B, D).
        assert _max_diff(out.pooled_pos.transpose(0, 1), data[f"{case}_pred_pspatials"]) <= ATOL
        assert _max_diff(out.pooled_neg.transpose(0, 1), data[f"{case}_pred_nspatials"]) <= ATOL


def test_prompt_without_negative_points_pools_to_minus_one(focalt: dict[str, Any]) -> None:
    out = _encode_case(focalt, "multi_r2")
    assert torch.all(out.pooled_neg[1] == -1)
    assert not torch.all(out.pooled_neg[0] == -1)


def test_tokens_match_official_sampler(fixture: dict[str, Any]) -> None:
    data = fixture["interactive"]
    cases = _cases(data, "_tok_src_spatial_queries_0")
    assert cases, "fixture has no token arrays"
    for case in cases:
        out = _encode_case(fixture, case)
        pos = torch.from_numpy(data[f"{case}_pos_mask"][0])
        neg = torch.from_numpy(data[f"{case}_neg_mask"][0])
        n_pos, n_neg = int(pos.sum()), int(neg.sum())
        for i in range(3):
            assert _max_diff(out.tokens[i], data[f"{case}_tok_src_spatial_queries_{i}"]) <= ATOL
            np.testing.assert_array_equal(
                out.padding[i].numpy(), data[f"{case}_tok_src_spatial_maskings_{i}"]
            )
            # Positives first (prompt-major), then negatives (prompt-major).
            expected_index = torch.cat(
                [torch.nonzero(pos)[:, 0], torch.nonzero(neg)[:, 0]]
            )  # (n_pos + n_neg,)
            assert out.prompt_index[i].shape == (1, n_pos + n_neg)
            assert torch.equal(out.prompt_index[i][0], expected_index)
        assert _max_diff(out.pooled_pos, data[f"{case}_tok_spatial_query_pos"]) <= ATOL
        assert _max_diff(out.pooled_neg, data[f"{case}_tok_spatial_query_neg"]) <= ATOL


def test_referring_image_tokens_match(fixture: dict[str, Any]) -> None:
    data = fixture["referring"]
    stroke = torch.from_numpy(data["ref_stroke_imgsize"])  # (RH, RW)
    h_pad, w_pad = (int(s) for s in data["ref_padded_shape"][-2:])
    pos = torch.zeros(1, 1, h_pad, w_pad, dtype=torch.bool)
    pos[0, 0, : stroke.shape[0], : stroke.shape[1]] = stroke

    out = encode_visual_prompts(
        pos, None, fixture["ref_features"], fixture["ref_mask_features"], **fixture["params"]
    )

    assert _max_diff(out.pooled_pos, data["refimg_spatial_query_pos"]) <= ATOL
    assert _max_diff(out.pooled_neg, data["refimg_spatial_query_neg"]) <= ATOL
    for i in range(3):
        assert _max_diff(out.tokens[i], data[f"refimg_src_spatial_queries_{i}"]) <= ATOL
        np.testing.assert_array_equal(
            out.padding[i].numpy(), data[f"refimg_src_spatial_maskings_{i}"]
        )
        np.testing.assert_array_equal(
            out.prompt_index[i].numpy()[..., None].astype(np.float32),
            data[f"refimg_src_spatial_indices_{i}"],
        )


def test_same_inputs_give_bit_identical_tokens(fixture: dict[str, Any]) -> None:
    first = _encode_case(fixture, "single_r2")
    second = _encode_case(fixture, "single_r2")
    for a, b in zip(first.tokens, second.tokens, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(first.pooled_pos, second.pooled_pos)
    assert torch.equal(first.pooled_neg, second.pooled_neg)
    for a, b in zip(first.prompt_index, second.prompt_index, strict=True):
        assert torch.equal(a, b)


# --- tiny random configs -------------------------------------------------------------------


def _random_model(
    batch: int, dim: int = 8, dtype: torch.dtype = torch.float64
) -> tuple[list[torch.Tensor], torch.Tensor, dict[str, Any]]:
    gen = torch.Generator().manual_seed(0)
    feats = [torch.randn(batch, dim, s, s + 1, generator=gen, dtype=dtype) for s in (2, 4, 8)]
    mask_feats = torch.randn(batch, dim, 16, 18, generator=gen, dtype=dtype)
    params = {
        "level_embed": torch.randn(3, dim, generator=gen, dtype=dtype),
        "mask_spatial_embed": [torch.randn(dim, dim, generator=gen, dtype=dtype) for _ in range(3)],
        "pn_indicator": torch.randn(2, dim, generator=gen, dtype=dtype),
    }
    return feats, mask_feats, params


def test_sampling_first_equals_projecting_first() -> None:
    feats, mask_feats, params = _random_model(batch=1)
    pos = torch.zeros(1, 2, 64, 72, dtype=torch.bool)
    pos[0, 0, 10:14, 20:30] = True
    pos[0, 1, 50, 3] = True
    neg = torch.zeros_like(pos)
    neg[0, 0, 60:63, 70:72] = True

    out = encode_visual_prompts(pos, neg, feats, mask_feats, **params)

    points = [sample_prompt_points(pos[0]), sample_prompt_points(neg[0])]
    yx = torch.cat([p.yx for p in points]).double()  # (T, 2)
    grid = (2 * yx.flip(-1) - 1)[None, :, None, :]  # (1, T, 1, 2)
    n_pos = points[0].yx.shape[0]
    for i, feat in enumerate(feats):
        src = feat + params["level_embed"][i][None, :, None, None]  # (1, D, h, w)
        projected = torch.einsum("bdhw,de->behw", src, params["mask_spatial_embed"][i])
        ref = torch.nn.functional.grid_sample(projected, grid, align_corners=True)[0, :, :, 0].t()
        ref[:n_pos] += params["pn_indicator"][0]
        ref[n_pos:] += params["pn_indicator"][1]
        torch.testing.assert_close(out.tokens[i][:, 0], ref, rtol=0, atol=1e-12)


def test_batch_elements_are_padded_to_the_longest() -> None:
    feats, mask_feats, params = _random_model(batch=2)
    pos = torch.zeros(2, 2, 32, 36, dtype=torch.bool)
    neg = torch.zeros_like(pos)
    pos[0, 0, 3:5, 4:6] = True  # element 0: 4 positive + 1 negative
    neg[0, 1, 20, 20] = True
    pos[1, 0, 10:13, 10:13] = True  # element 1: 9 + 3 positive + 2 negative
    pos[1, 1, 30, 0:3] = True
    neg[1, 0, 0, 0:2] = True

    out = encode_visual_prompts(pos, neg, feats, mask_feats, **params)

    assert out.num_prompts == 2
    assert all(t.shape == (14, 2, 8) for t in out.tokens)
    assert out.padding[0][0].tolist() == [False] * 5 + [True] * 9
    assert not out.padding[0][1].any()
    assert out.prompt_index[0][0].tolist() == [0, 0, 0, 0, 1] + [-1] * 9
    for b in range(2):
        alone = encode_visual_prompts(
            pos[b], neg[b], [f[b : b + 1] for f in feats], mask_feats[b : b + 1], **params
        )
        n = alone.tokens[0].shape[0]
        for i in range(3):
            torch.testing.assert_close(out.tokens[i][:n, b : b + 1], alone.tokens[i])
            assert torch.equal(out.prompt_index[i][b, :n], alone.prompt_index[i][0])
        torch.testing.assert_close(out.pooled_pos[:, b : b + 1], alone.pooled_pos)
        torch.testing.assert_close(out.pooled_neg[:, b : b + 1], alone.pooled_neg)
    # Padding reads the projected top-left feature and gets no indicator (official).
    for i, feat in enumerate(feats):
        corner = (feat[0, :, 0, 0] + params["level_embed"][i]) @ params["mask_spatial_embed"][i]
        torch.testing.assert_close(out.tokens[i][5:, 0], corner.expand(9, -1))


def test_no_points_at_all_gives_empty_tokens_and_minus_one_vectors() -> None:
    feats, mask_feats, params = _random_model(batch=1, dtype=torch.float32)
    pos = torch.zeros(3, 32, 36, dtype=torch.bool)

    out = encode_visual_prompts(pos, None, feats, mask_feats, **params)

    assert all(t.shape == (0, 1, 8) and t.dtype == torch.float32 for t in out.tokens)
    assert all(p.shape == (1, 0) for p in out.padding)
    assert out.pooled_pos.shape == (3, 1, 8)
    assert torch.all(out.pooled_pos == -1) and torch.all(out.pooled_neg == -1)


def test_mismatched_inputs_are_rejected() -> None:
    feats, mask_feats, params = _random_model(batch=1)
    pos = torch.zeros(1, 2, 32, 36, dtype=torch.bool)
    with pytest.raises(ValueError, match="differs"):
        encode_visual_prompts(pos, pos[:, :1], feats, mask_feats, **params)
    with pytest.raises(ValueError, match="batch size"):
        encode_visual_prompts(pos.expand(2, -1, -1, -1), None, feats, mask_feats, **params)
    with pytest.raises(ValueError, match="levels"):
        encode_visual_prompts(pos, None, feats[:2], mask_feats, **params)


def test_prompt_points_is_a_named_tuple() -> None:
    index, yx = sample_prompt_points(torch.ones(1, 1, 1, dtype=torch.bool))
    assert isinstance(sample_prompt_points(torch.ones(1, 1, 1)), PromptPoints)
    assert index.tolist() == [0] and yx.tolist() == [[0.0, 0.0]]
