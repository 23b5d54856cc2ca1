"""Run SEEM and the baselines on labelled images; JSON-ready results and a Markdown report.

Per data set and method:

- **interactive**: the official click protocol per object (first click at the deepest
  interior point, each next click at the centre of the larger error region; stop at IoU
  0.90 or ``max_clicks``): NoC@85, NoC@90 (``max_clicks`` when never reached) and mean IoU
  after 1, 3 and 5 clicks, pooled over all evaluated objects;
- **text**: per class, IoU of the text prompt's answer (the class name) with the union of
  that class's instances, averaged over the images holding the class (SEEM only);
- **everything**: "segment everything" with the data set's class names, instances matched
  one-to-one at IoU 0.5: precision, recall, F1 (pooled counts) and AP50 (all detections of
  all images ranked by score).

Baselines: ``watershed`` (seeded watershed from the same clicks; Otsu + distance-transform
watershed for everything; no text prompts).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_seem.evaluation.baselines import SeededWatershed, otsu_watershed
from napari_seem.evaluation.clicks import pick_ids, simulate_clicks
from napari_seem.evaluation.data import EvalItem
from napari_seem.evaluation.metrics import pool_detections

if TYPE_CHECKING:
    from napari_seem.predict.predictor import SeemPredictor

__all__ = [
    "CLICK_COUNTS",
    "evaluate",
    "interactive_summary",
    "render_markdown",
    "write_report",
]

CLICK_COUNTS = (1, 3, 5)
Log = Callable[[str], None]


def interactive_summary(curves: Sequence[Sequence[float]], max_clicks: int) -> dict[str, Any]:
    """NoC@85, NoC@90 and mean IoU after :data:`CLICK_COUNTS` clicks of IoU ``curves``."""
    from napari_seem.evaluation.heldout import ClickCurves

    cc = ClickCurves([list(c) for c in curves])
    out: dict[str, Any] = {
        "objects": len(cc.ious),
        "noc85": cc.noc(0.85, max_clicks),
        "noc90": cc.noc(0.90, max_clicks),
    }
    for k in CLICK_COUNTS:
        out[f"iou_{k}"] = cc.mean_iou_at(k)
    return out


def _seem_everything(
    predictor: SeemPredictor, item: EvalItem
) -> tuple[list[np.ndarray], list[float]]:
    predictor.set_image(item.image)
    result = predictor.segment_everything(item.classes)
    shape = item.instances.shape
    return [o.full(shape) for o in result.objects], [o.score for o in result.objects]


def _run_seem(
    predictor: SeemPredictor,
    items: Sequence[EvalItem],
    ids: dict[str, list[int]],
    *,
    max_clicks: int,
    say: Log,
) -> dict[str, Any]:
    from napari_seem.evaluation.heldout import click_protocol, grounding_iou

    start = time.perf_counter()
    curves: list[list[float]] = []
    text: dict[str, list[float]] = {}
    detections = []
    for item in items:
        say(f"  seem: {item.name}: {len(ids[item.name])} objects by clicks")
        curves += click_protocol(
            predictor, item.image, item.instances, ids=ids[item.name], max_clicks=max_clicks
        ).ious
        for name in item.classes:
            iou = grounding_iou(predictor, item.image, item.class_mask(name), name)
            text.setdefault(name, []).append(iou)
        masks, scores = _seem_everything(predictor, item)
        detections.append((item.instances, masks, scores))
    return {
        "interactive": interactive_summary(curves, max_clicks),
        "text_iou": {name: float(np.mean(v)) for name, v in sorted(text.items())},
        "everything": asdict(pool_detections(detections)),
        "seconds": round(time.perf_counter() - start, 1),
    }


def _run_watershed(
    items: Sequence[EvalItem], ids: dict[str, list[int]], *, max_clicks: int, say: Log
) -> dict[str, Any]:
    start = time.perf_counter()
    curves: list[list[float]] = []
    detections = []
    for item in items:
        say(f"  watershed: {item.name}: {len(ids[item.name])} objects by clicks")
        segment = SeededWatershed(item.image)
        curves += simulate_clicks(segment, item.instances, ids[item.name], max_clicks=max_clicks)
        found = otsu_watershed(item.image)
        detections.append((item.instances, found.masks, found.scores))
    return {
        "interactive": interactive_summary(curves, max_clicks),
        "text_iou": None,
        "everything": asdict(pool_detections(detections)),
        "seconds": round(time.perf_counter() - start, 1),
    }


def evaluate(
    items: Sequence[EvalItem],
    *,
    dataset: str,
    predictor: SeemPredictor | None = None,
    model: str | None = None,
    seem_skipped: str | None = None,
    baselines: bool = True,
    max_objects: int | None = 30,
    max_clicks: int = 20,
    log: Log | None = None,
) -> dict[str, Any]:
    """Every metric of the module docstring; a JSON-ready dict.

    Args:
        items: the labelled images.
        dataset: the data set's name, for the report.
        predictor: SEEM (None: SEEM is not run; ``seem_skipped`` says why).
        model: how the report names the SEEM model (variant and weights).
        max_objects: objects clicked per image, spread over the ids (None: all).
        max_clicks: clicks per object before giving up (NoC counts it as this many).
    """
    if not items:
        raise ValueError("no images to evaluate")
    if max_clicks < 5:
        raise ValueError(f"max_clicks must be at least 5 (IoU after 5 clicks), got {max_clicks}")
    say = log or (lambda _m: None)
    ids = {item.name: pick_ids(item.instances, max_objects) for item in items}
    methods: dict[str, Any] = {}
    if predictor is not None:
        methods["seem"] = _run_seem(predictor, items, ids, max_clicks=max_clicks, say=say)
    else:
        methods["seem"] = {"skipped": seem_skipped or "not requested"}
    if baselines:
        methods["watershed"] = _run_watershed(items, ids, max_clicks=max_clicks, say=say)
    return {
        "dataset": dataset,
        "images": [item.name for item in items],
        "classes": sorted({c for item in items for c in item.classes}),
        "objects_per_image": {name: len(v) for name, v in ids.items()},
        "instances_per_image": {item.name: len(item.class_of) for item in items},
        "model": model,
        "settings": {"max_objects": max_objects, "max_clicks": max_clicks, "stop_iou": 0.90},
        "methods": methods,
    }


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def render_rows(result: dict[str, Any]) -> list[list[str]]:
    """One table row per method: method, NoC@85, NoC@90, IoU@1/3/5, P, R, F1, AP50."""
    rows = []
    for method, r in result["methods"].items():
        label = f"{method} ({result['model']})" if method == "seem" and result["model"] else method
        if "skipped" in r:
            rows.append([label, f"not run: {r['skipped']}", *[""] * 8])
            continue
        i, e = r["interactive"], r["everything"]
        rows.append(
            [
                label,
                _f(i["noc85"], 2),
                _f(i["noc90"], 2),
                *(_f(i[f"iou_{k}"]) for k in CLICK_COUNTS),
                _f(e["precision"]),
                _f(e["recall"]),
                _f(e["f1"]),
                _f(e["ap50"]),
            ]
        )
    return rows


HEADERS = [
    "method",
    "NoC@85",
    "NoC@90",
    "IoU@1",
    "IoU@3",
    "IoU@5",
    "P@0.5",
    "R@0.5",
    "F1@0.5",
    "AP50",
]


def render_markdown(result: dict[str, Any], *, title: str | None = None) -> str:
    """The report of one :func:`evaluate` result."""
    from napari_seem.evaluation._table import markdown_table

    s = result["settings"]
    objects = sum(result["objects_per_image"].values())
    instances = sum(result["instances_per_image"].values())
    lines = [
        f"## {title or 'Evaluation: ' + result['dataset']}",
        "",
        f"- Data: {result['dataset']}: {len(result['images'])} image(s), {instances} "
        f"instances; {objects} clicked (at most {s['max_objects']} per image, spread over "
        f"the ids); classes: {', '.join(result['classes'])}.",
        f"- Clicks: official simulator, at most {s['max_clicks']} per object, stop at IoU "
        f"{s['stop_iou']:.2f}; NoC counts {s['max_clicks']} when never reached. Everything: "
        "one-to-one matches at IoU 0.5, pooled over images; AP50 ranks all detections.",
        "",
        markdown_table(HEADERS, render_rows(result)),
        "",
    ]
    seem = result["methods"].get("seem", {})
    if seem.get("text_iou"):
        lines += [
            "Text prompt IoU per class (SEEM; the baselines take no text):",
            "",
            markdown_table(
                ["class", "IoU"], [[name, _f(v)] for name, v in seem["text_iou"].items()]
            ),
            "",
        ]
    return "\n".join(lines)


def write_report(result: dict[str, Any], out: Path, stem: str = "eval") -> tuple[Path, Path]:
    """Write ``STEM.json`` and ``STEM.md`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    md_path = out / f"{stem}.md"
    md_path.write_text(render_markdown(result), encoding="utf-8")
    return json_path, md_path
