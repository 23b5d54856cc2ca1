"""Seeded synthetic scenes with exact instance labels.

Nothing here downloads anything. Every generator is a pure function of its arguments and
``seed``: the same call gives the same arrays on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SyntheticScene", "synthetic_nuclei"]


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
