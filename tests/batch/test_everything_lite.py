"""The default "segment everything" path (seem-lite, shipped weights, points mode, tiles
encoded in bfloat16 where the CPU has it) through the batch runner, on a real BBBC007
image tiled into a 500 x 500 zarr cut into 2 x 2 tiles:

- objects crossing the tile seams get one id (seam-aware merging on the new path);
- a two-worker Dask cluster writes the same labels as the in-process run;
- a run cancelled after its first tile and resumed writes the same labels;
- ``encode_tile`` keeps float32 features, and encodes text tasks exactly as before.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zarr

from napari_seem.batch import BatchConfig, ModelSpec, Task, segment_image
from napari_seem.batch.tasks import TaskSpec, encode_tile
from napari_seem.core.progress import pair_reporter

SPEC = ModelSpec("seem-lite", device="cpu", threads=1)
CONFIG = BatchConfig(tile=320, halo=32)


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from napari_seem.datasets.real import bbbc007

    item = {i.name: i for i in bbbc007()}["17P1_POS0007_D_1UL"]
    image = np.tile(item.image, (2, 2))[:500, :500]
    path = tmp_path_factory.mktemp("lite") / "slide.zarr"
    array = zarr.create_array(store=str(path), shape=image.shape, chunks=(250, 250), dtype="u1")
    array[...] = image
    return path


def _labels(summary: Any) -> np.ndarray:
    return np.asarray(zarr.open_array(summary.labels, mode="r")[...])


@pytest.mark.slow
def test_points_path_merges_seams_equals_dask_and_resumes(slide: Path, tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    task = Task.from_options(vocabulary="nucleus")
    local = segment_image(slide, tmp_path / "local.zarr", task, CONFIG, model=SPEC)
    assert local.status == "complete" and local.tiles == 4 and local.objects > 50
    labels = _labels(local)
    # seam-aware merging: some objects are made of pieces of several tiles
    import csv

    with open(local.class_table, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert any(int(r["pieces"]) >= 2 for r in rows)
    core = 320 - 2 * 32
    across = np.unique(labels[core - 1 : core + 1, :][:, labels[core - 1] == labels[core]])
    assert len(across[across > 0]) >= 1  # one id on both sides of the seam

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        remote = segment_image(
            slide, tmp_path / "dask.zarr", task, CONFIG, model=SPEC, scheduler=client
        )
    assert remote.workers == 2
    np.testing.assert_array_equal(_labels(remote), labels)

    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done >= 1:
            cancel.set()

    out = tmp_path / "resumed.zarr"
    first = segment_image(
        slide, out, task, CONFIG, model=SPEC, reporter=pair_reporter(progress), cancel=cancel
    )
    assert first.status == "cancelled"
    again = segment_image(slide, out, task, CONFIG, model=SPEC)
    assert again.status == "complete" and again.tiles_skipped >= 1
    np.testing.assert_array_equal(_labels(again), labels)


@pytest.mark.slow
def test_encode_tile_keeps_float32_features_and_text_tasks_unchanged(slide: Path) -> None:
    predictor = SPEC.build()
    rgb = np.repeat(np.asarray(zarr.open_array(str(slide), mode="r")[:160, :160])[..., None], 3, -1)
    everything = encode_tile(predictor, rgb, TaskSpec("everything", vocabulary=("nucleus",)))
    assert everything.features.mask_features.dtype == torch.float32
    assert predictor.encoded is everything
    text = encode_tile(predictor, rgb, TaskSpec("text", text="nucleus"))
    plain = predictor.set_image(rgb)
    torch.testing.assert_close(text.features.mask_features, plain.features.mask_features)
    if "avx512_bf16" in Path("/proc/cpuinfo").read_text(encoding="utf-8"):
        # bfloat16 encoding: close to, not equal to, the float32 one
        diff = (everything.features.mask_features - plain.features.mask_features).abs()
        assert 0 < float(diff.mean()) < 0.05 * float(plain.features.mask_features.abs().mean())
