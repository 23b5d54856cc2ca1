"""Whole cells with cytoplasm, membrane and nucleus, in three imaging modes.

``cells``: fluorescence of a membrane stain (bright outlines, dim interior) or a cytoplasm stain
(bright bodies, dark nucleus, dark seams between touching cells). ``phase_contrast``: grey cells
with the bright halo and bright seams of Zernike phase contrast. ``brightfield``: nearly
transparent cells seen through defocus (dark / bright rims) on a bright, uneven field.

Image: ``(H, W)`` uint8 or uint16. Truth: one instance per cell (class ``"cell"``), the nucleus
included; ``meta["nuclei"]`` is an ``(H, W)`` int32 map giving each nucleus the id of its cell.

Options:
    diameter: ``(lo, hi)`` cell equivalent diameters in px, default ``(12, 400)`` (log-uniform
        typical size, so both small cells and large 50-400 px cells occur). A free cell's
        size stays in the range; in a confluent sheet neighbours cut cells smaller.
    density: ``"sparse"``, ``"medium"``, ``"crowded"`` or a coverage fraction.
    confluent: pack cells into sheets that share borders (default random; crowded: likely).
    stain: ``cells`` only: ``"membrane"`` or ``"cytoplasm"`` (default random).
    dtype: ``"uint8"`` or ``"uint16"`` (default: random for fluorescence, uint8 otherwise).
    blur: optical blur sigma in px, default 0.5-1.5.
    photons: photo-electrons at the typical signal, default 40-3000 (fluorescence) or
        300-5000 (transmitted light).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage

from napari_seem.datasets.gen_nuclei import draw_sizes, illumination
from napari_seem.datasets.instances import boundary_mask, tidy
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

__all__ = ["CELL_OPTIONS", "CellLayout", "cell_layout", "generator_for"]

CELL_OPTIONS = ("diameter", "density", "confluent", "stain", "dtype", "blur", "photons")


class CellLayout:
    """Cells and nuclei as drawn, before any imaging.

    Attributes:
        labels: ``(H, W)`` int32 final cell ids ``1..N``.
        classes: id -> ``"cell"``.
        depth: ``(H, W)`` float32 in ``[0, 1]``: 1 at a cell's centre, 0 at its outline and
            outside (a thickness profile).
        nucleus: ``(H, W)`` int32 cell id inside that cell's nucleus, else 0.
        seam: ``(H, W)`` float32 distance in px to the nearest cell outline or shared border.
        level: ``(N + 1,)`` float64 per-cell brightness factor (index 0 unused).
        typical: typical cell diameter in px.
    """

    def __init__(
        self,
        labels: np.ndarray,
        classes: dict[int, str],
        depth: np.ndarray,
        nucleus: np.ndarray,
        seam: np.ndarray,
        level: np.ndarray,
        typical: float,
    ) -> None:
        self.labels, self.classes, self.depth = labels, classes, depth
        self.nucleus, self.seam, self.level, self.typical = nucleus, seam, level, typical


def cell_layout(
    rng: np.random.Generator,
    shape: tuple[int, int],
    diameter: tuple[float, float],
    coverage: float,
    confluent: bool,
) -> CellLayout:
    """Place, shape and rasterise cells with their nuclei."""
    typical, draw_radius = draw_sizes(rng, diameter, float(rng.uniform(0.1, 0.3)))
    extent = 1.3 if confluent else 1.0
    centres, radii = place_centres(
        rng,
        shape,
        draw_radius,
        coverage=min(coverage * (1.6 if confluent else 1.0), 0.9),
        touching=0.85 if confluent else 0.15,
        min_gap=0.8 if confluent else 1.0,
    )
    n = len(radii)
    blobs = random_blobs(
        rng, centres, radii / extent, aspect=(1.0, 2.2), roughness=0.16, harmonics=5
    )
    raw, dist, _ = paint_blobs(shape, blobs, extent=extent)
    # nuclei: an ellipse near each cell's centre, aligned with the cell
    shift = rng.uniform(0, 0.25, (n, 1)) * radii[:, None] * _unit(rng, n)
    nuc_r = np.maximum(radii * rng.uniform(0.25, 0.42, n), 2.5)
    nuclei = random_blobs(
        rng, centres + shift, nuc_r, aspect=(1.0, 1.5), roughness=0.05, angle=blobs.angle
    )
    nuc_raw, _, _ = paint_blobs(shape, nuclei)
    labels, classes = tidy(raw, {i: "cell" for i in range(1, n + 1)}, min_size=8)
    nucleus = np.where((nuc_raw == raw) & (raw > 0) & (labels > 0), labels, 0).astype(np.int32)
    depth = np.where(labels > 0, np.sqrt(np.clip(1.0 - (dist / extent) ** 2, 0, 1)), 0.0)
    seam = ndimage.distance_transform_edt(~boundary_mask(labels)).astype(np.float32)
    level = np.concatenate([[0.0], np.exp(rng.normal(0.0, 0.3, len(classes)))])
    return CellLayout(labels, classes, depth.astype(np.float32), nucleus, seam, level, typical)


def _unit(rng: np.random.Generator, k: int) -> np.ndarray:
    a = rng.uniform(0, 2 * np.pi, k)
    return np.stack([np.sin(a), np.cos(a)], -1)


def _common(
    rng: np.random.Generator, modality: str, options: dict[str, Any]
) -> tuple[Options, dict[str, Any]]:
    opt = Options(
        modality,
        options,
        CELL_OPTIONS if modality == "cells" else CELL_OPTIONS[:3] + CELL_OPTIONS[4:],
    )
    fluo = modality == "cells"
    drawn_density = ("sparse", "medium", "crowded")[int(rng.integers(3))]
    density = opt.get("density", drawn_density)
    coverage = density_coverage(density, rng)
    values = {
        "diameter": size_range(opt.get("diameter", (12.0, 400.0))),
        "coverage": coverage,
        "confluent": bool(
            opt.get("confluent", bool(rng.random() < (0.8 if coverage > 0.3 else 0.35)))
        ),
        "dtype": str(
            opt.get("dtype", ("uint8", "uint16")[int(rng.integers(2))] if fluo else "uint8")
        ),
        "blur": float(opt.get("blur", rng.uniform(0.5, 1.5))),
        "photons": float(
            opt.get("photons", log_uniform(rng, 40, 3000) if fluo else log_uniform(rng, 300, 5000))
        ),
    }
    if values["dtype"] not in ("uint8", "uint16"):
        raise ValueError(f"dtype must be 'uint8' or 'uint16', got {values['dtype']!r}")
    return opt, values


def _white(rng: np.random.Generator, dtype: str, fraction: float) -> int:
    top = 255 if dtype == "uint8" else (4095 if rng.random() < 0.5 else 65535)
    return int(top * fraction)


def _finish(
    rng: np.random.Generator,
    modality: str,
    lay: CellLayout,
    clean: np.ndarray,
    opt: Options,
    v: dict[str, Any],
    white_fraction: float,
) -> Scene:
    clean = ndimage.gaussian_filter(clean.astype(np.float32), v["blur"])
    white = _white(rng, v["dtype"], white_fraction)
    image = camera(
        clean,
        rng,
        photons=v["photons"],
        read_noise=float(rng.uniform(0.5, 5.0)),
        dtype=v["dtype"],
        white=white,
    )
    meta = {
        **opt.resolved,
        "density": v["coverage"],
        "confluent": v["confluent"],
        "white": white,
        "typical_diameter": lay.typical,
        "nuclei": lay.nucleus,
    }
    return Scene(image, lay.labels, lay.classes, ("cell",), meta)


def generate_fluorescent_cells(
    rng: np.random.Generator, shape: tuple[int, int], **options: Any
) -> Scene:
    """Fluorescent cells, membrane or cytoplasm stain (see the module docstring)."""
    opt, v = _common(rng, "cells", options)
    stain = str(opt.get("stain", ("membrane", "cytoplasm")[int(rng.integers(2))]))
    if stain not in ("membrane", "cytoplasm"):
        raise ValueError(f"stain must be 'membrane' or 'cytoplasm', got {stain!r}")
    lay = cell_layout(rng, shape, v["diameter"], v["coverage"], v["confluent"])
    lv = lay.level[lay.labels]
    inside = lay.labels > 0
    tex = texture(rng, shape, max(0.7, lay.typical / 60), max(2.0, lay.typical / 10))
    width = float(rng.uniform(0.8, 2.0))
    if stain == "membrane":
        ridge = np.exp(-(lay.seam**2) / (2 * width**2)) * inside
        body = 0.12 * (0.5 + lay.depth) * (1 + 0.5 * tex) * inside
        puncta = np.clip(texture(rng, shape, 0.8, 2.0) - 2.0, 0, None) * 0.3 * inside
        signal = lv * (ridge + body + puncta) * np.where(lay.nucleus > 0, 0.4, 1.0)
    else:
        seam = 1.0 - 0.45 * np.exp(-(lay.seam**2) / (2 * (width + 0.5) ** 2))
        body = (0.35 + 0.65 * lay.depth) * (1 + 0.2 * tex) * seam
        nuc = np.where(lay.nucleus > 0, rng.uniform(0.35, 0.7), 1.0)
        signal = lv * body * nuc * inside
    light = illumination(rng, shape, float(rng.uniform(0, 0.5)))
    bg = rng.uniform(0.02, 0.12) * (1 + 0.3 * smooth_noise(rng, shape, 0.4 * max(shape)))
    opt.resolved["stain"] = stain
    return _finish(
        rng, "cells", lay, signal * light + np.clip(bg, 0, None), opt, v, rng.uniform(0.45, 0.8)
    )


def _phase(rng: np.random.Generator, lay: CellLayout) -> np.ndarray:
    """Optical path length: thicker in the middle and over the nucleus, thin at the seams."""
    seam = 1.0 - np.exp(-(lay.seam**2) / 8.0)
    gran = np.clip(texture(rng, lay.labels.shape, 0.7, 2.0), 0, None) * 0.08
    phi = lay.level[lay.labels] ** 0.5 * (lay.depth**0.7 * seam + gran * (lay.labels > 0))
    return phi + 0.35 * (lay.nucleus > 0) * lay.depth


def generate_phase_contrast(
    rng: np.random.Generator, shape: tuple[int, int], **options: Any
) -> Scene:
    """Phase-contrast cells with halos (see the module docstring)."""
    opt, v = _common(rng, "phase_contrast", options)
    lay = cell_layout(rng, shape, v["diameter"], v["coverage"], v["confluent"])
    phi = _phase(rng, lay)
    halo = float(rng.uniform(2.5, 7.0)) * max(1.0, lay.typical / 80) ** 0.5
    hp = phi - ndimage.gaussian_filter(phi, halo)
    light = illumination(rng, shape, float(rng.uniform(0, 0.4)))
    grey = 0.5 - float(rng.uniform(0.5, 0.9)) * hp + 0.03 * smooth_noise(rng, shape, 20)
    return _finish(
        rng, "phase_contrast", lay, np.clip(grey, 0.02, None) * light, opt, v, rng.uniform(0.9, 1.4)
    )


def generate_brightfield(rng: np.random.Generator, shape: tuple[int, int], **options: Any) -> Scene:
    """Unstained bright-field cells seen through slight defocus (see the module docstring)."""
    opt, v = _common(rng, "brightfield", options)
    lay = cell_layout(rng, shape, v["diameter"], v["coverage"], v["confluent"])
    phi = _phase(rng, lay)
    defocus = float(rng.choice([-1.0, 1.0])) * float(rng.uniform(1.0, 3.0))
    lap = ndimage.gaussian_laplace(phi, 1.2)
    inside = lay.labels > 0
    granules = np.clip(texture(rng, shape, 0.7, 2.0) - 1.2, 0, None) * inside
    grey = 0.85 * (1.0 - float(rng.uniform(0.02, 0.06)) * phi - 0.08 * granules) + defocus * lap
    grey += 0.012 * texture(rng, shape, 0.8, 3.0)
    light = illumination(rng, shape, float(rng.uniform(0.1, 0.6)))
    return _finish(
        rng, "brightfield", lay, np.clip(grey, 0.02, None) * light, opt, v, rng.uniform(0.8, 1.0)
    )


def generator_for(modality: str) -> Callable[..., Scene]:
    """The generator function of ``cells``, ``phase_contrast`` or ``brightfield``."""
    return {
        "cells": generate_fluorescent_cells,
        "phase_contrast": generate_phase_contrast,
        "brightfield": generate_brightfield,
    }[modality]
