"""H&E-stained tissue (bright-field RGB): glands in fibrous stroma.

Stain model: each pixel holds a haematoxylin and an eosin amount; the colour follows
Beer-Lambert, ``rgb = 255 * exp(-(H * h + E * e))`` with per-scene jitter of the stain vectors
``h`` (purple-blue) and ``e`` (pink). Stroma is pink and fibrous with spindle-shaped stromal
nuclei and round dark lymphocytes; glands are rings of columnar epithelium (radially elongated
nuclei near the basement membrane) around a pale lumen.

Image: ``(H, W, 3)`` uint8 RGB. Truth (``target="nuclei"``, default): one instance per nucleus,
classes ``"epithelial nucleus"``, ``"stromal nucleus"``, ``"lymphocyte"``; ``meta["glands"]`` is
an ``(H, W)`` int32 gland map. ``target="glands"``: one instance per gland (epithelium and
lumen), class ``"gland"``.

Options:
    diameter: ``(lo, hi)`` px range of the scene's typical (epithelial) nucleus diameter, default
        ``(7, 20)`` (sets the magnification); stromal nuclei are 0.6-0.85 and lymphocytes
        0.5-0.62 times that diameter, glands 3-8 times it in radius.
    glands: fraction of the area in glands, default 0.1-0.45.
    target: ``"nuclei"`` or ``"glands"``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from napari_seem.datasets.gen_nuclei import draw_sizes
from napari_seem.datasets.instances import tidy
from napari_seem.datasets.render import (
    Blobs,
    paint_blobs,
    place_centres,
    random_blobs,
    smooth_noise,
    texture,
)
from napari_seem.datasets.scene import Options, Scene, size_range

__all__ = ["HE_CLASSES", "HE_OPTIONS", "generate_he"]

HE_OPTIONS = ("diameter", "glands", "target")
HE_CLASSES = ("epithelial nucleus", "stromal nucleus", "lymphocyte")
_H = np.array([0.650, 0.704, 0.286])
_E = np.array([0.06, 0.90, 0.32])


def _glands(
    rng: np.random.Generator, shape: tuple[int, int], typical: float, coverage: float
) -> tuple[Blobs, np.ndarray, np.ndarray, np.ndarray]:
    """Gland shapes, raw gland ids ``(H, W)``, normalised depth ``(H, W)`` and the per-gland
    lumen threshold (a pixel of gland ``i`` is lumen where depth < ``lumen[i]``)."""
    lo = min(3.0 * typical, 0.25 * min(shape))
    hi = max(min(8.0 * typical, 0.45 * min(shape)), lo)
    cen, rad = place_centres(
        rng,
        shape,
        lambda: float(rng.uniform(lo, hi)),
        coverage=coverage,
        touching=0.2,
        min_gap=1.08,
        margin=0.3,
    )
    blobs = random_blobs(rng, cen, rad, aspect=(1.0, 1.8), roughness=0.12, harmonics=4)
    raw, dist, _ = paint_blobs(shape, blobs)
    thick = typical * rng.uniform(1.5, 2.3, len(rad))
    lumen = np.clip(1.0 - thick / np.maximum(rad, 1.0), 0.0, 0.8)
    return blobs, raw, dist, lumen


def _epithelial(
    rng: np.random.Generator, glands: Blobs, lumen: np.ndarray, typical: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres ``(M, 2)``, radii ``(M,)`` and long-axis angles ``(M,)`` of the nuclei lining
    every gland, elongated along the radius."""
    cen, rad, ang = [], [], []
    for i in range(len(glands)):
        perimeter = 2 * np.pi * float(glands.radii[i])
        m = max(int(perimeter / (typical * rng.uniform(0.9, 1.2))), 3)
        theta = (
            np.linspace(0, 2 * np.pi, m, endpoint=False)
            + rng.uniform(0, 2 * np.pi)
            + rng.normal(0, 0.3 / m, m)
        )
        depth = 1.0 - (1.0 - lumen[i]) * rng.uniform(0.3, 0.45, m)
        p = glands.point(i, theta, depth)
        radial = p - glands.centres[i]
        cen.append(p)
        rad.append(typical / 2 * np.exp(rng.normal(0, 0.1, m)))
        ang.append(np.arctan2(radial[:, 1], radial[:, 0]))
    if not cen:
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0)
    return np.concatenate(cen), np.concatenate(rad), np.concatenate(ang)


def _keep_apart(cen: np.ndarray, rad: np.ndarray, gap: float) -> np.ndarray:
    """Indices of a greedy subset (in order) whose centres are ``gap * (r_i + r_j)`` apart."""
    kept: list[int] = []
    for i in range(len(rad)):
        if kept:
            k = np.asarray(kept)
            if np.min(np.hypot(*(cen[k] - cen[i]).T) - gap * (rad[k] + rad[i])) < 0:
                continue
        kept.append(i)
    return np.asarray(kept, int)


def generate_he(rng: np.random.Generator, shape: tuple[int, int], **options: Any) -> Scene:
    """One H&E tissue scene (see the module docstring)."""
    opt = Options("he", options, HE_OPTIONS)
    diameter = size_range(opt.get("diameter", (7.0, 20.0)))
    coverage = float(opt.get("glands", rng.uniform(0.1, 0.45)))
    target = str(opt.get("target", "nuclei"))
    if target not in ("nuclei", "glands"):
        raise ValueError(f"target must be 'nuclei' or 'glands', got {target!r}")
    h, w = shape
    typical, _ = draw_sizes(rng, diameter, 0.1)
    glands, graw, gdist, lumen = _glands(rng, shape, typical, coverage)
    lumen_mask = (graw > 0) & (gdist < np.concatenate([[0.0], lumen])[graw])
    epi_c, epi_r, epi_a = _epithelial(rng, glands, lumen, typical)
    # stroma: fibres follow a smooth flow field; spindle nuclei align with it
    flow = np.pi * smooth_noise(rng, shape, 4 * typical)
    n_str = int(rng.uniform(0.08, 0.25) * h * w / typical**2)
    str_c = rng.uniform(0, 1, (n_str, 2)) * (h, w)
    n_lym = int(rng.uniform(0.02, 0.15) * h * w / typical**2)
    lym_c = rng.uniform(0, 1, (n_lym, 2)) * (h, w)
    cen = np.concatenate([epi_c, str_c, lym_c])
    rad = np.concatenate(
        [
            epi_r,
            typical / 2 * rng.uniform(0.6, 0.85, n_str),
            typical / 2 * rng.uniform(0.5, 0.62, n_lym),
        ]
    )
    kind = np.concatenate([np.zeros(len(epi_r), int), np.ones(n_str, int), np.full(n_lym, 2)])
    ri = np.clip(cen[:, 0].astype(int), 0, h - 1)
    ci = np.clip(cen[:, 1].astype(int), 0, w - 1)
    ang = np.concatenate([epi_a, flow[ri[len(epi_r) :], ci[len(epi_r) :]]])
    grown = ndimage.binary_dilation(graw > 0, iterations=max(int(typical / 2), 1))
    ok = (kind == 0) | ~grown[ri, ci]
    keep = _keep_apart(cen[ok], rad[ok], 0.95)
    cen, rad, kind, ang = cen[ok][keep], rad[ok][keep], kind[ok][keep], ang[ok][keep]
    aspect = np.where(
        kind == 0,
        rng.uniform(1.3, 2.0, len(kind)),
        np.where(kind == 1, rng.uniform(2.5, 4.5, len(kind)), 1.05),
    )
    nuc = random_blobs(rng, cen, rad, aspect=(1.0, 1.0), roughness=0.06, angle=ang)
    nuc = Blobs(nuc.centres, nuc.radii, aspect, nuc.angle, nuc.amps, nuc.phases)
    level = np.array([1.0, 1.15, 1.5])[kind] * rng.uniform(0.8, 1.2, len(kind))
    nraw, _, hfield = paint_blobs(shape, nuc, levels=level, profile=lambda d: (1.0 - d * d) ** 0.3)
    names = {i + 1: HE_CLASSES[k] for i, k in enumerate(kind)}
    nlabels, nclasses = tidy(nraw, names, min_size=6)
    glabels, gclasses = tidy(graw, {int(i): "gland" for i in np.unique(graw) if i}, min_size=30)

    # stain amounts
    wave = 2 * np.pi / (typical * rng.uniform(0.8, 1.6))
    phase = (np.arange(h)[:, None] * np.cos(flow) + np.arange(w)[None, :] * np.sin(flow)) * wave
    phase = phase + 2.5 * smooth_noise(rng, shape, 1.5 * typical)
    fibre = np.abs(np.sin(phase)) ** 0.6
    tex = texture(rng, shape, 0.8, 3.0)
    strands = 0.5 + 0.5 * np.tanh(3 * (fibre - 0.35) + 0.8 * texture(rng, shape, 1.0, 4.0))
    eosin = rng.uniform(0.3, 0.55) * (0.3 + 0.8 * strands) * (1 + 0.15 * tex)
    eosin = np.where(smooth_noise(rng, shape, 3 * typical) > 1.7, 0.05, eosin)  # tears / fat
    haem = 0.03 + 0.02 * tex
    epi = (graw > 0) & ~lumen_mask
    eosin = np.where(epi, rng.uniform(0.35, 0.6) * (1 + 0.1 * tex), eosin)
    haem = np.where(epi, rng.uniform(0.06, 0.16) * (1 + 0.2 * tex), haem)
    secretion = rng.uniform(0.0, 0.2)
    eosin = np.where(lumen_mask, secretion * (1 + 0.3 * tex), eosin)
    haem = np.where(lumen_mask, 0.01, haem)
    chrom = 1.0 + 0.3 * texture(rng, shape, 0.6, 1.8)
    haem = haem + rng.uniform(1.0, 1.7) * hfield * chrom
    eosin = eosin * (1.0 - 0.5 * np.minimum(hfield, 1.0))
    hv = _H + rng.normal(0, 0.04, 3)
    ev = _E + rng.normal(0, 0.04, 3)
    hv, ev = hv / np.linalg.norm(hv), ev / np.linalg.norm(ev)
    od = haem[..., None] * hv + eosin[..., None] * ev + rng.uniform(0.0, 0.05)
    od = ndimage.gaussian_filter(od, (rng.uniform(0.4, 1.0),) * 2 + (0,))
    rgb = rng.uniform(235, 255) * np.exp(-od * rng.uniform(0.9, 1.4)) + rng.normal(0, 2.0, od.shape)
    image = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    meta = {
        **opt.resolved,
        "glands": glabels,
        "glands_fraction": coverage,
        "typical_diameter": typical,
    }
    if target == "glands":
        return Scene(image, glabels, gclasses, ("gland",), meta)
    return Scene(image, nlabels, nclasses, HE_CLASSES, meta)
