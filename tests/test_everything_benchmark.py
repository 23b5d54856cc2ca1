"""``benchmarks.nuclei_mosaic`` and ``benchmarks.everything_throughput``'s pieces on a small
real slide: the tiled truth scores itself F1 1, a damaged copy scores what it should, the
watershed peer finds the nuclei, and the section renders every figure with its model,
weights and scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from benchmarks import nuclei_mosaic
from benchmarks.everything_throughput import render_section


def _write(path: Path, labels: np.ndarray) -> Path:
    array = zarr.create_array(store=str(path), shape=labels.shape, chunks=(256, 256), dtype="u4")
    array[...] = labels.astype(np.uint32)
    return path


def test_truth_scores_itself_and_damage_counts(tmp_path: Path) -> None:
    slide = nuclei_mosaic.build_mosaic(tmp_path / "slide.zarr", 600)
    image = np.asarray(zarr.open_array(str(slide.path), mode="r")[...])
    assert image.shape == (600, 600) and image.dtype == np.uint8
    assert np.array_equal(image[:450, :450], slide.image)  # copies edge to edge
    assert np.array_equal(image[450:, :150], slide.image[:150, :150])
    truth = nuclei_mosaic.truth_block(slide, 0, 0, 600, 600)
    assert slide.objects == len(np.unique(truth)) - 1 > 152  # more than one copy's nuclei
    perfect = nuclei_mosaic.score_labels(slide, _write(tmp_path / "t.zarr", truth))
    assert perfect["f1"] == 1.0 and perfect["matched"] == slide.objects
    # drop half the objects: recall 0.5, precision 1
    ids = np.unique(truth[truth > 0])
    half = np.where(np.isin(truth, ids[::2]), truth, 0)
    scored = nuclei_mosaic.score_labels(slide, _write(tmp_path / "h.zarr", half))
    assert scored["precision"] == 1.0
    assert abs(scored["recall"] - len(ids[::2]) / len(ids)) < 1e-9
    peer = nuclei_mosaic.watershed_slide(slide, tmp_path / "w.zarr")
    quality = nuclei_mosaic.score_labels(slide, peer["labels"])
    assert quality["f1"] > 0.8  # the thresholded truth is easy for a threshold method


def test_section_names_model_weights_and_scale() -> None:
    quality = {
        "truth": 10,
        "predicted": 8,
        "matched": 7,
        "precision": 0.875,
        "recall": 0.7,
        "f1": 0.778,
    }
    result = {
        "machine": {
            "date": "d",
            "cpu_model": "c",
            "usable_cores": 2,
            "logical_cores": 2,
            "torch_threads": 2,
            "torch_version": "t",
            "python_version": "p",
            "platform": "x",
            "napari_seem_version": "v",
            "commit": None,
        },
        "settings": {
            "image": "A9 p7d",
            "vocabulary": "nucleus",
            "tile": 1024,
            "halo": 64,
            "mode": "auto (points)",
        },
        "wall_s": 60.0,
        "load_average": {"start": [1, 1, 1], "end": [1, 1, 1]},
        "sizes": [
            {
                "size": 2048,
                "rows": [
                    {
                        "config": "Dask, 2 workers",
                        "wall_s": 100.0,
                        "cpu_s": 190.0,
                        "megapixels_per_s": 0.0419,
                        "quality": quality,
                        "objects": 8,
                        "peak_rss_bytes": 2**30,
                        "load_1m": 1.5,
                    }
                ],
                "floor": {
                    "encode_s": 50.0,
                    "cpu_s": float("nan"),
                    "megapixels_per_s": 0.0839,
                    "peak_rss_bytes": float("nan"),
                    "load_1m": None,
                },
            }
        ],
    }
    text = "\n".join(render_section(result))
    assert "| 2,048^2 | seem-lite `segment`, Dask, 2 workers | shipped (trained) | native" in text
    assert "| 0.042 | 0.778 | 0.88 / 0.70 | 8 | 1,024 MiB | 1.5 |" in text
    assert "encoding alone (floor) | shipped (trained) | native (2.25x) | 50 | n/a | 0.084" in text
