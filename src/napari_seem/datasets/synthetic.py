"""Seeded synthetic scenes with exact instance labels.

Nothing here downloads anything. Every generator is a pure function of its arguments and
``seed``: the same call gives the same arrays on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "LANDCOVER_CLASSES",
    "SyntheticScene",
    "synthetic_brightfield",
    "synthetic_landcover",
    "synthetic_nuclei",
]


@dataclass(frozen=True)
class SyntheticScene:
    """A generated image with its ground truth.

    Attributes:
        image: ``(H, W)`` uint8 grey image (fluorescence-like: bright objects on dark).
        labels: ``(H, W)`` uint32 instance labels, 0 = background, ids 1..n.
        class_names: ``class_names[i]`` names the class of instance ``i + 1``.
    """

    image: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]


def synthetic_nuclei(
    shape: tuple[int, int] = (384, 512),
    *,
    n_objects: int = 40,
    radius: tuple[float, float] = (9.0, 20.0),
    touching: float = 0.3,
    noise: float = 8.0,
    blur: float = 1.5,
    seed: int = 0,
) -> SyntheticScene:
    """Fluorescent nuclei: textured ellipses, some touching, on an uneven background.

    Args:
        shape: ``(H, W)`` of the image in pixels.
        n_objects: how many nuclei to try to place (fewer if the image is crowded).
        radius: range of the ellipse semi-axes in pixels.
        touching: fraction of nuclei placed right next to an earlier one, so that
            instance separation matters.
        noise: standard deviation of the additive Gaussian noise, in grey levels.
        blur: Gaussian blur sigma (optics), in pixels.
        seed: random seed.
    """
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    h, w = shape
    labels = np.zeros(shape, np.uint32)
    brightness = np.zeros(shape, np.float64)
    rows, cols = np.mgrid[0:h, 0:w]
    placed: list[tuple[float, float, float]] = []
    next_id = 1
    for _ in range(n_objects * 20):
        if next_id > n_objects:
            break
        a, b = rng.uniform(*radius, size=2)
        theta = rng.uniform(0, np.pi)
        if placed and rng.random() < touching:
            # put the new nucleus against an earlier one: centre at the sum of radii
            pr, pc, prad = placed[rng.integers(len(placed))]
            angle = rng.uniform(0, 2 * np.pi)
            dist = prad + min(a, b) * 0.95
            r0, c0 = pr + dist * np.sin(angle), pc + dist * np.cos(angle)
        else:
            r0, c0 = rng.uniform(0, h), rng.uniform(0, w)
        if not (radius[0] <= r0 < h - radius[0] and radius[0] <= c0 < w - radius[0]):
            continue
        dr, dc = rows - r0, cols - c0
        u = (dr * np.cos(theta) + dc * np.sin(theta)) / a
        v = (-dr * np.sin(theta) + dc * np.cos(theta)) / b
        inside = u * u + v * v <= 1.0
        overlap = labels[inside] > 0
        if overlap.mean() > 0.05:
            continue
        new = inside & (labels == 0)
        if new.sum() < 20:
            continue
        labels[new] = next_id
        level = rng.uniform(0.45, 1.0)
        texture = 1.0 - 0.25 * (u * u + v * v)  # brighter centre, dimmer rim
        brightness[new] = level * texture[new]
        placed.append((r0, c0, float(max(a, b))))
        next_id += 1

    texture_noise = ndimage.gaussian_filter(rng.normal(0, 1, shape), 2.0)
    signal = brightness * (1.0 + 0.15 * texture_noise)
    background = 0.08 + 0.06 * np.sin(rows / h * np.pi) * np.cos(cols / w * np.pi * 0.7)
    image = ndimage.gaussian_filter(signal + background, blur) * 220.0
    image = image + rng.normal(0, noise, shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    names = ("nucleus",) * (next_id - 1)
    return SyntheticScene(image=image, labels=labels, class_names=names)


def synthetic_brightfield(
    shape: tuple[int, int] = (384, 512), *, seed: int = 0, n_objects: int = 30
) -> SyntheticScene:
    """Bright-field-like cells: dark textured objects with a bright halo on a bright,
    uneven background (instance labels of class ``"cell"``)."""
    from scipy import ndimage

    base = synthetic_nuclei(
        shape, n_objects=n_objects, radius=(10.0, 24.0), touching=0.4, noise=0.0, seed=seed
    )
    rng = np.random.default_rng([seed, 1])
    h, w = shape
    rows, cols = np.mgrid[0:h, 0:w]
    inside = base.labels > 0
    rim = ndimage.binary_dilation(inside, iterations=2) & ~inside
    texture = ndimage.gaussian_filter(rng.normal(0, 1, shape), 1.5)
    bg = 0.75 + 0.1 * np.sin(rows / h * 2.5 + 0.5) * np.cos(cols / w * 1.7)
    img = bg - 0.35 * inside * (0.8 + 0.2 * texture) + 0.12 * rim
    img = ndimage.gaussian_filter(img, 1.0) * 255 + rng.normal(0, 6, shape)
    image = np.clip(img, 0, 255).astype(np.uint8)
    names = ("cell",) * int(base.labels.max())
    return SyntheticScene(image=image, labels=base.labels, class_names=names)


#: Classes of :func:`synthetic_landcover`, by label value.
LANDCOVER_CLASSES = {1: "developed", 2: "agriculture", 5: "forest", 6: "water"}


def synthetic_landcover(
    shape: tuple[int, int] = (256, 256), *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A multi-band land-cover scene: fields, forest, a lake or river, roads and buildings.

    Returns:
        ``bands`` ``(6, H, W)`` float32 (the spectral order of Landsat-7 bands 1, 2, 3, 4, 5,
        7: water dark in the infrared, vegetation bright in band 4), and ``classes``
        ``(H, W)`` int32 with the values of :data:`LANDCOVER_CLASSES`.
    """
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    h, w = shape
    # fields and forest: a Voronoi partition, each cell agriculture or forest
    n = int(rng.integers(8, 20))
    centres = rng.uniform(0, 1, (n, 2)) * (h, w)
    rows, cols = np.mgrid[0:h, 0:w]
    dist = (rows[None] - centres[:, 0, None, None]) ** 2 + (
        cols[None] - centres[:, 1, None, None]
    ) ** 2
    cell = dist.argmin(0)
    kind = rng.choice([2, 5], size=n, p=[0.45, 0.55])
    classes = kind[cell].astype(np.int32)
    # water: a smooth blob (lake) or a meandering band (river)
    field = ndimage.gaussian_filter(rng.normal(0, 1, shape), 18)
    if rng.random() < 0.5:
        classes[field > np.quantile(field, rng.uniform(0.88, 0.97))] = 6
    else:
        centre = h * rng.uniform(0.2, 0.8) + 15 * np.sin(cols / w * rng.uniform(3, 8)) + 20 * field
        classes[np.abs(rows - centre) < rng.uniform(3, 8)] = 6
    # roads and buildings: developed
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.5:
            r = int(rng.integers(0, h))
            classes[max(r - 1, 0) : r + 2, :] = np.where(
                classes[max(r - 1, 0) : r + 2, :] == 6, 6, 1
            )
        else:
            c = int(rng.integers(0, w))
            classes[:, max(c - 1, 0) : c + 2] = np.where(
                classes[:, max(c - 1, 0) : c + 2] == 6, 6, 1
            )
    for _ in range(int(rng.integers(0, 30))):
        r, c = int(rng.integers(0, h - 6)), int(rng.integers(0, w - 6))
        if classes[r, c] != 6:
            classes[r : r + int(rng.integers(3, 7)), c : c + int(rng.integers(3, 7))] = 1
    # spectra (bands 1,2,3,4,5,7) per class, plus per-field variation and texture
    spectra = {
        1: (110, 105, 115, 90, 130, 110),
        2: (75, 65, 60, 110, 120, 80),
        5: (65, 52, 40, 85, 70, 40),
        6: (70, 50, 35, 15, 8, 6),
    }
    bands = np.zeros((6, h, w), np.float32)
    field_gain = rng.uniform(0.85, 1.15, n)[cell]
    for value, spec in spectra.items():
        m = classes == value
        for b in range(6):
            gain = field_gain[m] if value in (2, 5) else 1.0
            bands[b][m] = spec[b] * gain
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (6, h, w)), (0, 1.2, 1.2))
    bands = bands * (1 + 0.08 * texture) + rng.normal(0, 2, bands.shape)
    bands = ndimage.gaussian_filter(bands, (0, 0.7, 0.7)).astype(np.float32)
    return bands, classes
