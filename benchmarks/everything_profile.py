"""Where the time of "segment everything" goes: one interior tile of the default run.

:func:`profile_tile` runs ``napari_seem.batch.segment_image`` in this process exactly as
``napari-seem segment --vocabulary nucleus`` does (default model, weights, tile, halo and
mode), restricted by ``BatchConfig.region`` to the one tile whose core holds the slide's
centre, and times its stages with wall-clock hooks on the public parts of the path:

- **zarr read**: the tile's outer box read from the input (``ImageSource.read_rgb``);
- **backbone** and **pixel decoder**: ``model.backbone`` and the pixel decoder's
  ``forward_features`` (the image encoding);
- **grid decoding** (prompt encoding and decoder passes of the points mode, with the
  number of points asked and passes run), **answers / NMS** (checking every answer and the
  best-first duplicate test) and **masks** (level-0 masks of the accepted objects): the
  stage clock of :func:`napari_seem.predict.everything.timing`;
- **scratch + merge + chunk write**: the rest of the run (tile labels written to the
  scratch folder, the seam merge and the output chunk write; one tile has no seams).

Call it in a fresh process (model load is timed apart as ``build_s``).
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from benchmarks import _report as report

__all__ = ["profile_tile", "render_profile"]


def _timed(fn: Callable[..., Any], into: dict[str, float], stage: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            into[stage] = into.get(stage, 0.0) + time.perf_counter() - t0

    return call


def profile_tile(image: str, *, tile: int = 1024, halo: int = 64) -> dict[str, Any]:
    """Stage times of one interior tile of the default run on ``image`` (a zarr path)."""
    import torch

    from napari_seem.batch import BatchConfig, ModelSpec, Task, segment_image
    from napari_seem.batch.models import SharedPredictor
    from napari_seem.core.io import open_image
    from napari_seem.core.tiling import TileGrid
    from napari_seem.predict import everything

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    predictor = ModelSpec(device="cpu").build()
    build_s = time.perf_counter() - t0
    model = predictor.model
    model.backbone.forward = _timed(model.backbone.forward, seconds, "backbone")
    pixel = model.sem_seg_head.pixel_decoder
    pixel.forward_features = _timed(pixel.forward_features, seconds, "pixel decoder")
    # every tile encoding (fp32 or bfloat16) goes through encode_many
    predictor.encode_many = _timed(predictor.encode_many, seconds, "encode")  # type: ignore[method-assign]
    source = open_image(image)
    source.read_rgb = _timed(source.read_rgb, seconds, "zarr read")  # type: ignore[method-assign]
    h, w = source.spatial_shape
    centre = TileGrid.for_model((h, w), model_input=tile, halo=halo).tile_at(h // 2, w // 2)
    box = centre.core
    with tempfile.TemporaryDirectory(prefix="napari-seem-profile-") as tmp:
        config = BatchConfig(tile=tile, halo=halo, region=box)
        with everything.timing() as stages:
            t0 = time.perf_counter()
            summary = segment_image(
                source,
                Path(tmp) / "labels.zarr",
                Task.from_options(vocabulary="nucleus"),
                config,
                model=SharedPredictor(predictor),
            )
            total = time.perf_counter() - t0
    inner = stages.seconds
    points = int(inner.pop("points", 0))
    passes = int(inner.pop("passes", 0))
    accounted = (
        sum(seconds.get(k, 0.0) for k in ("zarr read", "encode"))
        + sum(seconds.get(k, 0.0) for k in ("grid decoding",))
        + sum(inner.values())
    )
    oh, ow = centre.outer_shape
    frame = predictor.encoded.frame.padded_hw
    return {
        "tile": list(centre.outer),
        "tile_megapixels": oh * ow / 1e6,
        "model_input": list(frame),
        "objects": summary.objects,
        "build_s": build_s,
        "total_s": total,
        "stages": {
            "zarr read": seconds.get("zarr read", 0.0),
            "backbone": seconds.get("backbone", 0.0),
            "pixel decoder": seconds.get("pixel decoder", 0.0),
            "encode, other (resize, normalise)": seconds.get("encode", 0.0)
            - seconds.get("backbone", 0.0)
            - seconds.get("pixel decoder", 0.0),
            "grid decoding (prompts + decoder passes)": inner.get("decode", 0.0),
            "answers + NMS": inner.get("answers", 0.0),
            "masks (level 0)": inner.get("masks", 0.0),
            "scratch + merge + chunk write, rest": total - accounted,
        },
        "points": points,
        "passes": passes,
        "torch_threads": torch.get_num_threads(),
        "load_1m": (report.load_average() or [None])[0],
    }


def render_profile(p: Mapping[str, Any]) -> list[str]:
    """Markdown lines of one profile."""
    total = p["total_s"]
    rows = [[stage, f"{s:.2f}", f"{100 * s / total:.0f} %"] for stage, s in p["stages"].items()]
    rows.append(["**total**", f"{total:.2f}", "100 %"])
    r0, c0, r1, c1 = p["tile"]
    return [
        f"### Profile: one interior tile ({r1 - r0} x {c1 - c0} px, model input "
        f"{p['model_input'][0]} x {p['model_input'][1]}), seem-lite shipped weights",
        "",
        report.markdown_table(["stage", "seconds", "share"], rows),
        "",
        f"{p['points']} grid points asked in {p['passes']} decoder passes, "
        f"{p['objects']} objects; torch threads {p['torch_threads']}, load "
        f"{p['load_1m']}; model load ({p['build_s']:.1f} s) not included. Wall-clock hooks "
        "on the public stages (`benchmarks/everything_profile.py`).",
        "",
    ]
