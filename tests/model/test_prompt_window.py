"""Prompt windows, connected answers and the "points" everything mode (seem-lite's inference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_seem.core.prompts import ObjectPrompt
from napari_seem.core.visual import Points
from napari_seem.model.build import build_seem
from napari_seem.model.prompt_window import (
    OUTSIDE_LOGIT,
    Window,
    crop_features,
    owner_cells,
    prompt_window,
    tile_windows,
)
from napari_seem.model.seem import ImageFeatures
from napari_seem.predict.everything import PointsSettings
from napari_seem.predict.masks import touching
from napari_seem.predict.predictor import SeemPredictor


def _mark(shape: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    out = np.zeros(shape, bool)
    out[rows, cols] = True
    return out


def test_window_is_aligned_holds_the_prompt_and_stays_in_the_frame() -> None:
    w = prompt_window(_mark((1024, 768), slice(500, 503), slice(10, 13)), (1024, 768), 256)
    assert w is not None
    assert all(v % 32 == 0 for v in (w.top, w.left, w.bottom, w.right))
    assert (w.bottom - w.top, w.right - w.left) == (256, 256)
    assert w.top <= 500 and w.bottom >= 503 and w.left == 0  # clipped at the border
    # a big scribble grows the window (with a margin) instead of being cut
    big = prompt_window(_mark((1024, 1024), slice(100, 500), slice(100, 140)), (1024, 1024), 256)
    assert big is not None and big.top <= 100 - 32 and big.bottom >= 500 + 32
    # a window as large as the frame means "decode globally"
    assert prompt_window(_mark((256, 256), slice(5, 8), slice(5, 8)), (256, 256), 256) is None
    assert prompt_window(np.zeros((512, 512), bool), (512, 512), 256) is None


def test_crop_features_cuts_every_level_at_whole_cells() -> None:
    feats = ImageFeatures(
        torch.arange(1 * 2 * 128 * 96).float().reshape(1, 2, 128, 96),
        (torch.zeros(1, 2, 16, 12), torch.zeros(1, 2, 32, 24), torch.zeros(1, 2, 64, 48)),
        (512, 384),
    )
    cut = crop_features(feats, Window(64, 128, 320, 384))
    assert cut.padded_hw == (256, 256)
    assert cut.mask_features.shape[-2:] == (64, 64)
    assert [m.shape[-2:] for m in cut.multi_scale_features] == [(8, 8), (16, 16), (32, 32)]
    assert torch.equal(cut.mask_features, feats.mask_features[..., 16:80, 32:96])


@pytest.fixture(scope="module")
def lite_random() -> SeemPredictor:
    torch.manual_seed(0)
    # a small frame keeps the test fast: a few 256-px windows
    return SeemPredictor(build_seem("seem-lite", shipped_weights=False, seed=0), short_side=512)


def test_windowed_click_is_background_outside_its_window(lite_random: SeemPredictor) -> None:
    pred = lite_random
    assert pred.model.prompt_window == 256 and pred.connected
    rng = np.random.default_rng(0)
    pred.set_image(rng.integers(0, 255, (600, 600), dtype=np.uint8))
    prompt = ObjectPrompt((Points.clicks(positive=[(100, 120)], negative=[]),))
    frame = pred.encoded.frame
    pos = np.zeros((1, *frame.padded_hw), bool)
    r, c = (int(v) for v in frame.image_to_model(torch.tensor([[100.0, 120.0]]))[0])
    pos[0, r - 1 : r + 2, c - 1 : c + 2] = True
    masks, logits, captions = pred.decode_spatial(pos, np.zeros_like(pos), None)
    window = prompt_window(pos[0], pred.encoded.features.padded_hw, 256)
    assert window is not None
    rows, cols = window.cells(4)
    outside = torch.ones(masks.shape[-2:], dtype=torch.bool)
    outside[rows, cols] = False
    assert bool((masks[:, outside] == OUTSIDE_LOGIT).all())
    # inside: exactly what decoding the window's own features gives
    feats = crop_features(pred.encoded.features, window)
    px = window.cells(1)
    direct, _, _ = pred.decode_prompts(
        feats, pos[:, px[0], px[1]], np.zeros_like(pos[:, px[0], px[1]]), None, None
    )
    torch.testing.assert_close(masks[:, rows, cols], direct.to(masks.dtype))
    assert logits.shape == (3, 1) and captions.shape[0] == 3
    # and the public path: the answer lies inside the window's level-0 footprint
    result = pred.predict([prompt])
    full = result.objects[0].full((600, 600))
    scale = frame.scale[0]
    assert not full[int(window.bottom / scale) + 2 :, :].any()


def test_touching_keeps_the_clicked_part_only() -> None:
    mask = np.zeros((40, 40), bool)
    mask[2:10, 2:10] = True  # clicked
    mask[20:30, 20:30] = True  # a lookalike elsewhere
    marks = np.zeros_like(mask)
    marks[5, 5] = True
    prompt = ObjectPrompt((Points.clicks(positive=[(5, 5)], negative=[]),))
    kept = touching(mask, marks, prompt)
    assert kept[5, 5] and not kept[25, 25] and kept.sum() == 64
    # a click the answer misses leaves the answer as it is
    marks[:] = False
    marks[35, 35] = True
    assert np.array_equal(touching(mask, marks, prompt), mask)


def test_points_windows_cover_the_frame_with_half_overlap() -> None:
    wins = tile_windows((512, 640), 256)
    cover = np.zeros((512, 640), int)
    for w in wins:
        assert (w.bottom - w.top, w.right - w.left) == (256, 256)
        cover[w.top : w.bottom, w.left : w.right] += 1
    assert cover.min() >= 1
    assert {w.top for w in wins} == {0, 128, 256}
    owner = owner_cells(wins, (128, 160))
    # every cell belongs to a window that contains it, away from that window's inner edges
    for (r, c), k in np.ndenumerate(owner):
        w = wins[k]
        assert w.top <= r * 4 < w.bottom and w.left <= c * 4 < w.right


def test_points_mode_returns_disjoint_objects_each_containing_its_seed(
    lite_random: SeemPredictor,
) -> None:
    pred = lite_random
    rng = np.random.default_rng(1)
    pred.set_image(rng.integers(0, 255, (300, 280), dtype=np.uint8))
    loose = PointsSettings(spacing=48, score_threshold=0.0, stability_threshold=0.0, min_area=1)
    result = pred.segment_everything(["nucleus"], mode="points", points=loose)
    seen = np.zeros((300, 280), bool)
    for obj in result.objects:
        full = obj.full((300, 280))
        assert full.any() and not (full & seen).any()
        seen |= full
        assert obj.source == "points" and obj.class_name == "nucleus"
    strict = PointsSettings(spacing=48, score_threshold=1.01)
    assert pred.segment_everything(["nucleus"], mode="points", points=strict).objects == ()
    # "auto" picks the points mode for a windowed model
    auto = pred.segment_everything(["nucleus"], points=strict)
    assert auto.objects == ()


def test_windowed_grounding_returns_disjoint_connected_parts(lite_random: SeemPredictor) -> None:
    from scipy import ndimage

    pred = lite_random
    rng = np.random.default_rng(2)
    pred.set_image(rng.integers(0, 255, (420, 500, 3), dtype=np.uint8))
    result = pred.ground(["water", "forest"])
    assert pred.ground(["water"], windowed=False).objects  # the global path still answers
    seen = np.zeros((420, 500), bool)
    areas: dict[str, list[int]] = {"water": [], "forest": []}
    for obj in result.objects:
        full = obj.full((420, 500))
        assert ndimage.label(full)[1] == 1  # one connected part
        assert obj.class_name in areas and obj.source == "grounding"
        areas[obj.class_name].append(int(full.sum()))
        if obj.class_name == "water":
            assert not (full & seen).any()
            seen |= full
    for sizes in areas.values():
        assert sizes == sorted(sizes, reverse=True)
    capped = pred.ground(["water"], max_instances=1)
    assert len(capped.objects) <= 1
