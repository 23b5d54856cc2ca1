"""Electron micrographs of densely packed neurites (serial-section EM-like).

The tissue is a power diagram of neurite profiles seen through a smooth domain warp (curved
borders, a wide spread of calibres); every border is a dark membrane. Inside: grainy axoplasm,
dark mitochondria with cristae, clusters of synaptic vesicles.

Image: ``(H, W)`` uint8. Truth: one instance per neurite profile (class ``"neurite"``); the
membranes between them are background (0), so neighbours never share a border.

Options:
    diameter: ``(lo, hi)`` px range of the typical neurite calibre, default ``(10, 120)``;
        profiles spread widely around it (a power diagram, shrunk by the membranes), so single
        profiles can fall outside the range.
    membrane: membrane width in px, default 1.5-3.5.
    mitochondria: expected mitochondria per neurite, default 0.1-0.6.
    blur: blur sigma in px, default 0.4-1.2.
    noise: Gaussian noise sigma relative to the cytoplasm level, default 0.03-0.1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from napari_seem.datasets.gen_nuclei import draw_sizes
from napari_seem.datasets.instances import boundary_mask, tidy
from napari_seem.datasets.render import (
    paint_blobs,
    place_centres,
    random_blobs,
    smooth_noise,
    texture,
)
from napari_seem.datasets.scene import Options, Scene, size_range

__all__ = ["EM_OPTIONS", "generate_em"]

EM_OPTIONS = ("diameter", "membrane", "mitochondria", "blur", "noise")


def _tessellate(
    rng: np.random.Generator, shape: tuple[int, int], diameter: tuple[float, float]
) -> tuple[np.ndarray, float]:
    """``(H, W)`` int64 region ids 1..N of a warped power diagram and the typical diameter."""
    h, w = shape
    typical, draw_radius = draw_sizes(rng, diameter, float(rng.uniform(0.3, 0.55)))
    centres, radii = place_centres(
        rng, shape, draw_radius, coverage=1.0, touching=0.9, min_gap=0.75, margin=0.6
    )
    weight = radii * 0.9
    lift = np.sqrt(np.max(weight) ** 2 - weight**2)
    tree = cKDTree(np.column_stack([centres, lift]))
    amp = typical * float(rng.uniform(0.12, 0.3))
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float32)
    rr += amp * smooth_noise(rng, shape, 0.9 * typical)
    cc += amp * smooth_noise(rng, shape, 0.9 * typical)
    query = np.column_stack([rr.ravel(), cc.ravel(), np.zeros(h * w, np.float32)])
    _, idx = tree.query(query)
    return (np.asarray(idx).reshape(shape) + 1).astype(np.int64), typical


def generate_em(rng: np.random.Generator, shape: tuple[int, int], **options: Any) -> Scene:
    """One EM scene of packed neurites (see the module docstring)."""
    opt = Options("em", options, EM_OPTIONS)
    diameter = size_range(opt.get("diameter", (10.0, 120.0)))
    width = float(opt.get("membrane", rng.uniform(1.5, 3.5)))
    mito_rate = float(opt.get("mitochondria", rng.uniform(0.1, 0.6)))
    blur = float(opt.get("blur", rng.uniform(0.4, 1.2)))
    noise = float(opt.get("noise", rng.uniform(0.03, 0.1)))

    raw, typical = _tessellate(rng, shape, diameter)
    border = ndimage.distance_transform_edt(~boundary_mask(raw))
    raw[border <= max(width - 2.0, 0.0) / 2.0] = 0
    # round the corners: extracellular space shows as dark gaps where three neurites meet
    corner = float(np.clip(typical * 0.08, 1.0, 4.0))
    yy, xx = np.mgrid[-4:5, -4:5]
    raw[~ndimage.binary_opening(raw > 0, structure=yy**2 + xx**2 <= corner**2)] = 0
    labels, classes = tidy(raw, {int(i): "neurite" for i in np.unique(raw) if i}, min_size=12)
    n = len(classes)
    inside = labels > 0
    depth = ndimage.distance_transform_edt(inside).astype(np.float32)

    level = np.concatenate([[0.0], rng.uniform(0.66, 0.82, n)])
    grain = 0.07 * texture(rng, shape, 0.6, 1.6) + 0.05 * texture(rng, shape, 1.5, 6.0)
    cyto = level[labels] * (1.0 + grain)
    # membranes: a dark band centred on the background pixels between neurites
    sigma = max(width / 2.5, 0.8)
    mem = np.exp(-(depth**2) / (2 * sigma**2))
    grey = cyto * (1.0 - float(rng.uniform(0.55, 0.8)) * mem) + 0.18 * (~inside) * (1 + grain)
    grey = grey * (1.0 - _organelles(rng, shape, depth, typical, mito_rate, n))
    grey += 0.05 * smooth_noise(rng, shape, 0.5 * max(shape))
    grey = ndimage.gaussian_filter(grey, blur)
    grey += rng.normal(0.0, noise * 0.75, shape)
    gain, offset = rng.uniform(180, 280), rng.uniform(-20, 20)
    image = np.clip(np.rint(grey * gain + offset), 0, 255).astype(np.uint8)
    meta = {**opt.resolved, "typical_diameter": typical}
    return Scene(image, labels, classes, ("neurite",), meta)


def _organelles(
    rng: np.random.Generator,
    shape: tuple[int, int],
    depth: np.ndarray,
    typical: float,
    rate: float,
    n: int,
) -> np.ndarray:
    """``(H, W)`` float32 darkening in ``[0, 1)`` from mitochondria and vesicle clusters, each
    drawn wholly inside one neurite (``depth`` is the distance to the nearest membrane)."""
    dark = np.zeros(shape, np.float32)
    # mitochondria: elongated, dark, with a darker double membrane and cristae stripes
    rm = float(np.clip(typical * 0.09, 2.5, 9.0))
    room = np.flatnonzero(depth.ravel() > 2.2 * rm + 2)
    k = min(int(rng.poisson(rate * n)), len(room))
    if k:
        at = rng.choice(room, k, replace=False)
        cen = np.column_stack(np.unravel_index(at, shape)).astype(np.float64)
        long = np.minimum(depth.ravel()[at] - 2, 2.2 * rm)
        blobs = random_blobs(rng, cen, np.sqrt(long * rm * 0.6), aspect=(1.5, 3.0), roughness=0.04)
        _, _, body = paint_blobs(shape, blobs, profile=lambda d: np.ones_like(d))
        _, _, rim = paint_blobs(shape, blobs, profile=lambda d: np.exp(-(((d - 0.9) / 0.12) ** 2)))
        cristae = 0.5 + 0.5 * np.sin(
            np.arange(shape[1])[None, :] * 1.3 + np.arange(shape[0])[:, None] * 0.7
        )
        dark += np.minimum(body, 1) * (0.3 + 0.15 * cristae) + 0.35 * np.minimum(rim, 1)
    # synaptic vesicles: clusters of small dark rings
    room = np.flatnonzero(depth.ravel() > 6)
    clusters = min(int(rng.poisson(0.15 * n)), len(room))
    if clusters:
        seeds = rng.choice(room, clusters, replace=False)
        sizes = rng.integers(5, 25, clusters)
        base = np.repeat(np.column_stack(np.unravel_index(seeds, shape)), sizes, axis=0)
        cen = base + rng.normal(0, 3.5, base.shape)
        ok = (
            depth[
                np.clip(cen[:, 0].astype(int), 0, shape[0] - 1),
                np.clip(cen[:, 1].astype(int), 0, shape[1] - 1),
            ]
            > 4
        )
        cen = cen[ok]
        ves = random_blobs(
            rng, cen, rng.uniform(1.8, 2.8, len(cen)), aspect=(1.0, 1.2), roughness=0.0
        )
        _, _, ring = paint_blobs(
            shape, ves, profile=lambda d: np.exp(-(((d - 0.85) / 0.3) ** 2)), extent=1.3
        )
        dark += 0.35 * np.minimum(ring, 1.5)
    return np.clip(dark, 0, 0.85)
