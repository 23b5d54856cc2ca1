"""The ``"fine_tune"`` job kind: train the engine's model on labelled images, then run the
new weights (see :meth:`napari_seem.engine.Engine.register_job_kind`).

It runs :func:`napari_seem.train.fine_tune` on the engine's worker thread, starting from the
weights the model runs with now (or ``checkpoint``), writes the trained parts under the
engine's :attr:`~napari_seem.engine.Engine.work_dir` and, on success, switches the model to
them with :meth:`~napari_seem.engine.Engine.use_weights` (every session's feature cache is
renewed: seem-lite's pixel decoder is trained, so cached features change). Training runs on
its own copy of the model: clicks keep being answered with the old weights meanwhile.

Parameters (JSON-ready, as ``POST /sessions/{id}/jobs`` sends them):

- ``data``: a list of ``{"image": ID, "labels": ID, "class_name": ...}``. ``image`` is an
  open session id (its plane, at the session's level, as the model sees it) or an uploaded
  image id (a 2-D grey or colour image); ``labels`` is an uploaded ``(H, W)`` integer label
  image of the same level-0 ``(H, W)`` (0 = unlabelled, each other value one object, e.g.
  a napari Labels layer); ``class_name`` optionally overrides the job's for this pair.
  Shorthand: ``labels=ID`` alone pairs the labels with the job's own session.
- ``class_name``: one name for every object, or ``{id: name}`` (default ``"object"``).
- ``steps``: optimizer steps, 1..100000 (default 100).
- ``tasks``: which of ``"object"``, ``"grounding"``, ``"spatial"`` to train (default
  ``["spatial"]``, the interactive task: right when only some objects are labelled).
- ``crops_per_image`` (1..256), ``batch_size`` (1..64), ``crop`` (64..1024, a multiple of
  32), ``lr`` (0..1), ``seed``: :class:`~napari_seem.train.loop.TrainConfig` fields.
- ``checkpoint``: a weight file to start from instead of the weights in use (over HTTP it
  must lie inside the server's allowed roots or its work dir).
- ``switch``: switch the model to the new weights when done (default true).

Progress counts optimizer steps; each event's ``message`` carries the running loss. Cancel
stops at the next step: the job ends ``"cancelled"``, its file is removed and the model
keeps its weights. A failure (unreadable checkpoint, labels too small to crop, ...) ends it
``"failed"`` with the message; the model keeps its weights too.

**Result** (also ``JobStatus.info`` once done): ``weights`` (the file), ``variant``,
``steps``, ``loss`` (mean of the last 20 steps), ``seconds``, ``images``, ``objects``,
``switched`` and ``checkpoint`` (the engine's checkpoint id after the switch).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_seem.core.progress import Cancelled
from napari_seem.engine.errors import InvalidRequestError, UnknownImageError
from napari_seem.engine.jobs import JobPlan, JobRecord
from napari_seem.engine.memory import release_memory
from napari_seem.engine.sessions import Session

if TYPE_CHECKING:
    from napari_seem.core.io import ImageSource
    from napari_seem.engine.facade import Engine

__all__ = ["MAX_STEPS", "MAX_TRAIN_PIXELS", "check_fine_tune", "run_fine_tune"]

MAX_STEPS = 100_000
#: Largest training image (pixels of the level the model sees): a larger one is refused.
MAX_TRAIN_PIXELS = 4096 * 4096
_TASKS = ("object", "grounding", "spatial")
_PARAMS = frozenset(
    {
        "data",
        "labels",
        "class_name",
        "steps",
        "tasks",
        "crops_per_image",
        "batch_size",
        "crop",
        "lr",
        "seed",
        "checkpoint",
        "switch",
    }
)


@dataclass(frozen=True)
class _Item:
    """One training pair, resolved: the image (a session's plane or an upload), its
    level-0 labels and the class name of every object id."""

    name: str
    source: ImageSource
    plane: tuple[int, ...]
    level: int
    level_shape: tuple[int, int]
    labels: np.ndarray
    classes: dict[int, str]


def check_fine_tune(engine: Engine, session: Session, params: dict[str, Any]) -> JobPlan:
    """Validate a ``fine_tune`` job (module docstring); every refusal says what to do."""
    unknown = set(params) - _PARAMS
    if unknown:
        raise InvalidRequestError(
            f"fine_tune takes {sorted(_PARAMS)}; got unknown {sorted(unknown)}"
        )
    default_class = _class_names(params.get("class_name", "object"), "class_name")
    pairs = _pairs(params, session)
    items = [_item(engine, pair, default_class, index) for index, pair in enumerate(pairs, start=1)]
    steps = _int(params, "steps", 100, 1, MAX_STEPS)
    config: dict[str, Any] = {
        "steps": steps,
        "tasks": _tasks(params.get("tasks", ["spatial"])),
        "crops_per_image": _int(params, "crops_per_image", 16, 1, 256),
        "batch_size": _int(params, "batch_size", 2, 1, 64),
        "crop": _int(params, "crop", 256, 64, 1024),
        "seed": _int(params, "seed", 0, 0, 2**31 - 1),
    }
    if config["crop"] % 32:
        raise InvalidRequestError(f"crop must be a multiple of 32 (e.g. 256); got {config['crop']}")
    _check_cost(engine, config, len(items))
    if "lr" in params:
        lr = params["lr"]
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr <= 1:
            raise InvalidRequestError(f"lr must be a number in (0, 1], e.g. 1e-4; got {lr!r}")
        config["lr"] = float(lr)
    checkpoint = params.get("checkpoint")
    if checkpoint is not None:
        if not isinstance(checkpoint, str | Path) or not Path(checkpoint).is_file():
            raise InvalidRequestError(
                f"checkpoint={checkpoint!r} is not a file: give a weight file to start from, "
                "or leave it out to start from the weights in use"
            )
        checkpoint = str(checkpoint)
    switch = params.get("switch", True)
    if not isinstance(switch, bool):
        raise InvalidRequestError(f"switch must be true or false; got {switch!r}")
    plan = {"items": items, "config": config, "checkpoint": checkpoint, "switch": switch}
    return JobPlan(plan, total=steps)


def _check_cost(engine: Engine, config: dict[str, Any], images: int) -> None:
    """Refuse a fine-tune over the engine's limits: memory of one optimizer step
    (``batch_size * crop**2``), of the cached training crops (``crops_per_image * images *
    crop**2``) and the work of the whole run (``batch_size * crop**2 * steps``)."""
    from napari_seem.engine.limits import ServerLimits

    limits = getattr(engine, "limits", None) or ServerLimits()
    batch, crop, steps = config["batch_size"], config["crop"], config["steps"]
    per_step = batch * crop * crop
    crops = config["crops_per_image"] * images * crop * crop
    checks = (
        (
            per_step,
            limits.max_fine_tune_batch_pixels,
            "batch_size * crop**2 (one step)",
            "a smaller batch_size or crop",
        ),
        (
            crops,
            limits.max_fine_tune_crop_pixels,
            "crops_per_image * images * crop**2 (the cached training crops)",
            "fewer crops_per_image, fewer images or a smaller crop",
        ),
        (
            per_step * steps,
            limits.max_fine_tune_pixel_steps,
            "batch_size * crop**2 * steps (the whole run)",
            "fewer steps or a smaller batch",
        ),
    )
    for value, limit, what, fix in checks:
        if value > limit:
            raise InvalidRequestError(
                f"the fine-tune's {what} is {value} pixels; this server allows at most "
                f"{limit}: choose {fix}"
            )


def _pairs(params: dict[str, Any], session: Session) -> list[dict[str, Any]]:
    data, labels = params.get("data"), params.get("labels")
    if (data is None) == (labels is None):
        raise InvalidRequestError(
            "fine_tune needs its training data: data=[{'image': SESSION_OR_IMAGE_ID, "
            "'labels': UPLOADED_LABELS_ID}, ...], or labels=UPLOADED_LABELS_ID for the job's "
            "own session (upload labels with POST /images); got "
            + ("both" if data is not None else "neither")
        )
    if labels is not None:
        return [{"image": session.session_id, "labels": labels}]
    if not isinstance(data, list | tuple) or not data:
        raise InvalidRequestError(
            f"data must be a non-empty list of {{'image': ID, 'labels': ID}}; got {data!r}"
        )
    for pair in data:
        if not isinstance(pair, Mapping) or set(pair) - {"image", "labels", "class_name"}:
            raise InvalidRequestError(
                "each data entry is {'image': ID, 'labels': ID} with an optional "
                f"'class_name'; got {pair!r}"
            )
    return [dict(pair) for pair in data]


def _item(
    engine: Engine, pair: dict[str, Any], default_class: str | dict[int, str], index: int
) -> _Item:
    from napari_seem.core.io import ImageSourceError, open_image
    from napari_seem.engine.errors import UnknownSessionError

    image_id, labels_id = pair.get("image"), pair.get("labels")
    where = f"data[{index - 1}]"
    if not isinstance(image_id, str) or not isinstance(labels_id, str):
        raise InvalidRequestError(
            f"{where}: 'image' and 'labels' must be ids (strings); got {pair!r}"
        )
    try:
        session = engine.session(image_id)
    except UnknownSessionError:
        session = None
    if session is not None:
        source, plane = session.source, session.plane
        level, level_shape = session.frame.level, session.frame.level_shape
        shape = session.frame.image_shape
    else:
        try:
            array, axes = engine.uploaded(image_id)
        except UnknownImageError:
            raise UnknownImageError(
                f"{where}: no open session or uploaded image {image_id!r}: open the image "
                "(open_session / POST /sessions) or upload it (POST /images) and pass the id "
                "it returns"
            ) from None
        try:
            source = open_image(array, axes=axes)
        except ImageSourceError as exc:
            raise InvalidRequestError(f"{where}: cannot use the image: {exc}") from None
        if source.plane_shape:
            raise InvalidRequestError(
                f"{where}: the uploaded image {image_id!r} is a stack of {source.plane_shape} "
                "planes: open a session on one plane and pass the session id"
            )
        plane, level = (), 0
        shape = level_shape = source.spatial_shape
    try:
        labels, _ = engine.uploaded(labels_id)
    except UnknownImageError:
        raise UnknownImageError(
            f"{where}: no uploaded labels {labels_id!r}: upload the (H, W) label image with "
            "add_image / POST /images and pass the id it returns"
        ) from None
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise InvalidRequestError(
            f"{where}: labels must be integer ids (0 = unlabelled, one value per object); got "
            f"{labels.dtype}"
        )
    if labels.shape != tuple(shape):
        raise InvalidRequestError(
            f"{where}: labels of shape {labels.shape} do not match the image's level-0 (H, W) "
            f"{tuple(shape)}: give the labels layer drawn over this image (one plane of a stack)"
        )
    if level_shape[0] * level_shape[1] > MAX_TRAIN_PIXELS:
        raise InvalidRequestError(
            f"{where}: the image has {level_shape[0]} x {level_shape[1]} pixels; fine-tuning "
            f"takes at most {MAX_TRAIN_PIXELS} per image: open a session at a coarser level, "
            "or upload a crop around the labelled objects with its labels"
        )
    ids = np.unique(labels)
    if ids.size and ids[0] < 0:
        raise InvalidRequestError(f"{where}: labels must be >= 0 (0 = unlabelled)")
    ids = ids[ids > 0]
    if ids.size == 0:
        raise InvalidRequestError(
            f"{where}: the labels hold no objects (all zero): label or commit some objects first"
        )
    names = default_class
    if "class_name" in pair:
        names = _class_names(pair["class_name"], f"{where}.class_name")
    if isinstance(names, str):
        classes = {int(i): names for i in ids}
    else:
        missing = [int(i) for i in ids if int(i) not in names]
        if missing:
            raise InvalidRequestError(
                f"{where}: label id(s) {missing[:8]} have no class name: give class_name as "
                "one name for all objects or an {id: name} mapping with every id"
            )
        classes = {int(i): names[int(i)] for i in ids}
    name = f"{where} ({'session' if session is not None else 'image'} {image_id[:8]})"
    return _Item(name, source, plane, level, level_shape, labels, classes)


def _class_names(value: Any, what: str) -> str | dict[int, str]:
    if isinstance(value, str):
        if not value.strip():
            raise InvalidRequestError(f"{what} must be a non-empty class name, e.g. 'nucleus'")
        return value.strip()
    if isinstance(value, Mapping) and value:
        out: dict[int, str] = {}
        for key, name in value.items():
            try:
                label = int(key)
            except (TypeError, ValueError):
                label = -1
            if label < 1 or not isinstance(name, str) or not name.strip():
                raise InvalidRequestError(
                    f"{what} maps label ids (>= 1) to non-empty names; got {key!r}: {name!r}"
                )
            out[label] = name.strip()
        return out
    raise InvalidRequestError(
        f"{what} must be a class name (e.g. 'nucleus') or {{id: name}}; got {value!r}"
    )


def _int(params: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequestError(f"{name} must be an integer from {low} to {high}; got {value!r}")
    return int(value)


def _tasks(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if (
        not isinstance(items, list | tuple)
        or not items
        or not all(isinstance(v, str) and v in _TASKS for v in items)
    ):
        raise InvalidRequestError(
            f"tasks must list some of {list(_TASKS)} (e.g. ['spatial'] when only some "
            f"objects are labelled); got {value!r}"
        )
    return tuple(dict.fromkeys(items))


# ---------------------------------------------------------------------------- runner


def _labelled(item: _Item) -> Any:
    """The item as the model sees it: the RGB of its level, labels resampled nearest."""
    from napari_seem.train.data import labelled_image

    h, w = item.level_shape
    rgb = item.source.read_level_rgb(0, 0, h, w, level=item.level, plane=item.plane)
    labels = item.labels
    if labels.shape != (h, w):  # level-0 labels -> level pixels (at pixel centres)
        h0, w0 = labels.shape
        rows = np.minimum(((np.arange(h) + 0.5) * h0 / h).astype(np.int64), h0 - 1)
        cols = np.minimum(((np.arange(w) + 0.5) * w0 / w).astype(np.int64), w0 - 1)
        labels = labels[np.ix_(rows, cols)]
    present = {int(i) for i in np.unique(labels) if i > 0}
    classes = {k: v for k, v in item.classes.items() if k in present}
    if not classes:
        raise InvalidRequestError(
            f"{item.name}: no object survives at the session's level {item.level}: open the "
            "image at level 0 (or a finer level) to fine-tune on small objects"
        )
    return labelled_image(rgb, labels.astype(np.int64), classes, name=item.name)


def run_fine_tune(
    engine: Engine,
    job: JobRecord,
    session: Session,
    *,
    items: list[_Item],
    config: dict[str, Any],
    checkpoint: str | None,
    switch: bool,
) -> dict[str, Any]:
    """Fine-tune, write the weights, switch the engine to them (module docstring)."""
    steps = int(config["steps"])
    job.emit(done=0, total=steps, message="reading the training images")
    data = [_labelled(item) for item in items]
    job.raise_if_cancelled()
    model = engine.predictor.model
    variant = str(model.name)
    snapshot = None if checkpoint else engine.weights_snapshot()
    start_from = checkpoint or str(snapshot)
    try:
        info = _train(engine, job, data, variant, start_from, config, switch)
    finally:
        if snapshot is not None and snapshot.name.startswith("start-"):
            engine.weight_files.discard(snapshot)  # a start point of this job only
    release_memory()  # the training copy of the model, its optimizer and crops
    return info


def _train(
    engine: Engine,
    job: JobRecord,
    data: list[Any],
    variant: str,
    start_from: str,
    config: dict[str, Any],
    switch: bool,
) -> dict[str, Any]:
    """Train from ``start_from``, write the file, keep it, switch to it (``switch``)."""
    from napari_seem.train.api import fine_tune

    model = engine.predictor.model
    steps = int(config["steps"])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = engine.work_dir / f"finetuned-{variant}-{stamp}-{job.job_id[:8]}.safetensors"
    losses: list[float] = []

    def callback(step: int, loss: float) -> bool:
        losses.append(float(loss))
        job.emit(done=step, message=f"step {step}/{steps} loss {_shown(_recent(losses))}")
        return job.cancel.is_set()

    short = getattr(engine.predictor, "short_side", "auto")
    job.emit(message=f"preparing {len(data)} image(s): caching training crops")
    start = time.perf_counter()
    try:
        path = fine_tune(
            data,
            base=variant,
            checkpoint=start_from,
            out=out,
            progress=False,
            callback=callback,
            device=str(model.device),
            short_side=short if short is None or isinstance(short, int | str) else "auto",
            **config,
        )
    except BaseException:
        out.unlink(missing_ok=True)
        if job.cancel.is_set():
            raise Cancelled(f"job {job.job_id} was cancelled") from None
        raise
    if job.cancel.is_set():
        Path(path).unlink(missing_ok=True)
        raise Cancelled(f"job {job.job_id} was cancelled")
    seconds = time.perf_counter() - start
    engine.weight_files.keep(path)  # older files beyond max_weight_files go
    info: dict[str, Any] = {
        "weights": str(path),
        "variant": variant,
        "steps": len(losses),
        "loss": _recent(losses),
        "seconds": round(seconds, 2),
        "images": len(data),
        "objects": sum(len(d.classes) for d in data),
        "switched": False,
        "checkpoint": engine.checkpoint_id,
    }
    if switch:
        weights = engine.use_weights(path, check_jobs=False)
        info.update(switched=True, checkpoint=weights.checkpoint)
    job.emit(
        done=steps,
        message=f"done: {len(losses)} steps in {seconds:.1f} s, loss {_shown(_recent(losses))}",
    )
    return info


def _recent(losses: list[float], n: int = 20) -> float | None:
    """Mean of the last ``n`` finite losses (None when there is none: JSON has no NaN)."""
    tail = [v for v in losses[-n:] if math.isfinite(v)]
    return float(sum(tail) / len(tail)) if tail else None


def _shown(loss: float | None) -> str:
    return "n/a" if loss is None else f"{loss:.4f}"
