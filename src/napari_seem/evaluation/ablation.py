"""The click-protocol ablation of seem-lite's inference parts, in one command.

``python -m napari_seem.evaluation.ablation --max-objects 8`` runs the official click protocol
(:func:`napari_seem.evaluation.heldout.click_protocol`) with click-constrained refinement and
scale selection each on and off, and the seeded-watershed baseline from the same clicks, and
prints one Markdown table (IoU after 1/3/5 clicks, NoC@85, NoC@90) plus the JSON. The objects
are spread over the ids of each image (:func:`~napari_seem.evaluation.clicks.pick_ids`);
nothing here is tuned on these images.

Data (``--data``): ``bbbc007`` (the BBBC007 held-out images), or synthetic scenes of
held-out generator seeds (``>= HELD_OUT_START``, never trained or tuned on):
``small-nuclei`` (6-11 px across), ``large-nuclei`` (70-120 px) and ``cells`` (the cell
generator's default sizes), two 384 x 384 scenes each.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

__all__ = ["DATA", "PARTS", "ablation_images", "run_ablation"]

#: ``--data`` choices: name -> (modality, generator options); ``bbbc007`` is real data.
DATA: dict[str, tuple[str, dict[str, Any]]] = {
    "bbbc007": ("", {}),
    "small-nuclei": ("nuclei", {"diameter": (6.0, 11.0)}),
    "large-nuclei": ("nuclei", {"diameter": (70.0, 120.0)}),
    "cells": ("cells", {}),
}


def ablation_images(data: str) -> list[tuple[str, Any, Any]]:
    """``(name, image, instance labels)`` of one ``--data`` choice."""
    if data not in DATA:
        raise ValueError(f"unknown data {data!r}; choose from {', '.join(DATA)}")
    if data == "bbbc007":
        from napari_seem.datasets.real import BBBC007_HELD_OUT, bbbc007

        return [(i.name, i.image, i.labels) for i in bbbc007() if i.name in BBBC007_HELD_OUT]
    from napari_seem.datasets.generate import generate
    from napari_seem.datasets.sampler import HELD_OUT_START

    modality, options = DATA[data]
    scenes = [generate(modality, HELD_OUT_START + k, (384, 384), **options) for k in (0, 1)]
    return [(f"{data} seed {s.meta['seed']}", s.image, s.instances) for s in scenes]


#: (refine, find_scale) of each row, model default (both on) last.
PARTS: tuple[tuple[bool, bool], ...] = ((False, False), (True, False), (False, True), (True, True))


def run_ablation(
    *,
    checkpoint: str | None = None,
    data: str = "bbbc007",
    max_objects: int | None = 8,
    max_clicks: int = 20,
    parts: tuple[tuple[bool, bool], ...] = PARTS,
) -> dict[str, Any]:
    """Every row of the table (module docstring); a JSON-ready dict."""
    import numpy as np

    from napari_seem.evaluation.baselines import SeededWatershed
    from napari_seem.evaluation.clicks import pick_ids, simulate_clicks
    from napari_seem.evaluation.heldout import click_protocol
    from napari_seem.evaluation.runner import interactive_summary
    from napari_seem.model.build import build_seem
    from napari_seem.predict.predictor import SeemPredictor

    items = ablation_images(data)
    ids = {name: pick_ids(labels, max_objects) for name, _, labels in items}
    model = build_seem("seem-lite", checkpoint=checkpoint, shipped_weights=checkpoint is None)
    rows: list[dict[str, Any]] = []
    for refine, scale in parts:
        predictor = SeemPredictor(model, refine=refine, find_scale=scale)
        start = time.perf_counter()
        curves: list[list[float]] = []
        for name, image, labels in items:
            curves += click_protocol(
                predictor, image, labels, ids=ids[name], max_clicks=max_clicks
            ).ious
        seconds = time.perf_counter() - start
        clicks = sum(len(c) for c in curves)
        rows.append(
            {"method": "seem-lite", "refine": refine, "find_scale": scale}
            | interactive_summary(curves, max_clicks)
            | {"seconds": round(seconds, 1), "clicks": clicks}
        )
    curves = []
    for name, image, labels in items:
        curves += simulate_clicks(SeededWatershed(image), labels, ids[name], max_clicks=max_clicks)
    rows.append({"method": "seeded watershed"} | interactive_summary(curves, max_clicks))
    return {
        "data": data,
        "images": [name for name, _, _ in items],
        "objects": int(np.sum([len(v) for v in ids.values()])),
        "max_clicks": max_clicks,
        "rows": rows,
    }


def render(result: dict[str, Any]) -> str:
    """The Markdown table of :func:`run_ablation`'s result."""
    from napari_seem.evaluation._table import markdown_table

    def onoff(row: dict[str, Any], key: str) -> str:
        return "" if key not in row else ("on" if row[key] else "off")

    body = [
        [
            r["method"],
            onoff(r, "refine"),
            onoff(r, "find_scale"),
            *(f"{r[f'iou_{k}']:.3f}" for k in (1, 3, 5)),
            f"{r['noc85']:.2f}",
            f"{r['noc90']:.2f}",
        ]
        for r in result["rows"]
    ]
    headers = ["method", "refine", "scale", "IoU@1", "IoU@3", "IoU@5", "NoC@85", "NoC@90"]
    return markdown_table(headers, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="seem-lite weights (default: shipped)")
    parser.add_argument("--data", choices=tuple(DATA), default="bbbc007")
    parser.add_argument("--max-objects", type=int, default=8, help="objects per image (0: all)")
    parser.add_argument("--max-clicks", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = run_ablation(
        checkpoint=args.checkpoint,
        data=args.data,
        max_objects=args.max_objects or None,
        max_clicks=args.max_clicks,
    )
    print(render(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
