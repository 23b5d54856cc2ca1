"""Quick, honest evaluation of a model through the public :class:`SeemPredictor` path.

- :func:`click_protocol`: SEEM's interactive protocol per object (first click at the deepest
  interior point, each next click at the maximum of the distance transform of the larger
  error region, the previous answer passed back as memory; stop at IoU >= ``stop_iou`` or
  ``max_clicks``). :func:`noc` turns the IoU curves into NoC@85 / NoC@90.
- :func:`everything_f1`: "segment everything" (panoptic) instances matched one-to-one to
  the truth at IoU >= 0.5; precision, recall, F1.
- :func:`grounding_iou`: IoU of a text prompt's answer (union of the returned instances)
  with a truth mask inside an evaluation region.
- :func:`evaluate_seem_lite`: the issue-8 targets on held-out data (BBBC007 held-out images,
  Landsat columns 245..488). ``python -m napari_seem.evaluation.heldout`` prints them as JSON.

The official benchmark command belongs to a later issue; this module is reusable by it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from napari_seem.core.prompts import ObjectPrompt
from napari_seem.core.visual import Points
from napari_seem.predict.predictor import SeemPredictor
from napari_seem.train.prompts_sim import Click

__all__ = [
    "ClickCurves",
    "click_protocol",
    "evaluate_seem_lite",
    "everything_f1",
    "grounding_iou",
    "noc",
]


def _iou(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


@dataclass(frozen=True)
class ClickCurves:
    """IoU after each click, one list per object (lists stop once ``stop_iou`` is reached)."""

    ious: list[list[float]]

    def mean_iou_at(self, clicks: int) -> float:
        """Mean IoU after ``clicks`` clicks (an object that stopped early keeps its last IoU)."""
        vals = [c[min(clicks, len(c)) - 1] for c in self.ious]
        return float(np.mean(vals)) if vals else float("nan")

    def noc(self, threshold: float, max_clicks: int = 20) -> float:
        return noc(self.ious, threshold, max_clicks)


def noc(ious: Sequence[Sequence[float]], threshold: float, max_clicks: int = 20) -> float:
    """Mean number of clicks to reach ``threshold`` IoU (``max_clicks`` when never)."""
    counts = []
    for curve in ious:
        hit = next((i + 1 for i, v in enumerate(curve) if v >= threshold), max_clicks)
        counts.append(min(hit, max_clicks))
    return float(np.mean(counts)) if counts else float("nan")


def click_protocol(
    predictor: SeemPredictor,
    image: npt.ArrayLike,
    labels: npt.NDArray[np.integer[Any]],
    *,
    ids: Sequence[int] | npt.NDArray[np.integer[Any]] | None = None,
    max_clicks: int = 20,
    stop_iou: float = 0.90,
) -> ClickCurves:
    """Run the interactive protocol on every object of ``labels`` (or ``ids``), one at a time.

    Args:
        image: ``(H, W)`` or ``(H, W, 3)``.
        labels: ``(H, W)`` instance labels, level-0 pixels.
    """
    from napari_seem.evaluation.clicks import simulate_clicks

    predictor.set_image(image)
    chosen = [int(i) for i in (ids if ids is not None else np.unique(labels)[1:])]
    last: list[Any] = []  # the previous answer as an ObjectMask, for SEEM's memory

    def segment(clicks: Sequence[Click], previous: npt.NDArray[np.bool_] | None) -> Any:
        pos = [(c.row, c.col) for c in clicks if c.positive]
        neg = [(c.row, c.col) for c in clicks if not c.positive]
        prompt = ObjectPrompt((Points.clicks(positive=pos, negative=neg),))
        result = predictor.predict([prompt], previous=last if previous is not None else None)
        last[:] = [result.objects[0]]
        return result.objects[0].full(labels.shape)

    curves = simulate_clicks(segment, labels, chosen, max_clicks=max_clicks, stop_iou=stop_iou)
    return ClickCurves(curves)


@dataclass(frozen=True)
class F1Result:
    precision: float
    recall: float
    f1: float
    predicted: int
    truth: int


def everything_f1(
    predictor: SeemPredictor,
    image: npt.ArrayLike,
    labels: npt.NDArray[np.integer[Any]],
    vocabulary: Sequence[str] = ("nucleus",),
    *,
    iou_threshold: float = 0.5,
    **kwargs: Any,
) -> F1Result:
    """Panoptic "segment everything" instances vs truth instances, matched 1:1 at IoU."""
    predictor.set_image(image)
    result = predictor.segment_everything(list(vocabulary), **kwargs)
    preds = [o.full(labels.shape) for o in result.objects]
    truth_ids = np.unique(labels)[1:]
    if not preds or not len(truth_ids):
        return F1Result(0.0, 0.0, 0.0, len(preds), len(truth_ids))
    # IoU matrix through a joint histogram of (truth id, prediction index)
    pred_map = np.zeros(labels.shape, np.int64)
    for k, m in enumerate(preds, start=1):
        pred_map[m & (pred_map == 0)] = k
    t_index = np.searchsorted(truth_ids, labels)
    t_index[labels == 0] = -1
    joint = np.zeros((len(truth_ids), len(preds) + 1), np.int64)
    valid = t_index >= 0
    np.add.at(joint, (t_index[valid], pred_map[valid]), 1)
    inter = joint[:, 1:]
    t_area = np.bincount(t_index[valid], minlength=len(truth_ids))
    p_area = np.array([m.sum() for m in preds])
    iou = inter / (t_area[:, None] + p_area[None, :] - inter)
    rows, cols = linear_sum_assignment(-iou)
    tp = int((iou[rows, cols] >= iou_threshold).sum())
    precision, recall = tp / len(preds), tp / len(truth_ids)
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return F1Result(precision, recall, f1, len(preds), len(truth_ids))


def grounding_iou(
    predictor: SeemPredictor,
    image: npt.ArrayLike,
    truth: npt.NDArray[np.bool_],
    text: str,
    *,
    region: tuple[slice, slice] | None = None,
    top1: bool = False,
) -> float:
    """IoU of the text prompt's answer with ``truth`` ``(H, W)`` inside ``region``.

    The answer is the union of the instances :meth:`SeemPredictor.ground` returns (or the
    best one with ``top1``).
    """
    predictor.set_image(image)
    result = predictor.ground([text])
    objects = result.objects[:1] if top1 else result.objects
    pred = np.zeros(truth.shape, bool)
    for obj in objects:
        pred |= obj.full(truth.shape)
    if region is not None:
        pred, truth = pred[region], truth[region]
    return _iou(pred, truth)


def evaluate_seem_lite(
    predictor: SeemPredictor | None = None, *, max_objects: int | None = None
) -> dict[str, Any]:
    """The issue-8 measurements on held-out data; returns a JSON-ready dict."""
    from napari_seem.datasets.real import (
        BBBC007_HELD_OUT,
        LANDSAT_TRAIN_COLUMNS,
        bbbc007,
        landsat,
        landsat_false_colour,
    )

    if predictor is None:
        predictor = SeemPredictor.from_variant("seem-lite")
    out: dict[str, Any] = {"model": predictor.model.name}
    start = time.perf_counter()
    curves: list[list[float]] = []
    f1s = []
    for item in bbbc007():
        if item.name not in BBBC007_HELD_OUT:
            continue
        ids = np.unique(item.labels)[1:]
        if max_objects is not None:
            ids = ids[:max_objects]
        curves += click_protocol(predictor, item.image, item.labels, ids=ids).ious
        f1 = everything_f1(predictor, item.image, item.labels, ("nucleus",))
        f1s.append(asdict(f1) | {"image": item.name})
    cc = ClickCurves(curves)
    out["bbbc007_held_out"] = {
        "images": list(BBBC007_HELD_OUT),
        "objects": len(curves),
        "iou_1_click": cc.mean_iou_at(1),
        "iou_3_clicks": cc.mean_iou_at(3),
        "noc85": cc.noc(0.85),
        "noc90": cc.noc(0.90),
        "everything": f1s,
        "everything_f1_mean": float(np.mean([f["f1"] for f in f1s])),
    }
    scene = landsat()
    rgb = landsat_false_colour(scene.bands)
    held = (slice(None), slice(LANDSAT_TRAIN_COLUMNS, None))
    out["landsat_held_out_columns"] = {
        name: {
            "iou": grounding_iou(predictor, rgb, scene.classes == value, name, region=held),
            "iou_top1": grounding_iou(
                predictor, rgb, scene.classes == value, name, region=held, top1=True
            ),
        }
        for name, value in (("water", 6), ("forest", 5))
    }
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def finetune_experiment(
    image: npt.ArrayLike,
    labels: npt.NDArray[np.integer[Any]],
    *,
    n_train: int = 30,
    steps: int = 60,
    seed: int = 0,
    max_eval_objects: int | None = 40,
    out: str = "out/finetune-experiment.safetensors",
    checkpoint: str | None = None,
    **config: Any,
) -> dict[str, Any]:
    """Fine-tune seem-lite on ``n_train`` labelled objects of one image and measure the
    click protocol on that image's *other* objects before and after.

    Only the interactive task is trained (the other objects are unlabelled, so they must
    not be taught as background).
    """
    from napari_seem.model.build import build_seem
    from napari_seem.train.api import fine_tune

    rng = np.random.default_rng(seed)
    ids = np.unique(labels)[1:]
    train_ids = rng.choice(ids, size=min(n_train, len(ids) - 1), replace=False)
    held = np.setdiff1d(ids, train_ids)
    if max_eval_objects is not None:
        held = held[:max_eval_objects]
    train_labels = np.where(np.isin(labels, train_ids), labels, 0)
    base = SeemPredictor(build_seem("seem-lite", checkpoint=checkpoint))
    before = click_protocol(base, image, labels, ids=held)
    start = time.perf_counter()
    path = fine_tune(
        image,
        train_labels,
        "nucleus",
        out=out,
        checkpoint=checkpoint,
        steps=steps,
        tasks=("spatial",),
        progress=False,
        seed=seed,
        **config,
    )
    seconds = time.perf_counter() - start
    tuned = SeemPredictor(build_seem("seem-lite", checkpoint=path))
    after = click_protocol(tuned, image, labels, ids=held)
    return {
        "train_objects": len(train_ids),
        "held_out_objects": len(held),
        "steps": steps,
        "fine_tune_seconds": round(seconds, 1),
        "before": {"iou_1_click": before.mean_iou_at(1), "noc85": before.noc(0.85)},
        "after": {"iou_1_click": after.mean_iou_at(1), "noc85": after.noc(0.85)},
        "weights": str(path),
    }


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="issue-8 evaluation of seem-lite")
    parser.add_argument(
        "--checkpoint", default=None, help="seem-lite trained parts (default: shipped)"
    )
    parser.add_argument("--max-objects", type=int, default=None)
    parser.add_argument(
        "--finetune-image",
        default=None,
        help="also fine-tune on 30 objects of this held-out BBBC007 image (e.g. 'A9 p9d') "
        "and measure its other objects before/after",
    )
    parser.add_argument("--finetune-steps", type=int, default=100)
    parser.add_argument("--skip-base", action="store_true", help="only the fine-tune experiment")
    parser.add_argument("--threads", type=int, default=None)
    for flag, what in (
        ("--refine", "click-constrained refinement"),
        ("--find-scale", "scale selection"),
    ):
        parser.add_argument(
            flag, choices=("auto", "on", "off"), default="auto", help=f"{what} (auto: seem-lite on)"
        )
    args = parser.parse_args()
    switch: dict[str, bool | Literal["auto"]] = {"auto": "auto", "on": True, "off": False}
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from napari_seem.model.build import build_seem

    results: dict[str, Any] = {}
    if not args.skip_base:
        model = build_seem("seem-lite", checkpoint=args.checkpoint, device="auto")
        predictor = SeemPredictor(
            model, refine=switch[args.refine], find_scale=switch[args.find_scale]
        )
        results = evaluate_seem_lite(predictor, max_objects=args.max_objects)
    if args.finetune_image:
        from napari_seem.datasets.real import BBBC007_HELD_OUT, bbbc007

        if args.finetune_image not in BBBC007_HELD_OUT:
            parser.error(f"--finetune-image must be a held-out image: {BBBC007_HELD_OUT}")
        item = next(i for i in bbbc007() if i.name == args.finetune_image)
        results["finetune"] = finetune_experiment(
            item.image,
            item.labels,
            steps=args.finetune_steps,
            max_eval_objects=args.max_objects,
            checkpoint=args.checkpoint,
        ) | {"image": item.name}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
