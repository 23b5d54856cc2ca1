"""Which weights the engine's model runs with: its base weights or a fine-tuned file.

The engine keeps ONE model. :meth:`~napari_seem.engine.Engine.use_weights` loads a weight
file (a :func:`napari_seem.train.fine_tune` output: the trained parts only) into it in
place, or restores the base weights. Loading is checked before anything changes: a file
that cannot be read, was written for another variant, or has a key the model lacks (or of
another shape) is refused with :class:`~napari_seem.engine.errors.InvalidRequestError` and
the model keeps its weights.

Before a fine-tuned file is applied, the values it replaces are kept (on the CPU) so the
base weights can come back; a second file is applied on top of the base, never on top of
the first file.

Switching weights changes the image features of seem-lite (its pixel decoder is trained):
the engine gives every session a new feature cache under the new weights' signature and
drops the predictor's per-image and text caches (``SeemPredictor.reset_caches``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from napari_seem.engine.errors import InvalidRequestError

__all__ = [
    "FINETUNED_FORMAT",
    "WeightsInfo",
    "read_weights",
    "snapshot_weights",
    "weights_id",
]

#: ``format`` metadata of the files :meth:`napari_seem.train.loop.Trainer.export` writes.
FINETUNED_FORMAT = "napari-seem-trained-parts"
_TRAINING_ONLY = ("criterion.",)


@dataclass(frozen=True)
class WeightsInfo:
    """The weights an engine runs with.

    Attributes:
        variant: the model variant (``"seem-lite"``).
        checkpoint: what identifies the weights in use (feature-cache signatures and
            ``/info``): the base's id, or ``"<file>#sha256=<16 hex>"`` for a loaded file.
        path: the weight file applied on top of the base, None for the base weights.
        base: the id of the base weights (what :meth:`Engine.use_weights` ``(None)``
            restores).
    """

    variant: str
    checkpoint: str
    path: str | None
    base: str

    @property
    def fine_tuned(self) -> bool:
        return self.path is not None


def weights_id(path: Path) -> str:
    """The checkpoint id of a weight file: its path and the start of its SHA-256 (so a file
    rewritten at the same path never meets features cached for the old one)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return f"{path}#sha256={digest.hexdigest()[:16]}"


def read_weights(path: str | Path, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of a weight file, checked against ``model`` (nothing is loaded).

    Accepts a fine-tuned file (:func:`napari_seem.train.fine_tune`) or any state dict
    (``.safetensors`` / ``.pt``) whose keys all exist in the model with the same shapes.

    Raises:
        InvalidRequestError: unreadable, another variant, or keys that do not fit.
    """
    from napari_seem.model.checkpoint import CheckpointError, read_state_dict

    file = Path(path).expanduser()
    name = str(getattr(model, "name", type(model).__name__))
    if not file.is_file():
        raise InvalidRequestError(
            f"no weight file at {str(file)!r}: give the path of a .safetensors file that "
            "fine-tuning wrote (the fine_tune job's info names it)"
        )
    meta = _metadata(file)
    if meta.get("format") == FINETUNED_FORMAT and meta.get("variant") not in (None, name):
        raise InvalidRequestError(
            f"{file.name} was fine-tuned from {meta.get('variant')!r} but the engine runs "
            f"{name!r}: start the engine with that variant, or fine-tune this one"
        )
    try:
        state = read_state_dict(file)
    except (CheckpointError, OSError, RuntimeError, ValueError) as exc:
        raise InvalidRequestError(f"cannot read the weight file {str(file)!r}: {exc}") from None
    state = {k: v for k, v in state.items() if not k.startswith(_TRAINING_ONLY)}
    own = model.state_dict()
    unknown = sorted(k for k in state if k not in own)
    shapes = sorted(k for k in state if k in own and tuple(own[k].shape) != tuple(state[k].shape))
    if not state or unknown or shapes:
        detail = (
            "it holds no tensors"
            if not state
            else f"unknown keys {unknown[:6]}"
            if unknown
            else f"keys of another shape {shapes[:6]}"
        )
        raise InvalidRequestError(
            f"the weight file {file.name} does not fit the engine's {name}: {detail}; use a "
            f"file fine-tuned from {name}"
        )
    return state


def _metadata(path: Path) -> dict[str, str]:
    if path.suffix != ".safetensors":
        return {}
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as fh:
            return dict(fh.metadata() or {})
    except Exception:  # unreadable files are reported by read_weights
        return {}


def apply_weights(
    model: torch.nn.Module,
    state: Mapping[str, torch.Tensor] | None,
    saved: dict[str, torch.Tensor],
) -> None:
    """Put the base back (``saved`` holds the base values replaced so far), then load
    ``state`` on top (None: stay on the base). Caller holds the engine's model lock."""
    if saved:
        model.load_state_dict(saved, strict=False)
    if not state:
        return
    own = model.state_dict()
    for key in state:
        if key not in saved:
            saved[key] = own[key].detach().to("cpu", copy=True)
    model.load_state_dict(dict(state), strict=False)


def snapshot_weights(model: torch.nn.Module, folder: Path, checkpoint: str) -> Path:
    """Write the weights ``model`` runs with now (what fine-tuning starts from).

    seem-lite: its trained parts (its frozen backbone and sentence encoder come from their
    packages). Other variants: the whole state dict. One file per ``checkpoint`` id; it is
    reused only when the id names the file's content (``#sha256=``), else rewritten (a
    path-named base may have changed on disk since).
    """
    from safetensors.torch import save_file

    from napari_seem.model.lite_weights import trained_keys

    name = str(getattr(model, "name", "model"))
    digest = hashlib.blake2b(f"{name}|{checkpoint}".encode(), digest_size=8).hexdigest()
    path = folder / f"start-{name}-{digest}.safetensors"
    if path.is_file() and "#sha256=" in checkpoint:
        return path
    state = model.state_dict()
    keys = trained_keys(model) if name == "seem-lite" else list(state)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tensors = {k: state[k].detach().to("cpu").contiguous() for k in keys}
    save_file(tensors, str(tmp), metadata={"variant": name, "checkpoint": checkpoint})
    tmp.replace(path)
    return path
