"""The ablation command's data and table (the model runs are measured, not unit-tested)."""

from __future__ import annotations

import pytest

from napari_seem.datasets.sampler import HELD_OUT_START
from napari_seem.evaluation.ablation import ablation_images, render


def test_synthetic_ablation_data_uses_held_out_seeds_only() -> None:
    items = ablation_images("small-nuclei")
    assert len(items) == 2
    for name, image, labels in items:
        assert int(name.rsplit(" ", 1)[1]) >= HELD_OUT_START
        assert image.shape[:2] == labels.shape and labels.max() > 5
    with pytest.raises(ValueError, match="choose from"):
        ablation_images("nope")


def test_render_has_a_row_per_part_and_the_baseline() -> None:
    row = {"iou_1": 0.5, "iou_3": 0.6, "iou_5": 0.7, "noc85": 4.0, "noc90": 6.0}
    result = {
        "rows": [
            {"method": "seem-lite", "refine": True, "find_scale": False, **row},
            {"method": "seeded watershed", **row},
        ]
    }
    table = render(result).splitlines()
    assert table[2].startswith("| seem-lite | on | off | 0.500 | 0.600 | 0.700 | 4.00 | 6.00")
    assert table[3].startswith("| seeded watershed |  |  |")
