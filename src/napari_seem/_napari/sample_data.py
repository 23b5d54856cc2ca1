"""Sample data contributions (generated, nothing downloaded)."""

from __future__ import annotations

from typing import Any

from napari_seem.datasets.synthetic import synthetic_nuclei


def synthetic_nuclei_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """A seeded synthetic fluorescence image with its exact instance labels."""
    scene = synthetic_nuclei(seed=0)
    return [
        (scene.image, {"name": "synthetic nuclei", "colormap": "gray"}, "image"),
        (scene.labels, {"name": "synthetic nuclei (truth)", "opacity": 0.4}, "labels"),
    ]
