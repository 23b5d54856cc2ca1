"""Fluorescence nuclei (DAPI / Hoechst-like widefield images).

Image: ``(H, W)`` uint8 or uint16 grey, bright nuclei on a dark, uneven background. Truth: one
instance per nucleus (class ``"nucleus"``); touching and overlapping nuclei keep separate ids and
share a border (an overlap belongs to the nucleus the pixel is deepest inside).

Options (a drawn default when not given; all recorded in ``meta``):
    diameter: ``(lo, hi)`` equivalent diameters in px, default ``(6, 60)``. A scene draws a
        typical diameter log-uniformly in the range and spreads object sizes around it, never
        outside the range.
    density: ``"sparse"``, ``"medium"``, ``"crowded"`` or a coverage fraction (default random).
    touching: probability that a nucleus is placed against another one, default 0.1-0.7.
    overlap: allow overlapping nuclei (up to ~20 % of the summed radii), default random.
    dtype: ``"uint8"`` or ``"uint16"`` (16-bit: 12-bit or full-range camera), default random.
    blur: optical blur sigma in px, default 0.4-1.8.
    photons: photo-electrons at the typical nucleus brightness, default 40-3000 (log-uniform).
    background: background level relative to a nucleus, default 0.02-0.2.
    uneven: relative amplitude of the illumination / background variation, default 0-0.6.
    populations: 1-3 size populations, each with its own typical diameter in the range
        (e.g. small and large nuclei side by side), default 1 (30 %: 2).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from napari_seem.datasets.instances import tidy
from napari_seem.datasets.render import (
    camera,
    log_uniform,
    paint_blobs,
    place_centres,
    random_blobs,
    smooth_noise,
    texture,
)
from napari_seem.datasets.scene import Options, Scene, density_coverage, size_range

__all__ = ["NUCLEI_OPTIONS", "draw_sizes", "generate_nuclei", "illumination"]

NUCLEI_OPTIONS = (
    "diameter",
    "density",
    "touching",
    "overlap",
    "dtype",
    "blur",
    "photons",
    "background",
    "uneven",
    "populations",
)


def draw_sizes(
    rng: np.random.Generator, diameter: tuple[float, float], spread: float
) -> tuple[float, Any]:
    """A scene's typical diameter and a function drawing one object radius (px).

    Diameters are kept a little inside ``diameter`` so that the measured equivalent diameter of
    the rasterised object (which rounds to whole pixels) stays inside the requested range.
    """
    lo, hi = diameter
    typical = float(log_uniform(rng, lo, hi))
    lo_eff = min(lo * 1.04 + 0.6, (lo + hi) / 2)
    hi_eff = max(hi * 0.97 - 0.4, lo_eff)

    def draw() -> float:
        d = typical * math.exp(rng.normal(0.0, spread))
        return min(max(d, lo_eff), hi_eff) / 2.0

    return float(typical), draw


def illumination(rng: np.random.Generator, shape: tuple[int, int], uneven: float) -> np.ndarray:
    """``(H, W)`` float32 multiplicative illumination around 1: a vignette plus smooth drift."""
    h, w = shape
    rr = (np.arange(h)[:, None] - rng.uniform(0.2, 0.8) * h) / max(h, w)
    cc = (np.arange(w)[None, :] - rng.uniform(0.2, 0.8) * w) / max(h, w)
    vignette = 1.0 - uneven * rng.uniform(0.3, 1.0) * (rr * rr + cc * cc)
    drift = 1.0 + 0.3 * uneven * smooth_noise(rng, shape, 0.6 * max(h, w))
    return np.clip(vignette * drift, 0.25, None).astype(np.float32)


def generate_nuclei(rng: np.random.Generator, shape: tuple[int, int], **options: Any) -> Scene:
    """One fluorescence-nuclei scene (see the module docstring for options)."""
    opt = Options("nuclei", options, NUCLEI_OPTIONS)
    diameter = size_range(opt.get("diameter", (6.0, 60.0)))
    coverage = density_coverage(
        opt.get("density", ("sparse", "medium", "crowded")[int(rng.integers(3))]), rng
    )
    touching = float(opt.get("touching", rng.uniform(0.1, 0.7)))
    overlap = bool(opt.get("overlap", bool(rng.random() < 0.5)))
    dtype = str(opt.get("dtype", ("uint8", "uint16")[int(rng.integers(2))]))
    blur = float(opt.get("blur", rng.uniform(0.4, 1.8)))
    photons = float(opt.get("photons", log_uniform(rng, 40, 3000)))
    background = float(opt.get("background", rng.uniform(0.02, 0.2)))
    uneven = float(opt.get("uneven", rng.uniform(0.0, 0.6)))
    if dtype not in ("uint8", "uint16"):
        raise ValueError(f"dtype must be 'uint8' or 'uint16', got {dtype!r}")

    pops = int(opt.get("populations", 1 if rng.random() < 0.7 else 2))
    if not 1 <= pops <= 3:
        raise ValueError(f"populations must be 1, 2 or 3, got {pops}")
    spread = float(rng.uniform(0.06, 0.2))
    drawers = [draw_sizes(rng, diameter, spread) for _ in range(pops)]
    typical = drawers[0][0]

    def draw_radius() -> float:
        return float(drawers[int(rng.integers(pops))][1]())

    centres, radii = place_centres(
        rng,
        shape,
        draw_radius,
        coverage=coverage,
        touching=touching,
        min_gap=0.78 if overlap else 0.97,
    )
    n = len(radii)
    blobs = random_blobs(rng, centres, radii, aspect=(1.0, 1.6), roughness=0.07, harmonics=3)
    levels = np.exp(rng.normal(0.0, 0.3, n)) * np.where(rng.random(n) < 0.05, 1.8, 1.0)
    edge = rng.uniform(0.25, 0.6)
    labels, _dist, field = paint_blobs(
        shape, blobs, levels=levels, profile=lambda d: (1.0 - d * d) ** edge
    )
    labels, classes = tidy(labels, {i: "nucleus" for i in range(1, n + 1)}, min_size=6)

    # chromatin: band-pass texture scaled to the nucleus size, strength per nucleus
    tex = texture(rng, shape, max(0.6, typical / 22), max(1.5, typical / 6))
    amp = np.concatenate([[0.0], rng.uniform(0.05, 0.35, n + 1)])[np.minimum(labels, n + 1)]
    signal = field * (1.0 + amp * tex)
    if typical >= 14:  # nucleoli: a few dim spots inside bigger nuclei
        k = int(rng.integers(0, 3 * n + 1))
        owner = rng.integers(0, n, k) if n else np.zeros(0, int)
        spot = radii[owner] * rng.uniform(0.1, 0.2, k)
        off = rng.uniform(0, 0.5, (k, 1)) * radii[owner, None] * _unit(rng, k)
        spots = random_blobs(rng, centres[owner] + off, spot, aspect=(1.0, 1.3), roughness=0.05)
        _, _, holes = paint_blobs(shape, spots, levels=rng.uniform(0.2, 0.5, k))
        signal = signal * (1.0 - np.minimum(holes, 0.6))
    haze = ndimage.gaussian_filter(field, 3 * blur + 2) * rng.uniform(0.0, 0.15)
    light = illumination(rng, shape, uneven)
    bg = background * (1.0 + 0.5 * uneven * smooth_noise(rng, shape, 0.3 * max(shape)))
    clean = ndimage.gaussian_filter((signal + haze) * light + np.clip(bg, 0, None), blur)
    white = _white(rng, dtype)
    image = camera(
        clean,
        rng,
        photons=photons,
        read_noise=float(rng.uniform(0.5, 6.0)),
        dtype=dtype,
        white=white,
    )
    meta = {
        "modality": "nuclei",
        "typical_diameter": typical,
        "typical_diameters": tuple(d[0] for d in drawers),
        "white": white,
        **opt.resolved,
        "density": coverage,
    }
    return Scene(image, labels, classes, ("nucleus",), meta)


def _unit(rng: np.random.Generator, k: int) -> np.ndarray:
    """``(k, 2)`` random unit vectors."""
    a = rng.uniform(0, 2 * np.pi, k)
    return np.stack([np.sin(a), np.cos(a)], -1)


def _white(rng: np.random.Generator, dtype: str) -> int:
    """Grey value of the typical object: 8-bit 110-210; 16-bit a 12-bit (800-3500) or
    full-range (6000-40000) camera."""
    if dtype == "uint8":
        return int(rng.integers(110, 211))
    if rng.random() < 0.5:
        return int(rng.integers(800, 3501))
    return int(rng.integers(6000, 40001))
