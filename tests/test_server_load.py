"""benchmarks/server_load.py: clients click at a person's pace (or in a closed loop) on a
real spawned ``napari-seem serve`` (tiny random model: plumbing figures only)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from benchmarks.server_load import click_gaps, make_image, run_phase


def test_human_gaps_are_spread_around_the_interval() -> None:
    rng = np.random.default_rng(0)
    draws = [click_gaps(rng, "human", 1.0, 0.5) for _ in range(2000)]
    offsets, gaps = np.array([d[0] for d in draws]), np.array([d[1] for d in draws])
    assert offsets.min() >= 0.0 and offsets.max() < 1.0
    assert gaps.min() >= 0.5 and gaps.max() <= 1.5
    assert abs(gaps.mean() - 1.0) < 0.03
    assert click_gaps(rng, "closed", 1.0, 0.5) == (0.0, 0.0)


@pytest.mark.slow
def test_a_short_human_paced_phase_on_a_real_server() -> None:
    from napari_seem.remote.client import SeemClient

    with tempfile.TemporaryDirectory() as tmp:
        image = make_image(Path(tmp) / "load.zarr", 512)
        server = SeemClient.spawn_local(
            variant="seem-tiny-focal", allow_roots=[tmp], tile=256, halo=32, device="cpu"
        )
        try:
            assert server.process is not None and server.token is not None
            result = run_phase(
                server.url,
                server.token,
                image,
                clients=2,
                seconds=4.0,
                warmup=1,
                pid=server.process.pid,
                interval=0.5,
            )
        finally:
            server.close()
    assert result["errors"] == 0, result["first_errors"]
    # two clients, one click per 0.5 s +- 50% each, for 4 s: about 16 clicks, never a
    # closed loop's hundreds (a click waits for its answer, so slow answers mean fewer)
    assert 4 <= result["clicks"] <= 2 * (4.0 / 0.25) + 2
    assert result["pace"].startswith("human: one click per 0.5 s")
    assert result["p95_ms"] >= result["p50_ms"] > 0
    assert len(result["rss_every_10s_mb"]) >= 2
