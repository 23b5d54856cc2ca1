"""Fresh training crops, label-exact augmentations and the held-out seeds."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seem.datasets.generate import MODALITIES, generate
from napari_seem.datasets.sampler import (
    HELD_OUT_SEEDS,
    HELD_OUT_START,
    Augment,
    CropSampler,
    HeldOutSeedError,
    augment,
    check_training_seed,
    held_out_scenes,
    random_crop,
    rescale,
    training_scene,
)
from tests.datasets.test_generate import assert_exact


def test_held_out_seeds_are_documented_disjoint_and_refused() -> None:
    assert HELD_OUT_START == 10_000_000
    assert set(HELD_OUT_SEEDS) == set(MODALITIES)
    every = [s for seeds in HELD_OUT_SEEDS.values() for s in seeds]
    assert min(every) >= HELD_OUT_START and len(set(every)) == len(every)
    for seed in (HELD_OUT_START, HELD_OUT_SEEDS["nuclei"][0], 2**40):
        with pytest.raises(HeldOutSeedError):
            check_training_seed(seed)
        with pytest.raises(HeldOutSeedError):
            CropSampler(["nuclei"], seed=seed)
        with pytest.raises(HeldOutSeedError):
            training_scene("nuclei", seed, (64, 64))
    assert check_training_seed(HELD_OUT_START - 1) == HELD_OUT_START - 1
    first = next(held_out_scenes("em", 1, (64, 64)))
    assert first.meta["seed"] == HELD_OUT_SEEDS["em"][0]


def test_sampler_draws_fresh_crops_from_training_seeds_only() -> None:
    sampler = CropSampler(crop=(96, 96), seed=11)
    crops = [next(sampler) for _ in range(len(MODALITIES) + 3)]
    seeds = [c.meta["scene_seed"] for c in crops]
    assert all(0 <= s < HELD_OUT_START for s in seeds) and len(set(seeds)) == len(seeds)
    for crop in crops:
        assert crop.instances.shape == (96, 96) and crop.image.shape[:2] == (96, 96)
        assert_exact(crop)
    # fresh every step, and the same stream for the same seed
    again = CropSampler(crop=(96, 96), seed=11)
    for crop in crops[:3]:
        other = next(again)
        np.testing.assert_array_equal(crop.image, other.image)
        np.testing.assert_array_equal(crop.instances, other.instances)
    assert not np.array_equal(crops[0].instances, crops[1].instances)


def test_sampler_options_and_weights() -> None:
    options = {"nuclei": {"dtype": "uint16"}}
    sampler = CropSampler({"nuclei": 1.0}, crop=(64, 64), seed=2, options=options)
    crop = sampler.sample()
    assert crop.meta["modality"] == "nuclei" and crop.image.dtype == np.uint16
    with pytest.raises(ValueError, match="unknown"):
        CropSampler(["xray"])


def test_random_crop_relabels_consecutively_and_splits_cut_objects() -> None:
    scene = generate("cells", 3, (160, 160), diameter=(40, 80), confluent=True)
    rng = np.random.default_rng(0)
    for _ in range(5):
        crop = random_crop(scene, (50, 70), rng)
        assert crop.instances.shape == (50, 70)
        assert_exact(crop)
        top, left = crop.meta["crop"]
        np.testing.assert_array_equal(crop.image, scene.image[top : top + 50, left : left + 70])
        # same partition of the window as the scene's own labels
        window = scene.instances[top : top + 50, left : left + 70]
        assert ((window == 0) == (crop.instances == 0)).all()
    with pytest.raises(ValueError):
        random_crop(scene, (200, 10), rng)


@pytest.mark.parametrize("modality", MODALITIES)
def test_rescale_and_augment_keep_labels_exact(modality: str) -> None:
    scene = generate(modality, 4, (96, 96))
    for size in ((64, 64), (150, 150)):
        out = rescale(scene, size)
        assert out.instances.shape == size and out.image.shape[:2] == size
        assert out.image.dtype == scene.image.dtype
        assert_exact(out)
    rng = np.random.default_rng(1)
    still = augment(scene, rng, Augment(flip=False, invert=1.0, blur=1.0, noise=0.05))
    np.testing.assert_array_equal(still.instances, scene.instances)  # photometric only
    assert still.image.dtype == scene.image.dtype and still.image.shape == scene.image.shape
    if scene.image.ndim == 2:  # grey images are inverted: objects swap their contrast
        assert still.meta["augment"].get("inverted")
    moved = augment(scene, np.random.default_rng(5))
    assert_exact(moved)
    areas = sorted(np.bincount(scene.instances.ravel()))
    assert sorted(np.bincount(moved.instances.ravel())) == areas


def test_sampler_skips_crops_without_enough_objects() -> None:
    sampler = CropSampler(["cells"], crop=(64, 64), seed=5, min_instances=3)
    assert all(next(sampler).n_instances >= 3 for _ in range(4))
