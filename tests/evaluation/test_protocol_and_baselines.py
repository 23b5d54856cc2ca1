"""The click protocol with known segmenters, the baselines on synthetic nuclei."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from napari_seem.datasets.synthetic import synthetic_nuclei
from napari_seem.evaluation.baselines import SeededWatershed, otsu_watershed
from napari_seem.evaluation.clicks import pick_ids, simulate_clicks
from napari_seem.evaluation.metrics import detection_scores
from napari_seem.evaluation.runner import interactive_summary
from napari_seem.train.prompts_sim import Click


def _two_discs() -> np.ndarray:
    rows, cols = np.mgrid[:64, :64]
    labels = np.zeros((64, 64), np.int32)
    labels[(rows - 20) ** 2 + (cols - 20) ** 2 <= 64] = 1
    labels[(rows - 44) ** 2 + (cols - 40) ** 2 <= 100] = 2
    return labels


def test_perfect_segmenter_gives_iou_one_and_noc_one() -> None:
    labels = _two_discs()

    def oracle(clicks: Sequence[Click], previous: np.ndarray | None) -> np.ndarray:
        return labels == labels[clicks[0].row, clicks[0].col]

    curves = simulate_clicks(oracle, labels, [1, 2])
    assert curves == [[1.0], [1.0]]
    s = interactive_summary(curves, 20)
    assert s["noc85"] == 1.0 and s["noc90"] == 1.0
    assert s["iou_1"] == s["iou_3"] == s["iou_5"] == 1.0


def test_empty_segmenter_never_reaches_and_counts_max_clicks() -> None:
    labels = _two_discs()

    def nothing(clicks: Sequence[Click], previous: np.ndarray | None) -> np.ndarray:
        return np.zeros(labels.shape, bool)

    curves = simulate_clicks(nothing, labels, [1, 2], max_clicks=7)
    assert [len(c) for c in curves] == [7, 7] and all(v == 0.0 for c in curves for v in c)
    s = interactive_summary(curves, 7)
    assert s["noc85"] == 7.0 and s["noc90"] == 7.0 and s["iou_5"] == 0.0


def test_clicks_follow_the_official_simulator() -> None:
    labels = _two_discs()
    seen: list[list[Click]] = []

    def half(clicks: Sequence[Click], previous: np.ndarray | None) -> np.ndarray:
        seen.append(list(clicks))
        out = labels == 1
        return out if len(clicks) > 1 else out & (np.arange(64)[None, :] < 20)

    curves = simulate_clicks(half, labels, [1])
    assert len(curves[0]) == 2 and curves[0][1] == 1.0
    first, second = seen[0][0], seen[1][1]
    assert (first.row, first.col, first.positive) == (20, 20, True)  # the disc's centre
    assert second.positive and second.col >= 20  # in the missed (right) half


def test_pick_ids_spreads_and_keeps_all_when_few() -> None:
    labels = np.arange(100, dtype=np.int32).reshape(10, 10)
    assert pick_ids(labels, None) == list(range(1, 100))
    picked = pick_ids(labels, 5)
    assert picked[0] == 1 and picked[-1] == 99 and len(picked) == 5


def test_seeded_watershed_finds_an_isolated_nucleus() -> None:
    scene = synthetic_nuclei((128, 128), n_objects=6, seed=1)
    ids = pick_ids(scene.labels, 3)
    curves = simulate_clicks(SeededWatershed(scene.image), scene.labels, ids, max_clicks=10)
    s = interactive_summary(curves, 10)
    assert s["objects"] == len(ids)
    assert s["iou_5"] > 0.5  # a working baseline, not a strong one
    assert s["iou_5"] >= s["iou_1"] - 1e-9 or s["iou_5"] > 0.5


def test_negative_click_shrinks_the_watershed() -> None:
    image = np.zeros((40, 40), np.uint8)
    image[5:35, 5:35] = 200
    segment = SeededWatershed(image)
    one = segment([Click(10, 10, True)])
    assert one[20, 20] and one.sum() > 400
    two = segment([Click(10, 10, True), Click(30, 30, False)])
    assert not two[30, 30] and two.sum() < one.sum()


def test_otsu_watershed_separates_synthetic_nuclei() -> None:
    scene = synthetic_nuclei((128, 128), n_objects=6, seed=2)
    found = otsu_watershed(scene.image)
    assert found.masks and len(found.masks) == len(found.scores)
    assert found.labels.max() == len(found.masks)
    s = detection_scores(scene.labels, found.masks, found.scores)
    assert s.f1 > 0.3 and 0.0 <= s.ap50 <= 1.0


def test_otsu_watershed_on_a_flat_image_finds_nothing_or_one() -> None:
    found = otsu_watershed(np.full((32, 32), 7, np.uint8))
    assert len(found.masks) <= 1


@pytest.mark.parametrize("shape", [(32, 32, 3), (32, 32)])
def test_baselines_take_grey_and_rgb(shape: tuple[int, ...]) -> None:
    image = np.zeros(shape, np.uint8)
    image[8:24, 8:24] = 255
    assert SeededWatershed(image)([Click(16, 16, True)])[16, 16]
    assert len(otsu_watershed(image).masks) >= 1
