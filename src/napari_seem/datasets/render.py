"""Drawing primitives shared by the scene generators (numpy / scipy only, vectorised).

Coordinates are pixel ``(row, col)``; fields are ``(H, W)`` float32 unless stated. Objects are
star-convex blobs: a rotated ellipse whose radius is modulated by a few Fourier harmonics, so
shapes range from round nuclei to lobed or elongated cells. Overlapping blobs are resolved by
the smallest normalised distance to a blob's centre, which gives every pixel exactly one owner
and a clean shared border between touching objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "Blobs",
    "camera",
    "log_uniform",
    "paint_blobs",
    "place_centres",
    "random_blobs",
    "smooth_noise",
    "texture",
]


def log_uniform(
    rng: np.random.Generator, lo: float, hi: float, size: int | None = None
) -> float | np.ndarray:
    """Draw from a log-uniform distribution on ``[lo, hi]`` (scale-free sizes)."""
    out = np.exp(rng.uniform(np.log(lo), np.log(hi), size))
    return float(out) if size is None else out


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Smooth random field with unit standard deviation and features ``scale`` px across.

    White noise on a coarse grid (one node per ``scale`` px), interpolated with Gaussian
    weights by two small matrix products, so the cost does not grow with ``scale``.
    """
    h, w = shape
    step = max(float(scale), 1.0)
    gh, gw = int(np.ceil(h / step)) + 4, int(np.ceil(w / step)) + 4
    coarse = rng.standard_normal((gh, gw))

    def weights(n: int, g: int) -> np.ndarray:
        pos = np.arange(n) / step + 2.0
        wt = np.exp(-0.5 * ((pos[:, None] - np.arange(g)[None, :]) / 0.7) ** 2)
        return wt / wt.sum(1, keepdims=True)

    field = weights(h, gh) @ coarse @ weights(w, gw).T
    field -= field.mean()
    sd = field.std()
    return (field / (sd if sd > 0 else 1.0)).astype(np.float32)


def texture(
    rng: np.random.Generator, shape: tuple[int, int], fine: float, coarse: float
) -> np.ndarray:
    """Band-pass noise (difference of Gaussians, ``fine`` < ``coarse`` sigmas), unit std."""
    white = rng.standard_normal(shape).astype(np.float32)
    band = ndimage.gaussian_filter(white, fine) - ndimage.gaussian_filter(white, coarse)
    sd = band.std()
    return (band / (sd if sd > 0 else 1.0)).astype(np.float32)


@dataclass(frozen=True)
class Blobs:
    """N star-convex shapes.

    Attributes:
        centres: ``(N, 2)`` float64 (row, col) in pixels.
        radii: ``(N,)`` float64 equal-area radius in pixels (the area is ``pi r**2`` whatever
            the aspect and harmonics).
        aspect: ``(N,)`` float64 ratio of long to short axis, >= 1.
        angle: ``(N,)`` float64 orientation of the long axis, radians from the row axis.
        amps: ``(N, K)`` float64 amplitudes of harmonics 2..K+1 (sum below 0.6).
        phases: ``(N, K)`` float64 phases of those harmonics.
    """

    centres: np.ndarray
    radii: np.ndarray
    aspect: np.ndarray
    angle: np.ndarray
    amps: np.ndarray
    phases: np.ndarray

    def __len__(self) -> int:
        return len(self.radii)

    def axes(self, i: int) -> tuple[float, float]:
        """Semi-axes (long, short) in pixels of blob ``i`` before the harmonics."""
        comp = np.sqrt(1.0 + 0.5 * float(np.sum(self.amps[i] ** 2)))
        r = float(self.radii[i]) / comp
        k = np.sqrt(float(self.aspect[i]))
        return r * k, r / k

    def point(self, i: int, theta: np.ndarray, d: np.ndarray) -> np.ndarray:
        """``(M, 2)`` pixel positions at polar angle ``theta`` and normalised distance ``d``
        (0 = centre, 1 = outline) of blob ``i``."""
        a, b = self.axes(i)
        k = np.arange(2, 2 + self.amps.shape[1])
        rad = 1.0 + np.sum(
            self.amps[i] * np.cos(np.multiply.outer(theta, k) + self.phases[i]), axis=-1
        )
        u, v = d * rad * np.cos(theta) * a, d * rad * np.sin(theta) * b
        ca, sa = np.cos(self.angle[i]), np.sin(self.angle[i])
        return np.stack(
            [self.centres[i, 0] + u * ca - v * sa, self.centres[i, 1] + u * sa + v * ca], -1
        )


def random_blobs(
    rng: np.random.Generator,
    centres: np.ndarray,
    radii: np.ndarray,
    *,
    aspect: tuple[float, float] = (1.0, 1.5),
    roughness: float = 0.08,
    harmonics: int = 3,
    angle: np.ndarray | None = None,
) -> Blobs:
    """Random shapes at given centres (``(N, 2)``) and equal-area radii (``(N,)``).

    ``roughness`` bounds each harmonic amplitude; ``angle`` (``(N,)`` radians) fixes the
    orientations (random when ``None``).
    """
    n = len(radii)
    amps = rng.uniform(0.0, roughness, (n, harmonics)) / np.arange(1, harmonics + 1) ** 0.5
    amps = np.minimum(amps, 0.6 / harmonics)
    return Blobs(
        centres=np.asarray(centres, np.float64).reshape(n, 2),
        radii=np.asarray(radii, np.float64),
        aspect=rng.uniform(aspect[0], aspect[1], n),
        angle=rng.uniform(0, np.pi, n) if angle is None else np.asarray(angle, np.float64),
        amps=amps,
        phases=rng.uniform(0, 2 * np.pi, (n, harmonics)),
    )


Profile = Callable[[np.ndarray], np.ndarray]


def paint_blobs(
    shape: tuple[int, int],
    blobs: Blobs,
    *,
    levels: np.ndarray | None = None,
    profile: Profile | None = None,
    extent: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rasterise blobs; each pixel goes to the blob it is deepest inside.

    Args:
        shape: ``(H, W)``.
        blobs: the shapes; blob ``i`` gets id ``i + 1``.
        levels: ``(N,)`` weight of each blob in the accumulated field (default 1).
        profile: maps the normalised distance ``d`` in ``[0, extent)`` to a value added to the
            accumulated field over the blob's whole footprint (overlaps add, as fluorescence
            does); default ``1 - d**2``.
        extent: a blob covers ``d < extent`` (``> 1`` grows every blob, so that neighbours
            meet along shared borders, as in a confluent tissue).

    Returns:
        ``labels`` (H, W) int32 owner id (0 = none), ``dist`` (H, W) float32 normalised distance
        to the owner's centre (``inf`` where none) and ``field`` (H, W) float32 the sum of
        ``levels[i] * profile(d_i)`` over all blobs.
    """
    h, w = shape
    labels = np.zeros(shape, np.int32)
    best = np.full(shape, np.inf, np.float32)
    field = np.zeros(shape, np.float32)
    prof = profile if profile is not None else (lambda d: 1.0 - d * d)
    k = np.arange(2, 2 + blobs.amps.shape[1])
    for i in range(len(blobs)):
        a, b = blobs.axes(i)
        reach = a * (1.0 + float(np.sum(blobs.amps[i]))) * extent + 1.0
        r0, c0 = blobs.centres[i]
        top, bot = max(int(r0 - reach), 0), min(int(r0 + reach) + 2, h)
        left, right = max(int(c0 - reach), 0), min(int(c0 + reach) + 2, w)
        if top >= bot or left >= right:
            continue
        dr = (np.arange(top, bot) - r0)[:, None]
        dc = (np.arange(left, right) - c0)[None, :]
        ca, sa = np.cos(blobs.angle[i]), np.sin(blobs.angle[i])
        u = (dr * ca + dc * sa) / a
        v = (-dr * sa + dc * ca) / b
        theta = np.arctan2(v, u)
        rad = 1.0 + np.sum(blobs.amps[i] * np.cos(theta[..., None] * k + blobs.phases[i]), axis=-1)
        d = (np.hypot(u, v) / rad).astype(np.float32)
        inside = d < extent
        if not inside.any():
            continue
        win_best = best[top:bot, left:right]
        take = inside & (d < win_best)
        labels[top:bot, left:right][take] = i + 1
        win_best[take] = d[take]
        lv = 1.0 if levels is None else float(levels[i])
        field[top:bot, left:right][inside] += lv * prof(d[inside])
    return labels, best, field


def place_centres(
    rng: np.random.Generator,
    shape: tuple[int, int],
    draw_radius: Callable[[], float],
    *,
    coverage: float,
    touching: float,
    min_gap: float = 0.85,
    max_tries: int = 20000,
    margin: float = 0.5,
    patience: int = 400,
) -> tuple[np.ndarray, np.ndarray]:
    """Dart throwing: centres and radii until ``coverage`` of the image area is drawn.

    Args:
        draw_radius: returns a radius in pixels for the next object.
        coverage: target sum of ``pi r**2`` over the image area.
        touching: probability that a new object is placed against an earlier one (at
            ``min_gap``..1 times the sum of radii) rather than uniformly.
        min_gap: two centres are never closer than ``min_gap * (r_i + r_j)`` (``< 1`` allows
            overlap, ``1`` allows touching only).
        margin: centres may lie up to ``margin * r`` outside the image (objects cut by the edge).
        patience: stop after this many rejected tries in a row (the image is full).

    Returns:
        ``centres`` (N, 2) float64 (row, col) and ``radii`` (N,) float64.
    """
    h, w = shape
    cen = np.zeros((0, 2))
    rad = np.zeros(0)
    area = 0.0
    target = coverage * h * w
    misses = tries = 0
    batch = 32
    while area < target and misses < patience and tries < max_tries:
        # a batch of candidates, checked against the placed ones in one vectorised step
        r = np.array([draw_radius() for _ in range(batch)])
        p = np.column_stack(
            [rng.uniform(-margin * r, h + margin * r), rng.uniform(-margin * r, w + margin * r)]
        )
        if len(rad):
            near = rng.random(batch) < touching
            j = rng.integers(0, len(rad), batch)
            ang = rng.uniform(0, 2 * np.pi, batch)
            dist = (r + rad[j]) * rng.uniform(min_gap, max(min_gap + 0.05, 1.0), batch)
            nb = cen[j] + dist[:, None] * np.column_stack([np.sin(ang), np.cos(ang)])
            p = np.where(near[:, None], nb, p)
        tries += batch
        ok = (p[:, 0] >= -margin * r) & (p[:, 0] <= h + margin * r)
        ok &= (p[:, 1] >= -margin * r) & (p[:, 1] <= w + margin * r)
        if len(rad):
            gap = np.hypot(p[:, None, 0] - cen[None, :, 0], p[:, None, 1] - cen[None, :, 1])
            ok &= (gap - min_gap * (r[:, None] + rad[None, :])).min(1) >= 0
        taken: list[int] = []
        for i in np.flatnonzero(ok):  # candidates of one batch must also keep apart
            if taken:
                t = np.asarray(taken)
                if (np.hypot(*(p[t] - p[i]).T) - min_gap * (r[t] + r[i])).min() < 0:
                    continue
            taken.append(int(i))
            ext0 = min(p[i, 0] + r[i], h) - max(p[i, 0] - r[i], 0)
            ext1 = min(p[i, 1] + r[i], w) - max(p[i, 1] - r[i], 0)
            area += np.pi * max(ext0, 0) * max(ext1, 0) / 4  # the part inside the image
            if area >= target:
                break
        misses = 0 if taken else misses + batch
        if taken:
            cen = np.concatenate([cen, p[taken]])
            rad = np.concatenate([rad, r[taken]])
    return cen, rad


def camera(
    signal: np.ndarray,
    rng: np.random.Generator,
    *,
    photons: float,
    read_noise: float,
    dtype: str,
    white: int,
) -> np.ndarray:
    """Photon counting: Poisson shot noise, Gaussian read noise, quantisation.

    Args:
        signal: ``(H, W)`` expected intensity, 1.0 = ``photons`` photo-electrons.
        photons: photo-electrons at signal 1.0 (lower = noisier).
        read_noise: Gaussian read noise in photo-electrons.
        dtype: ``"uint8"`` or ``"uint16"``.
        white: grey value that signal 1.0 maps to before noise (e.g. 230, 4000, 60000).

    Returns:
        ``(H, W)`` image of ``dtype``, clipped to the dtype's range.
    """
    electrons = rng.poisson(np.clip(signal, 0, None) * photons).astype(np.float32)
    electrons += rng.normal(0.0, read_noise, signal.shape).astype(np.float32)
    grey = electrons * (white / photons)
    top = 255 if dtype == "uint8" else 65535
    return np.clip(np.rint(grey), 0, top).astype(dtype)
