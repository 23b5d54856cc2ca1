"""Access to the official SEEM reference fixtures in ``../shared/reference/seem``.

The fixtures live beside the repository (never copied into it). Tests that need them
skip with a clear reason when the folder is absent, unless ``NAPARI_SEEM_REQUIRE_REFERENCE=1``
(set by ``.ci/run``), in which case a missing folder is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

#: The backbone feature levels of every fixture, finest first.
LEVELS = ("res2", "res3", "res4", "res5")
#: Largest absolute difference allowed against an official fixture tensor.
ATOL = 1e-5

_DEFAULT = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "seem"


def reference_dir() -> Path:
    """Folder holding ``focalt_v1_tiny/``, ``samvitb_v1_tiny/`` and ``keys/``."""
    root = Path(os.environ.get("NAPARI_SEEM_REFERENCE", _DEFAULT))
    if not root.is_dir():
        msg = f"SEEM reference fixtures not found at {root} (set NAPARI_SEEM_REFERENCE)"
        if os.environ.get("NAPARI_SEEM_REQUIRE_REFERENCE") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return root


def load_npz(fixture: str, name: str) -> dict[str, np.ndarray]:
    """Load ``<fixture>/<name>.npz`` (e.g. ``("focalt_v1_tiny", "panoptic")``) into a dict."""
    with np.load(reference_dir() / fixture / f"{name}.npz") as data:
        return {k: data[k] for k in data.files}


def load_weights(fixture: str) -> dict[str, torch.Tensor]:
    """The fixture's state dict (official key names) as ``{name: torch.Tensor}``."""
    from safetensors.torch import load_file

    return load_file(str(reference_dir() / fixture / "weights.safetensors"))


def sub_state_dict(state: dict, prefix: str) -> dict:
    """Entries of ``state`` under ``prefix`` (e.g. ``"backbone."``) with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def official_keys(key_file: str, prefix: str = "") -> list[tuple[str, list[int]]]:
    """``(name without prefix, shape)`` of an official full-size state dict, in its order.

    ``key_file`` names a file of ``keys/`` (``"seem_focalt_v1"``); ``prefix`` selects a part
    (``"backbone."``). Training-only ``criterion.*`` entries are included; filter them yourself.
    """
    import json

    with open(reference_dir() / "keys" / f"{key_file}.json") as fh:
        keys = json.load(fh)["keys"]
    return [(k[len(prefix) :], shape) for k, shape, _ in keys if k.startswith(prefix)]


def assert_official_layout(model: torch.nn.Module, key_file: str, prefix: str) -> None:
    """``model``'s state dict has the names and shapes, in order, of the official full-size
    one's entries under ``prefix`` (see :func:`official_keys`)."""
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert ours == official_keys(key_file, prefix)


def fixture_features(data: dict[str, np.ndarray], prefix: str) -> dict[str, torch.Tensor]:
    """The fixture's backbone features ``{level: (1, C, h, w) float32}`` (``prefix``: ``""``
    for the target image, ``"ref_"`` for the referring example)."""
    return {name: torch.from_numpy(data[f"{prefix}{name}"]) for name in LEVELS}


def decode_fixture_features(decoder: Any, data: dict[str, np.ndarray], prefix: str) -> Any:
    """A pixel decoder's ``forward_features`` (no grad) on :func:`fixture_features`."""
    with torch.no_grad():
        return decoder.forward_features(fixture_features(data, prefix))


def assert_close(actual: torch.Tensor, expected: np.ndarray, name: str) -> None:
    """``actual`` has the fixture's shape and is within :data:`ATOL` of it everywhere."""
    assert tuple(actual.shape) == expected.shape, name
    diff = (actual - torch.from_numpy(expected)).abs().max().item()
    assert diff < ATOL, f"{name}: max abs diff {diff:.3g}"


def assert_pixel_features(out: Any, data: dict[str, np.ndarray], prefix: str) -> None:
    """A pixel decoder's ``mask_features`` and ``multi_scale_features`` match the fixture's
    (``prefix``: ``""`` for the target image, ``"ref_"`` for the referring example)."""
    assert_close(out.mask_features, data[f"{prefix}mask_features"], f"{prefix}mask_features")
    for i, level in enumerate(out.multi_scale_features):
        assert_close(level, data[f"{prefix}multi_scale_features_{i}"], f"{prefix}level {i}")
