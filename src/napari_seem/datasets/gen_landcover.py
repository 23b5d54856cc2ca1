"""Multi-band land cover (Landsat-like surface reflectance): fields, forest, water, roads,
buildings.

Layout: a rotated, jittered grid of field parcels (straight borders); forest patches from a
smooth random field plus whole wooded parcels; a lake and / or a meandering river; a few roads
along and across the grid; villages of rotated rectangular buildings beside the roads. Spectra
come from a small library (per band reflectance of crops, bare soil, forest, clear / turbid
water, asphalt, roofs) with per-object variation, row texture in fields, canopy texture in
forest, haze, mixed pixels at borders (blur) and sensor noise.

Image: ``(H, W, B)`` float32 reflectance (about 0-0.6), ``B`` = 4, 5 or 6 bands, in the order of
``meta["band_names"]`` (blue, green, red, nir, swir1, swir2: Landsat TM/ETM+ bands 1-5 and 7).
Truth: every pixel belongs to one instance; each field parcel, building, forest patch, water body
and road network (each connected piece) is an instance with class ``"water"``, ``"forest"``,
``"field"``, ``"road"`` or ``"building"``; :meth:`Scene.class_map` gives the semantic map.

Options:
    bands: number of bands, 4-6 (default 6).
    field_size: ``(lo, hi)`` parcel size in px, default ``(20, 70)``.
    forest: fraction of forest, default 0.05-0.45.
    water: ``"lake"``, ``"river"``, ``"both"`` or ``"none"`` (default random).
    roads: number of roads, default 1-4.
    buildings: number of villages, default 0-3.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from napari_seem.datasets.instances import tidy
from napari_seem.datasets.render import log_uniform, smooth_noise, texture
from napari_seem.datasets.scene import Options, Scene, size_range

__all__ = ["BAND_NAMES", "LANDCOVER_OPTIONS", "LAND_CLASSES", "generate_landcover"]

LANDCOVER_OPTIONS = ("bands", "field_size", "forest", "water", "roads", "buildings")
LAND_CLASSES = ("water", "forest", "field", "road", "building")
BAND_NAMES = ("blue", "green", "red", "nir", "swir1", "swir2")
_SPECTRA = {
    "crop": (0.04, 0.08, 0.05, 0.42, 0.24, 0.11),
    "soil": (0.10, 0.14, 0.18, 0.24, 0.33, 0.27),
    "forest": (0.03, 0.05, 0.03, 0.30, 0.14, 0.055),
    "water": (0.035, 0.03, 0.018, 0.01, 0.005, 0.003),
    "turbid": (0.06, 0.07, 0.05, 0.03, 0.012, 0.008),
    "road": (0.09, 0.10, 0.11, 0.13, 0.16, 0.15),
    "roof": (0.14, 0.15, 0.17, 0.21, 0.25, 0.22),
    "tile": (0.08, 0.09, 0.20, 0.25, 0.30, 0.24),
}


def _segment_distance(rr: np.ndarray, cc: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Distance (px) of every pixel to the line segment from ``p`` to ``q`` (row, col)."""
    d = q - p
    t = np.clip(((rr - p[0]) * d[0] + (cc - p[1]) * d[1]) / max(float(d @ d), 1e-9), 0, 1)
    return np.hypot(rr - p[0] - t * d[0], cc - p[1] - t * d[1])


def _layout(
    rng: np.random.Generator, shape: tuple[int, int], opt: Options
) -> tuple[np.ndarray, dict[int, str], dict[int, str]]:
    """Raw ids ``(H, W)`` (may be in pieces), id -> class and id -> spectrum name."""
    h, w = shape
    size = size_range(opt.get("field_size", (20.0, 70.0)), "field_size")
    forest_frac = float(opt.get("forest", rng.uniform(0.05, 0.45)))
    water = str(
        opt.get(
            "water", ("lake", "river", "both", "none")[int(rng.choice(4, p=[0.35, 0.35, 0.2, 0.1]))]
        )
    )
    n_roads = int(opt.get("roads", int(rng.integers(1, 5))))
    n_villages = int(opt.get("buildings", int(rng.integers(0, 4))))
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float32)
    # field parcels: nearest node of a rotated, jittered grid
    step = log_uniform(rng, *size)
    theta = rng.uniform(0, np.pi / 2)
    span = int(np.ceil(np.hypot(h, w) / step)) + 2
    gy, gx = np.mgrid[-span:span, -span:span].astype(np.float64) * step
    gx *= rng.uniform(1.0, 2.0)  # oblong parcels
    pts = np.column_stack([gy.ravel(), gx.ravel()]) + rng.normal(0, 0.18 * step, (gy.size, 2))
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    pts = pts @ rot.T + (h / 2, w / 2)
    _, idx = cKDTree(pts).query(np.column_stack([rr.ravel(), cc.ravel()]))
    raw = np.asarray(idx).reshape(shape).astype(np.int64) + 1
    n_fields = len(pts)
    cls = {i + 1: "field" for i in range(n_fields)}
    spec = {i + 1: "crop" for i in range(n_fields)}
    nid = n_fields + 1
    # forest: smooth patches, and some whole parcels
    wood = smooth_noise(rng, shape, rng.uniform(40, 90)) > np.quantile(
        rng.standard_normal(4096), 1 - forest_frac
    )
    wood |= np.isin(raw, 1 + np.flatnonzero(rng.random(n_fields) < forest_frac * 0.3))
    raw[wood] = nid
    cls[nid], spec[nid] = "forest", "forest"
    nid += 1
    # water
    wet = np.zeros(shape, bool)
    if water in ("lake", "both"):
        wet |= smooth_noise(rng, shape, rng.uniform(50, 110)) > rng.uniform(1.2, 2.0)
    if water in ("river", "both"):
        b = theta + 0.5
        along = (rr - h / 2) * np.cos(b) + (cc - w / 2) * np.sin(b)
        across = -(rr - h / 2) * np.sin(b) + (cc - w / 2) * np.cos(b)
        meander = rng.uniform(8, 25) * np.sin(along / rng.uniform(20, 45)) + 15 * smooth_noise(
            rng, shape, 80
        )
        offset = rng.uniform(-0.3, 0.3) * max(h, w)
        wet |= np.abs(across - offset - meander) < rng.uniform(2.5, 8)
    raw[wet] = nid
    cls[nid], spec[nid] = "water", ("water", "turbid")[int(rng.integers(2))]
    nid += 1
    # roads along or across the parcel grid
    road = np.zeros(shape, bool)
    ends = []
    for k in range(n_roads):
        a = theta + (0 if k % 2 == 0 else np.pi / 2) + rng.normal(0, 0.05)
        mid = rng.uniform(0.1, 0.9, 2) * (h, w)
        half = np.hypot(h, w) * np.array([np.cos(a), np.sin(a)])
        p, q = mid - half, mid + half
        ends.append((p, q))
        road |= _segment_distance(rr, cc, p, q) < rng.uniform(1.0, 2.5)
    raw[road] = nid
    cls[nid], spec[nid] = "road", "road"
    nid += 1
    # villages: rotated rectangles along a road, never on water or road
    for _ in range(n_villages if ends else 0):
        p, q = ends[int(rng.integers(len(ends)))]
        centre = p + rng.uniform(0.3, 0.7) * (q - p)
        a = float(np.arctan2(q[1] - p[1], q[0] - p[0]))
        for _b in range(int(rng.integers(5, 25))):
            c = centre + rng.normal(0, 18, 2)
            bh, bw = rng.uniform(2.5, 6), rng.uniform(3, 9)
            top, left = int(c[0]) - 14, int(c[1]) - 14
            wr, wc = (
                rr[max(top, 0) : top + 29, max(left, 0) : left + 29],
                cc[max(top, 0) : top + 29, max(left, 0) : left + 29],
            )
            u = (wr - c[0]) * np.cos(a) + (wc - c[1]) * np.sin(a)
            v = -(wr - c[0]) * np.sin(a) + (wc - c[1]) * np.cos(a)
            foot = (np.abs(u) < bw) & (np.abs(v) < bh)
            win = raw[max(top, 0) : top + 29, max(left, 0) : left + 29]
            if (
                not foot.any()
                or (win[foot] >= n_fields + 3).any()
                or wet[max(top, 0) : top + 29, max(left, 0) : left + 29][foot].any()
            ):
                continue
            if (win[ndimage.binary_dilation(foot, iterations=2)] > n_fields + 3).any():
                continue
            win[foot] = nid
            cls[nid], spec[nid] = "building", ("roof", "tile")[int(rng.integers(2))]
            nid += 1
    return raw, cls, spec


def generate_landcover(rng: np.random.Generator, shape: tuple[int, int], **options: Any) -> Scene:
    """One multi-band land-cover scene (see the module docstring)."""
    opt = Options("landcover", options, LANDCOVER_OPTIONS)
    n_bands = int(opt.get("bands", 6))
    if not 4 <= n_bands <= 6:
        raise ValueError(f"bands must be 4, 5 or 6, got {n_bands}")
    raw, cls, spec = _layout(rng, shape, opt)
    labels, classes = tidy(raw, cls, min_size=4, split=True)
    # each final instance keeps the spectrum family of the raw id it came from
    owner = np.zeros(len(classes) + 1, np.int64)
    owner[labels.ravel()] = raw.ravel()
    n = len(classes)
    lib = {k: np.asarray(v, np.float32) for k, v in _SPECTRA.items()}
    table = np.zeros((n + 1, 6), np.float32)
    veg = rng.uniform(0, 1, n + 1)
    gain = rng.uniform(0.85, 1.15, n + 1)
    for i in range(1, n + 1):
        family = spec[int(owner[i])]
        if family == "crop":
            table[i] = veg[i] * lib["crop"] + (1 - veg[i]) * lib["soil"]
        else:
            table[i] = lib[family]
        table[i] *= gain[i]
    h, w = shape
    is_field = np.asarray([classes.get(i) == "field" for i in range(n + 1)])[labels]
    is_forest = np.asarray([classes.get(i) == "forest" for i in range(n + 1)])[labels]
    row_dir = rng.uniform(0, np.pi, n + 1).astype(np.float32)[labels]
    freq = np.float32(rng.uniform(1.2, 2.5))
    ar, ac = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
    rows = np.sin((ar * np.cos(row_dir) + ac * np.sin(row_dir)) * freq)
    canopy = texture(rng, shape, 0.7, 2.5)
    mod = (
        1.0
        + 0.03 * rows * is_field
        + 0.12 * canopy * is_forest
        + 0.03 * smooth_noise(rng, shape, 30)
    )
    haze = rng.uniform(0.0, 0.04) * (1 + 0.5 * smooth_noise(rng, shape, 120))
    haze_spec = np.array([1.0, 0.7, 0.45, 0.2, 0.05, 0.02], np.float32)
    sigma = float(rng.uniform(0.4, 0.9))
    noise = float(rng.uniform(0.002, 0.008))
    out = np.empty((h, w, n_bands), np.float32)
    for b in range(n_bands):  # band by band: contiguous (H, W) planes filter fast
        plane = table[:, b][labels] * mod + haze * haze_spec[b]
        plane = ndimage.gaussian_filter(plane.astype(np.float32), sigma)
        plane += rng.normal(0, noise, shape).astype(np.float32)
        out[..., b] = np.clip(plane, 0, None)
    image = out
    meta = {**opt.resolved, "band_names": BAND_NAMES[:n_bands]}
    return Scene(np.ascontiguousarray(image), labels, classes, LAND_CLASSES, meta)
