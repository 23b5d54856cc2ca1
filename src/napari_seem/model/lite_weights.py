"""The trained parts of ``seem-lite``: which keys they are, where the shipped file lives,
and strict loading.

``seem-lite`` freezes its EfficientNet-Lite0 backbone and its MiniLM sentence encoder; both
load from their own packages. Everything else (pixel decoder, SEEM decoder, text projection
and temperature) is trained by napari-seem and shipped as ``model/data/seem_lite.safetensors``
(float16 to keep the wheel small; loaded into float32). A weight file for ``seem-lite`` holds
exactly those keys, or the complete state dict; anything else is an error that lists the keys.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from napari_seem.model.checkpoint import (
    CheckpointError,
    LoadReport,
    key_problems,
    load_checkpoint,
    read_state_dict,
)

__all__ = [
    "LITE_FROZEN_PREFIXES",
    "load_lite_weights",
    "shipped_lite_weights",
    "trained_keys",
]

#: State-dict prefixes of seem-lite that come from other packages (or are constants).
LITE_FROZEN_PREFIXES = (
    "backbone.",
    "sem_seg_head.predictor.lang_encoder.encoder.",
    "dilation_kernel",
)
SHIPPED_FILE = "seem_lite.safetensors"


def shipped_lite_weights() -> Path | None:
    """Path of the seem-lite weights inside the installed package, None if not shipped."""
    path = Path(str(resources.files("napari_seem.model").joinpath("data", SHIPPED_FILE)))
    return path if path.is_file() else None


def trained_keys(model: nn.Module, frozen: tuple[str, ...] = LITE_FROZEN_PREFIXES) -> list[str]:
    """State-dict keys of ``model`` not under a ``frozen`` prefix, in model order."""
    return [k for k in model.state_dict() if not k.startswith(frozen)]


def load_lite_weights(
    model: nn.Module,
    source: str | Path | Mapping[str, torch.Tensor] | None,
    *,
    shipped: bool = True,
) -> LoadReport | None:
    """Load the trained parts of seem-lite strictly.

    Args:
        model: a freshly built seem-lite (backbone and text encoder already loaded).
        source: a file or state dict with exactly :func:`trained_keys` (or the complete
            state dict); None uses the shipped file when ``shipped``.
        shipped: with ``source=None``: load the shipped file (True) or leave the trained
            parts at their random initialisation (False).

    Returns:
        What was loaded, or None for a random initialisation.

    Raises:
        CheckpointError: keys missing, unexpected or of another shape (listed).
    """
    if source is None:
        if not shipped:
            return None
        path = shipped_lite_weights()
        if path is None:
            warnings.warn(
                "the seem-lite weights are not in this installation (model/data/"
                f"{SHIPPED_FILE}); its decoder is RANDOM: masks will be meaningless",
                stacklevel=3,
            )
            return None
        source = path
    state = dict(source) if isinstance(source, Mapping) else read_state_dict(source)
    origin = "<state dict>" if isinstance(source, Mapping) else str(source)
    own = model.state_dict()
    if set(state) == set(own):
        return load_checkpoint(model, state, expected_variant="seem-lite")
    problems = key_problems(state, own, trained_keys(model))
    if problems:
        raise CheckpointError(
            f"checkpoint {origin} does not fit seem-lite's trained parts: " + "; ".join(problems)
        )
    result = model.load_state_dict(state, strict=False)
    assert not result.unexpected_keys
    return LoadReport(loaded=len(state), source=origin)
