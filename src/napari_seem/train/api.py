"""The Python API of fine-tuning: :func:`fine_tune` and :func:`load_finetuned`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy.typing as npt

from napari_seem.core.progress import Cancelled, Progress, Reporter
from napari_seem.model.build import build_seem
from napari_seem.model.seem import SeemModel
from napari_seem.train.data import ClassNames, LabelledImage, from_arrays
from napari_seem.train.loop import TrainConfig, Trainer, fine_tune_trainable

__all__ = ["fine_tune", "load_finetuned"]


def fine_tune(
    images: npt.ArrayLike | Sequence[npt.ArrayLike] | Sequence[LabelledImage],
    labels: npt.ArrayLike | Sequence[npt.ArrayLike] | None = None,
    class_names: ClassNames | None = None,
    *,
    base: str = "seem-lite",
    checkpoint: str | Path | None = None,
    out: str | Path = "seem-finetuned.safetensors",
    resume_dir: str | Path | None = None,
    progress: bool = True,
    callback: Callable[[int, float], bool | None] | None = None,
    reporter: Reporter | None = None,
    cancel: threading.Event | None = None,
    **config: Any,
) -> Path:
    """Fine-tune a model on the user's labelled images and write the trained weights.

    Args:
        images: an image ``(H, W)`` / ``(H, W, 3)``, a stack, a list, or ready
            :class:`~napari_seem.train.data.LabelledImage` items (then no labels/classes).
        labels: instance labels matching ``images`` (napari Labels layer data works).
        class_names: one name for all objects, one per label id, or ``{id: name}``.
        base: the variant to start from. ``seem-lite`` starts from its shipped weights;
            official variants need ``checkpoint`` and train their decoder only.
        checkpoint: base weights (official file; for seem-lite an earlier fine-tune).
        out: the ``.safetensors`` file to write (trained parts only, a few MB).
        resume_dir: keep resumable ``last.pt`` checkpoints here (and resume from one).
        progress: show a progress bar.
        callback: ``callback(step, loss)`` after each step; return True to stop early
            (the weights trained so far are written).
        reporter: told ``Progress(step, total, message, values={"loss": ...})`` after each
            step (see :meth:`~napari_seem.train.loop.Trainer.train`).
        cancel: set it to abandon the run: :class:`~napari_seem.core.progress.Cancelled`
            is raised after the current step and no weights are written.
        **config: :class:`TrainConfig` fields, e.g. ``steps=200``, ``tasks=("spatial",)``;
            ``trainable`` defaults to the SEEM decoder (:func:`fine_tune_trainable`)
            (when only some objects are labelled, train the interactive task only).

    Returns:
        The written file. Load it with :func:`load_finetuned`.
    """
    known = {f.name for f in fields(TrainConfig)}
    if unknown := set(config) - known:
        raise TypeError(f"unknown training options {sorted(unknown)}; see TrainConfig")
    cfg = replace(TrainConfig(), **config)
    if isinstance(images, list | tuple) and images and isinstance(images[0], LabelledImage):
        data = list(images)
    else:
        if labels is None or class_names is None:
            raise TypeError("fine_tune needs labels and class_names with raw images")
        data = from_arrays(images, labels, class_names)  # type: ignore[arg-type]
    if base != "seem-lite" and checkpoint is None:
        raise ValueError(f"fine-tuning {base} needs its weights: pass checkpoint=PATH")
    model = build_seem(base, checkpoint=checkpoint, device=cfg.device, seed=cfg.seed)
    if cfg.trainable is None:
        cfg = replace(cfg, trainable=fine_tune_trainable(model))
    trainer = Trainer(model, data, cfg, out_dir=resume_dir, progress=progress)
    if resume_dir is not None and (Path(resume_dir) / "last.pt").exists():
        trainer.load_checkpoint(Path(resume_dir) / "last.pt")
    _train(trainer, callback, reporter, cancel)
    path = trainer.export(out)
    if base != "seem-lite":
        _add_base_note(path, base, checkpoint)
    return path


def _train(
    trainer: Trainer,
    callback: Callable[[int, float], bool | None] | None,
    reporter: Reporter | None,
    cancel: threading.Event | None,
) -> None:
    """Run ``trainer`` with the public hooks: ``callback`` returning True stops the run
    early (it still counts as finished), ``cancel`` abandons it (Cancelled propagates)."""
    stop = threading.Event()

    def hooks(progress: Progress) -> None:
        if reporter is not None:
            reporter(progress)
        if callback is not None and callback(progress.done, float(progress.values["loss"])):
            stop.set()
        if cancel is not None and cancel.is_set():
            raise Cancelled("fine-tuning was cancelled")

    try:
        trainer.train(reporter=hooks, cancel=stop)
    except Cancelled:
        if not stop.is_set():
            raise


def _add_base_note(path: Path, base: str, checkpoint: str | Path | None) -> None:
    from safetensors.torch import load_file, safe_open, save_file

    with safe_open(str(path), "pt") as fh:
        meta = dict(fh.metadata() or {})
    meta["base_checkpoint"] = str(checkpoint)
    save_file(load_file(str(path)), str(path), metadata=meta)


def load_finetuned(
    path: str | Path,
    *,
    base_checkpoint: str | Path | None = None,
    device: str = "auto",
) -> SeemModel:
    """Build the model a :func:`fine_tune` file belongs to and load it strictly.

    seem-lite files load on top of the packaged backbone/text weights; official variants
    load their base checkpoint (``base_checkpoint``, default: the path recorded in the
    file) and then the fine-tuned decoder keys, all of which must exist in the model.
    """
    from safetensors.torch import load_file, safe_open

    from napari_seem.model.checkpoint import CheckpointError

    with safe_open(str(path), "pt") as fh:
        meta = dict(fh.metadata() or {})
    variant = meta.get("variant")
    if meta.get("format") != "napari-seem-trained-parts" or not variant:
        raise CheckpointError(f"{path} is not a napari-seem fine-tuned weight file")
    if variant == "seem-lite":
        return build_seem("seem-lite", checkpoint=path, device=device)
    base = base_checkpoint or meta.get("base_checkpoint")
    if not base or base == "None":
        raise CheckpointError(f"{path} fine-tunes {variant}: pass base_checkpoint=PATH")
    model = build_seem(variant, checkpoint=base, device="cpu")
    state = load_file(str(path))
    own = model.state_dict()
    bad = sorted(k for k in state if k not in own or own[k].shape != state[k].shape)
    if bad:
        raise CheckpointError(f"{path} does not fit {variant}: {bad[:8]}")
    model.load_state_dict(state, strict=False)
    from napari_seem.model.build import resolve_device

    return model.to(resolve_device(device))
