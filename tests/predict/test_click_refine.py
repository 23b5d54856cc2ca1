"""Clicks are obeyed and the scale is found: refinement and scale selection of seem-lite.

The model tests use the SHIPPED seem-lite weights (a random model's answers say nothing
about whether clicks are obeyed); they skip when the weights are not in this checkout.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_seem.predict.click_refine import refine_answer
from napari_seem.predict.scale import blob_diameter, grey_pyramid, view_box


def _discs(shape: tuple[int, int], centres: list[tuple[float, float]], radius: float) -> np.ndarray:
    """``(H, W)`` int labels: disc ``k`` (1-based) of ``radius`` at ``centres[k-1]``."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    for k, (r, c) in enumerate(centres, start=1):
        labels[((rows - r) ** 2 + (cols - c) ** 2 <= radius**2) & (labels == 0)] = k
    return labels


def _render(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """A fluorescence-like uint8 picture of ``labels``: bright discs with a dark seam."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    inside = labels > 0
    edges = np.zeros_like(inside)
    for k in np.unique(labels)[1:]:
        one = labels == k
        edges |= one & ~ndimage.binary_erosion(one)
    img = 25 + 170 * inside - 60 * (edges & inside) + rng.normal(0, 8, labels.shape)
    return np.clip(ndimage.gaussian_filter(img, 1.0), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- no model


def test_negative_click_on_a_merged_neighbour_removes_it_from_the_probability_map() -> None:
    labels = _discs((80, 100), [(40, 38), (40, 62)], 12.5)  # two touching discs
    prob = (labels > 0).astype(np.float32)  # the model merged them: p = 1 on both
    pos = np.zeros(labels.shape, bool)
    neg = np.zeros(labels.shape, bool)
    pos[39:42, 37:40] = True
    neg[39:42, 61:64] = True
    answer = refine_answer(prob, pos, neg, grey=_render(labels) / 255.0)
    a, b = labels == 1, labels == 2
    assert (answer & a).sum() / a.sum() > 0.9
    assert (answer & b).sum() / b.sum() < 0.1
    assert answer[pos].all() and not answer[neg].any()


def test_clicks_hold_even_against_the_probability_map() -> None:
    prob = np.zeros((40, 40), np.float32)
    prob[10:30, 10:30] = 1.0
    pos = np.zeros_like(prob, dtype=bool)
    neg = np.zeros_like(pos)
    pos[2:5, 2:5] = True  # on "background"
    neg[19:22, 19:22] = True  # in the middle of the "object"
    answer = refine_answer(prob, pos, neg)
    assert answer[pos].all() and not answer[neg].any()
    assert answer.sum() >= 9  # the positive click's own pixels at least


def test_blob_diameter_finds_small_and_large_discs() -> None:
    for radius, shape in ((4.0, (64, 64)), (100.0, (400, 400))):
        labels = _discs(shape, [(shape[0] / 2, shape[1] / 2)], radius)
        grey = _render(labels).astype(np.float32) / 255.0
        d = blob_diameter(grey_pyramid(grey), shape[0] / 2, shape[1] / 2)
        assert 0.6 * 2 * radius <= d <= 1.6 * 2 * radius, (radius, d)


def test_view_box_reaches_beyond_a_small_image_and_stays_inside_a_large_one() -> None:
    assert view_box((50, 50), None, 0.5, (100, 100), 256)[:2] < (0, 0)
    box = view_box((500, 500), None, 1.0, (2000, 2000), 256)
    assert box[0] >= 0 and box[2] <= 2000 and box[2] - box[0] == 256


# ---------------------------------------------------------------- shipped seem-lite


@pytest.fixture(scope="module")
def lite():  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    from napari_seem.model.build import build_seem
    from napari_seem.model.lite_weights import shipped_lite_weights
    from napari_seem.predict.predictor import SeemPredictor

    if shipped_lite_weights() is None:
        pytest.skip("seem-lite weights are not shipped in this checkout")
    return SeemPredictor(build_seem("seem-lite", shipped_weights=True))


def _click(positive: list[tuple[float, float]], negative: list[tuple[float, float]] = ()):  # type: ignore[no-untyped-def, assignment]
    from napari_seem.core.prompts import ObjectPrompt
    from napari_seem.core.visual import Points

    return ObjectPrompt((Points.clicks(positive=positive, negative=list(negative)),))


def test_lite_defaults_refine_and_find_scale_official_do_not() -> None:
    pytest.importorskip("torch")
    from napari_seem.model.build import build_seem
    from napari_seem.predict.predictor import SeemPredictor

    official = SeemPredictor(build_seem("seem-tiny-focal", seed=0))
    assert not official.interactive.refine and not official.interactive.find_scale


def test_lite_negative_click_on_the_touching_neighbour_removes_it(lite) -> None:  # type: ignore[no-untyped-def]
    labels = _discs((128, 128), [(64, 52), (64, 76)], 12.5)
    lite.set_image(_render(labels, seed=1))
    a, b = labels == 1, labels == 2
    first = lite.predict(_click([(64, 52)]))[0]
    mask = first.full(labels.shape)
    assert mask[64, 52]
    second = lite.predict(_click([(64, 52)], [(64, 76)]), previous=[first])[0]
    mask = second.full(labels.shape)
    assert mask[64, 52] and not mask[64, 76]
    assert (mask & b).sum() / b.sum() < 0.15
    assert (mask & a).sum() / (mask | a).sum() > 0.6


def test_lite_positive_clicks_are_always_inside_and_negatives_outside(lite) -> None:  # type: ignore[no-untyped-def]
    labels = _discs((128, 128), [(40, 40), (40, 64), (90, 90)], 11.0)
    lite.set_image(_render(labels, seed=2))
    rng = np.random.default_rng(3)
    for _ in range(4):
        pos = [tuple(float(v) for v in rng.integers(4, 124, 2))]
        neg = [tuple(float(v) for v in rng.integers(4, 124, 2))]
        mask = lite.predict(_click(pos, neg))[0].full(labels.shape)  # type: ignore[arg-type]
        (pr, pc), (nr, nc) = pos[0], neg[0]
        if (pr, pc) != (nr, nc):
            assert mask[int(pr), int(pc)] and not mask[int(nr), int(nc)]


def test_lite_iou_does_not_fall_from_click_1_to_click_5(lite) -> None:  # type: ignore[no-untyped-def]
    from napari_seem.datasets.generate import generate
    from napari_seem.evaluation.clicks import pick_ids
    from napari_seem.evaluation.heldout import ClickCurves, click_protocol

    curves: list[list[float]] = []
    for seed in (101, 102):  # training seeds (< 10,000,000)
        scene = generate("nuclei", seed, (128, 128), diameter=(14.0, 22.0), density="medium")
        ids = pick_ids(scene.instances, 4)
        curves += click_protocol(lite, scene.image, scene.instances, ids=ids, max_clicks=5).ious
    cc = ClickCurves(curves)
    assert cc.mean_iou_at(5) >= cc.mean_iou_at(1)
    assert cc.mean_iou_at(5) > 0.5


def test_lite_object_four_windows_across_comes_back_whole(lite) -> None:  # type: ignore[no-untyped-def]
    rows, cols = np.mgrid[:540, :1000]
    ellipse = ((rows - 270) / 240.0) ** 2 + ((cols - 500) / 380.0) ** 2 <= 1.0
    lite.set_image(_render(ellipse.astype(np.int32), seed=4))
    frame = lite.encoded.frame
    model_px = 760 * frame.scale[1]  # its long axis at the default encoding
    assert model_px >= 4 * 256
    mask = lite.predict(_click([(270, 500)]))[0].full(ellipse.shape)
    iou = (mask & ellipse).sum() / (mask | ellipse).sum()
    assert iou > 0.8, iou
