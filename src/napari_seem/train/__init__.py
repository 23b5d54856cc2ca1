"""Training and fine-tuning of SEEM models on labelled images.

    from napari_seem.train import fine_tune
    path = fine_tune(image, labels, "nucleus", base="seem-lite", steps=200)
    predictor = SeemPredictor(load_finetuned(path))

Submodules: :mod:`~napari_seem.train.data` (inputs), :mod:`~napari_seem.train.prompts_sim`
(simulated prompts and the click protocol), :mod:`~napari_seem.train.matching`,
:mod:`~napari_seem.train.losses`, :mod:`~napari_seem.train.config` (``TrainConfig``, trainable
parts), :mod:`~napari_seem.train.text_cache`, :mod:`~napari_seem.train.criterion`,
:mod:`~napari_seem.train.rounds` (a crop's prompts and earlier rounds),
:mod:`~napari_seem.train.console`, :mod:`~napari_seem.train.loop` (the trainer),
:mod:`~napari_seem.evaluation.heldout`, :mod:`~napari_seem.train.recipe` (the shipped model),
the v2 recipe (:mod:`~napari_seem.train.stream`: fresh crops every step;
:mod:`~napari_seem.train.own_errors`: corrective clicks from the model's own errors;
:mod:`~napari_seem.train.stream_trainer`; :mod:`~napari_seem.train.recipe_v2`) and
:mod:`~napari_seem.cli.train`. Names are imported lazily so that the command line can build
its parser without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from napari_seem.train.api import fine_tune, load_finetuned
    from napari_seem.train.data import TrainingDataError
    from napari_seem.train.loop import TrainConfig, Trainer

__all__ = ["TrainConfig", "Trainer", "TrainingDataError", "fine_tune", "load_finetuned"]

_WHERE = {
    "fine_tune": "napari_seem.train.api",
    "load_finetuned": "napari_seem.train.api",
    "TrainConfig": "napari_seem.train.loop",
    "Trainer": "napari_seem.train.loop",
    "TrainingDataError": "napari_seem.train.data",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'napari_seem.train' has no attribute {name!r}")
