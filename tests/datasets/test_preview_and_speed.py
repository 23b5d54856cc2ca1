"""Preview pictures and the generator's speed."""

from __future__ import annotations

import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from napari_seem.datasets.generate import MODALITIES, generate
from napari_seem.datasets.preview import preview, write_png


def test_preview_png_is_image_beside_outlines(tmp_path: Path) -> None:
    scene = generate("nuclei", 1, (64, 80))
    pic = preview(scene)
    assert pic.shape == (64, 2 * 80 + 4, 3) and pic.dtype == np.uint8
    path = tmp_path / "p.png"
    write_png(path, pic)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    start = data.index(b"IDAT") + 4
    length = int.from_bytes(data[start - 8 : start - 4], "big")
    raw = np.frombuffer(zlib.decompress(data[start : start + length]), np.uint8)
    rows = raw.reshape(64, 1 + pic.shape[1] * 3)[:, 1:].reshape(pic.shape)
    np.testing.assert_array_equal(rows, pic)


@pytest.mark.parametrize("modality", MODALITIES)
def test_a_256_scene_takes_well_under_half_a_second_of_cpu(modality: str) -> None:
    generate(modality, 0)  # imports and first-call set-up
    start = time.process_time()
    for seed in range(1, 4):
        generate(modality, seed, (256, 256))
    per_scene = (time.process_time() - start) / 3
    assert per_scene < 0.5, f"{modality}: {per_scene:.3f} s of CPU per 256 x 256 scene"
