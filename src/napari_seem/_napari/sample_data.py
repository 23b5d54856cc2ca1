"""Sample data contributions (generated, nothing downloaded)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_seem.datasets.synthetic import synthetic_nuclei

__all__ = ["LAND_COVER_CLASSES", "land_cover_scene", "synthetic_land_cover_sample"]

LayerData = tuple[Any, dict[str, Any], str]

# Class id (1-based) -> name, and its mean reflectance in (blue, green, red, near-infrared),
# loosely like a 4-band optical satellite scene in reflectance x 10000.
LAND_COVER_CLASSES: dict[int, tuple[str, tuple[float, float, float, float]]] = {
    1: ("water", (900.0, 800.0, 500.0, 300.0)),
    2: ("forest", (400.0, 700.0, 450.0, 3500.0)),
    3: ("field", (700.0, 1100.0, 1300.0, 2800.0)),
    4: ("bare soil", (1400.0, 1700.0, 2100.0, 2500.0)),
    5: ("building", (1800.0, 1800.0, 1900.0, 2100.0)),
}
BAND_NAMES = ("blue", "green", "red", "near-infrared")


@dataclass(frozen=True)
class LandCoverScene:
    """A seeded multi-band scene.

    Attributes:
        bands: ``(4, H, W)`` uint16 reflectance x 10000 in (blue, green, red, NIR).
        labels: ``(H, W)`` uint32 class ids (``LAND_COVER_CLASSES``), no background.
        rgb: ``(H, W, 3)`` uint8 true-colour composite of the bands.
    """

    bands: np.ndarray
    labels: np.ndarray
    rgb: np.ndarray


def land_cover_scene(shape: tuple[int, int] = (384, 512), *, seed: int = 0) -> LandCoverScene:
    """A synthetic land-cover scene: smooth regions of five classes, a river and buildings."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    h, w = shape
    # Smooth random fields pick the natural cover: forest / field / bare soil.
    fields = [ndimage.gaussian_filter(rng.normal(size=shape), 24.0) for _ in range(3)]
    labels = (np.argmax(np.stack(fields), axis=0) + 2).astype(np.uint32)
    # A meandering river across the scene.
    rows, cols = np.mgrid[0:h, 0:w]
    centre = h * 0.55 + h * 0.12 * np.sin(cols / w * 2.0 * np.pi * 1.3 + rng.uniform(0, 6))
    labels[np.abs(rows - centre) < 9 + 3 * np.sin(cols / 37.0)] = 1
    # Rectangular buildings in one corner.
    for _ in range(14):
        r0, c0 = int(rng.uniform(10, h * 0.35)), int(rng.uniform(w * 0.55, w - 30))
        bh, bw = int(rng.uniform(8, 20)), int(rng.uniform(8, 24))
        labels[r0 : r0 + bh, c0 : c0 + bw] = 5
    means = np.array([LAND_COVER_CLASSES[i][1] for i in sorted(LAND_COVER_CLASSES)])
    bands = means[labels - 1].transpose(2, 0, 1)  # (4, H, W)
    texture = ndimage.gaussian_filter(rng.normal(size=(4, h, w)), (0, 2.0, 2.0)) * 600.0
    bands = bands * (1.0 + 0.08 * rng.normal(size=(4, 1, 1))) + texture
    bands += rng.normal(scale=60.0, size=bands.shape)
    bands16 = np.clip(bands, 0, 10000).astype(np.uint16)
    rgb = bands16[[2, 1, 0]].transpose(1, 2, 0).astype(np.float64)
    rgb = np.clip(rgb / np.percentile(rgb, 99.5) * 255.0, 0, 255).astype(np.uint8)
    return LandCoverScene(bands16, labels, rgb)


def synthetic_nuclei_sample() -> list[LayerData]:
    """A seeded synthetic fluorescence image with its exact instance labels."""
    scene = synthetic_nuclei(seed=0)
    return [
        (scene.image, {"name": "synthetic nuclei", "colormap": "gray"}, "image"),
        (scene.labels, {"name": "synthetic nuclei (truth)", "opacity": 0.4}, "labels"),
    ]


def synthetic_land_cover_sample() -> list[LayerData]:
    """A seeded 4-band land-cover scene, its true-colour composite and its class map."""
    import pandas as pd

    scene = land_cover_scene(seed=0)
    ids = sorted(LAND_COVER_CLASSES)
    features = pd.DataFrame({"index": ids, "class_name": [LAND_COVER_CLASSES[i][0] for i in ids]})
    return [
        (
            scene.bands,
            {
                "name": [f"land cover {b}" for b in BAND_NAMES],
                "channel_axis": 0,
                "visible": False,
                "colormap": ["blue", "green", "red", "gray"],
            },
            "image",
        ),
        (scene.rgb, {"name": "land cover (true colour)", "rgb": True}, "image"),
        (
            scene.labels,
            {"name": "land cover (truth)", "opacity": 0.35, "visible": False, "features": features},
            "labels",
        ),
    ]
