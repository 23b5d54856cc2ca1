"""The seeded scene generator: determinism, exact labels, sizes, image formats."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from skimage.measure import label as cc_label

from napari_seem.datasets.generate import MODALITIES, generate
from napari_seem.datasets.instances import boundary_mask, equivalent_diameters, touching_pairs
from napari_seem.datasets.scene import Scene

SHAPE = (128, 128)


def assert_exact(scene: Scene) -> None:
    """Ids 1..N consecutive, each one 4-connected component, classes cover every id."""
    lab = scene.instances
    assert lab.dtype == np.int32 and lab.shape == scene.image.shape[:2]
    ids = np.unique(lab)
    ids = ids[ids > 0]
    n = scene.n_instances
    np.testing.assert_array_equal(ids, np.arange(1, n + 1))  # no id without pixels
    assert set(scene.classes) == set(range(1, n + 1))
    assert set(scene.classes.values()) <= set(scene.class_names)
    comp = cc_label(lab, background=0, connectivity=1)
    pieces = {(int(a), int(b)) for a, b in zip(lab.ravel(), comp.ravel(), strict=True) if a}
    per_id = np.bincount(np.asarray([a for a, _ in pieces]), minlength=n + 1)
    assert (per_id[1:] == 1).all(), f"ids in several pieces: {np.flatnonzero(per_id > 1)}"


def _digest(scene: Scene) -> str:
    h = hashlib.sha256()
    for arr in (scene.image, scene.instances):
        h.update(str(arr.dtype).encode() + str(arr.shape).encode() + arr.tobytes())
    h.update(json.dumps(sorted(scene.classes.items())).encode())
    return h.hexdigest()


@pytest.mark.parametrize("modality", MODALITIES)
def test_same_seed_same_scene_different_seed_different(modality: str) -> None:
    a, b, c = (generate(modality, s, SHAPE) for s in (7, 7, 8))
    assert _digest(a) == _digest(b)
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.instances, c.instances)
    assert a.meta["modality"] == modality and a.meta["seed"] == 7


def test_deterministic_across_processes() -> None:
    code = (
        "import hashlib, json, sys\n"
        "sys.path[:0] = [" + repr(str(__import__("pathlib").Path(__file__).parent)) + "]\n"
        "from test_generate import _digest\n"
        "from napari_seem.datasets.generate import MODALITIES, generate\n"
        "print(json.dumps({m: _digest(generate(m, 3, (96, 112))) for m in MODALITIES}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    ours = {m: _digest(generate(m, 3, (96, 112))) for m in MODALITIES}
    assert theirs == ours


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_are_exact(modality: str, seed: int) -> None:
    scene = generate(modality, seed, (160, 144))
    assert_exact(scene)
    assert scene.n_instances >= 1


def test_touching_nuclei_keep_separate_ids_and_share_a_border() -> None:
    scene = generate("nuclei", 4, (160, 160), diameter=(14, 24), density="crowded", touching=1.0)
    assert_exact(scene)
    pairs = touching_pairs(scene.instances)
    assert len(pairs) >= 5  # many nuclei touch, none merged
    edge = boundary_mask(scene.instances)
    for a, b in sorted(pairs)[:5]:
        # the shared border: pixels of a next to pixels of b, both on an object boundary
        lab = scene.instances
        side = (lab[:, 1:] == a) & (lab[:, :-1] == b) | (lab[:, 1:] == b) & (lab[:, :-1] == a)
        side_v = (lab[1:, :] == a) & (lab[:-1, :] == b) | (lab[1:, :] == b) & (lab[:-1, :] == a)
        assert side.any() or side_v.any()
        assert edge[lab == a].any() and edge[lab == b].any()
    # overlapping nuclei (overlap=True) still keep one id each
    overlapping = generate("nuclei", 5, (160, 160), density="crowded", overlap=True, touching=1.0)
    assert_exact(overlapping)
    assert touching_pairs(overlapping.instances)


def _isolated_diameters(scene: Scene) -> np.ndarray:
    """Equivalent diameters of objects touching neither another object nor the image edge."""
    lab = scene.instances
    touching = {i for pair in touching_pairs(lab) for i in pair}
    border = set(np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])).tolist())
    diam = equivalent_diameters(lab)
    ids = [i for i in range(1, scene.n_instances + 1) if i not in touching and i not in border]
    return diam[ids]


@pytest.mark.parametrize(
    ("modality", "options", "lo", "hi"),
    [
        ("nuclei", {"diameter": (6, 10), "touching": 0.0}, 6, 10),
        ("nuclei", {"diameter": (30, 60), "touching": 0.0}, 30, 60),
        ("cells", {"diameter": (50, 120), "confluent": False, "density": "medium"}, 50, 120),
        ("phase_contrast", {"diameter": (12, 25), "confluent": False}, 12, 25),
    ],
)
def test_sizes_stay_in_the_requested_range(
    modality: str, options: dict[str, object], lo: float, hi: float
) -> None:
    found = []
    for seed in range(6):
        scene = generate(modality, seed, (256, 256), **options)
        found.append(_isolated_diameters(scene))
    diam = np.concatenate(found)
    assert len(diam) >= 4
    assert diam.min() >= lo and diam.max() <= hi, (diam.min(), diam.max())


def test_density_changes_how_many_nuclei() -> None:
    sparse = [generate("nuclei", s, SHAPE, diameter=(10, 14), density="sparse") for s in range(3)]
    crowded = [generate("nuclei", s, SHAPE, diameter=(10, 14), density="crowded") for s in range(3)]
    assert sum(s.n_instances for s in crowded) > 2 * sum(s.n_instances for s in sparse)


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize("modality", ["nuclei", "cells", "phase_contrast", "brightfield"])
def test_grey_modalities_dtype_and_range(modality: str, dtype: str) -> None:
    scene = generate(modality, 2, SHAPE, dtype=dtype)
    assert scene.image.shape == SHAPE and scene.image.dtype == np.dtype(dtype)
    assert scene.image.max() > scene.image.min()
    if dtype == "uint16":
        assert scene.image.max() > 255  # a real 16-bit range, not 8-bit values in 16 bits


def test_fluorescence_objects_are_brighter_and_em_membranes_darker() -> None:
    for seed in range(3):
        nuc = generate("nuclei", seed, SHAPE)
        inside = nuc.instances > 0
        assert nuc.image[inside].mean() > nuc.image[~inside].mean()
        em = generate("em", seed, SHAPE)
        assert em.image[em.instances == 0].mean() < em.image[em.instances > 0].mean() - 20
        assert em.image.dtype == np.uint8 and em.image.shape == SHAPE
        assert not touching_pairs(em.instances)  # a membrane separates every pair


def test_he_is_rgb_with_purple_nuclei_on_pink() -> None:
    scene = generate("he", 3, (160, 160))
    assert scene.image.shape == (160, 160, 3) and scene.image.dtype == np.uint8
    rgb = scene.image.astype(float)
    nuc = scene.instances > 0
    # nuclei: darker and bluer than the stroma; stroma: pink (red above green)
    assert rgb[nuc].mean() < rgb[~nuc].mean()
    assert (rgb[nuc, 2] - rgb[nuc, 1]).mean() > (rgb[~nuc, 2] - rgb[~nuc, 1]).mean()
    assert (rgb[~nuc, 0] - rgb[~nuc, 1]).mean() > 10
    assert set(scene.classes.values()) <= {"epithelial nucleus", "stromal nucleus", "lymphocyte"}
    glands = generate("he", 3, (160, 160), target="glands")
    assert_exact(glands)
    assert set(glands.classes.values()) <= {"gland"}


@pytest.mark.parametrize("bands", [4, 6])
def test_landcover_bands_classes_and_spectra(bands: int) -> None:
    scene = generate("landcover", 1, (160, 160), bands=bands, water="both")
    img = scene.image
    assert img.shape == (160, 160, bands) and img.dtype == np.float32
    assert np.isfinite(img).all() and img.min() >= 0 and img.max() < 1
    assert scene.meta["band_names"][:4] == ("blue", "green", "red", "nir")
    assert (scene.instances > 0).all()  # every pixel belongs to an object
    cmap = scene.class_map()
    names = dict(enumerate(scene.class_names, start=1))
    present = {names[v] for v in np.unique(cmap)}
    assert {"water", "field", "road"} <= present
    water = cmap == scene.class_names.index("water") + 1
    vegetation = np.isin(cmap, [scene.class_names.index(c) + 1 for c in ("forest", "field")])
    assert img[water, 3].mean() < 0.5 * img[vegetation, 3].mean()  # water is dark in the NIR


def test_unknown_modality_and_option_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown modality"):
        generate("xray", 0)
    with pytest.raises(TypeError, match="unknown option"):
        generate("nuclei", 0, SHAPE, radius=3)


def test_nuclei_of_two_size_populations() -> None:
    scene = generate("nuclei", 2, (160, 160), populations=2, diameter=(8, 40), touching=0.8)
    assert_exact(scene)
    assert len(scene.meta["typical_diameters"]) == 2
    with pytest.raises(ValueError, match="populations"):
        generate("nuclei", 2, SHAPE, populations=5)
