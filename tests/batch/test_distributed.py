"""A lazily built 8,000 x 8,000 image segmented with the tiny SEEM model in this process and
on a two-worker Dask LocalCluster gives identical labels.

The LocalCluster uses ``processes=False`` (two workers in this process, one thread each):
two worker processes would each import torch and build the model, which costs more than
the whole run on a 2-core CI machine. The distributed machinery is the real one either way
(scheduler, worker plugin, task submission, workers writing their own chunks). Tiles are
2,048 pixels (halo 64) encoded at 256 pixels (``ModelSpec.short_side``), which keeps the
two runs of 25 tiles each within about a minute on 2 cores.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_seem.batch import BatchConfig, ModelSpec, Task, segment_image
from napari_seem.core.progress import pair_reporter
from tests.batch.helpers import lazy_zarr

SPEC = ModelSpec("seem-tiny-focal", device="cpu", mask_resize="bilinear", threads=1, short_side=256)


@pytest.mark.slow
def test_8000_squared_local_equals_two_worker_cluster(tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    start = time.perf_counter()
    image = lazy_zarr(tmp_path / "img.zarr", 8000, chunk=1000, seed=1)
    task, config = Task(text="a round cell"), BatchConfig(tile=2048, halo=64)
    local = segment_image(image, tmp_path / "local.zarr", task, config, model=SPEC)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        events: list[tuple[int, int]] = []
        remote = segment_image(
            image,
            tmp_path / "dask.zarr",
            task,
            config,
            model=SPEC,
            scheduler=client,
            reporter=pair_reporter(lambda done, total: events.append((done, total))),
        )
        # each worker built the model once, in its own context
        plugin_names = [
            name for name in client.run(lambda dask_worker: list(dask_worker.plugins)).values()
        ]
        assert plugin_names  # the run's plugin is unregistered at the end
    assert local.status == remote.status == "complete"
    assert remote.workers == 2 and local.tiles == remote.tiles == 25
    assert events[-1] == (50, 50)
    a = zarr.open_array(local.labels, mode="r")
    b = zarr.open_array(remote.labels, mode="r")
    assert a.shape == b.shape == (8000, 8000) and a.chunks == b.chunks == (1920, 1920)
    for r in range(0, 8000, 1920):  # compare chunk rows: never both arrays whole in memory
        np.testing.assert_array_equal(a[r : r + 1920], b[r : r + 1920])
    assert local.objects == remote.objects > 0
    assert Path(local.class_table).read_text() == Path(remote.class_table).read_text()
    print(
        f"8000^2 local {local.seconds:.1f} s, cluster {remote.seconds:.1f} s, "
        f"total {time.perf_counter() - start:.1f} s"
    )
