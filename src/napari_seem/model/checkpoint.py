"""Reading SEEM weight files and loading them strictly.

Official SEEM checkpoints are flat ``state_dict`` files of float32 tensors whose names match
our modules exactly, so the rename step is the identity for them (it only unwraps common
training wrappers). Loading is strict: every missing, unexpected or mis-shaped key is an
error that names the keys, never a silent random initialisation. Training-only keys
(``criterion.*``) are dropped and reported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "CheckpointError",
    "LoadReport",
    "file_sha256",
    "guess_variant",
    "key_problems",
    "load_checkpoint",
    "read_state_dict",
    "rename_official",
]

TRAINING_ONLY_PREFIXES = ("criterion.",)
_WRAPPER_KEYS = ("model", "state_dict", "module")
_MAX_LISTED = 12


class CheckpointError(RuntimeError):
    """A weight file cannot be read or does not fit the model; the message says why."""


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_checkpoint` did.

    Attributes:
        loaded: number of tensors copied into the model.
        dropped: training-only keys that were present in the file and ignored.
        source: file path, or ``"<state dict>"``.
    """

    loaded: int
    dropped: tuple[str, ...] = field(default_factory=tuple)
    source: str = "<state dict>"


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (checkpoints are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` or ``.pt``/``.pth`` file into a flat ``{name: tensor}`` dict (CPU).

    ``.pt`` files are read with ``weights_only=True`` (no arbitrary code runs).

    Raises:
        CheckpointError: the file is missing, truncated, corrupt or holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; give the path of a .pt or .safetensors file, "
            "or run `napari-seem models download NAME` to fetch an official one"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: object = load_file(str(path), device="cpu")
        else:
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/safetensors raise many types for damaged files
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(exc).__name__}: {exc}); the file is "
            "truncated, corrupt or not a PyTorch/safetensors weight file: download it again"
        ) from exc
    return rename_official(_unwrap(raw, path))


def _unwrap(raw: object, path: Path) -> dict[str, torch.Tensor]:
    """Return the flat tensor dict inside ``raw`` (official files are already flat)."""
    obj = raw
    for _ in range(3):
        if (
            isinstance(obj, Mapping)
            and obj
            and all(isinstance(v, torch.Tensor) for v in obj.values())
        ):
            return dict(obj)
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj), None)
            if inner is not None:
                obj = inner
                continue
        break
    raise CheckpointError(
        f"checkpoint {path} holds no flat state dict of tensors (top-level type "
        f"{type(raw).__name__}); expected an official SEEM weight file"
    )


def rename_official(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map foreign names to ours. Identity for official SEEM names; strips a DDP ``module.``."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        out[name.removeprefix("module.")] = tensor
    return out


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f", ... ({more} more)" if more > 0 else "")


def key_problems(
    state: Mapping[str, torch.Tensor],
    own: Mapping[str, torch.Tensor],
    wanted: Iterable[str],
) -> list[str]:
    """What keeps ``state`` from filling the ``wanted`` keys of ``own``: missing, unexpected
    and mis-shaped keys, one phrase each (empty when it fits)."""
    keys = set(wanted)
    missing = sorted(keys - set(state))
    unexpected = sorted(set(state) - keys)
    mismatched = sorted(
        f"{k} (file {tuple(state[k].shape)} vs model {tuple(own[k].shape)})"
        for k in keys & set(state)
        if tuple(state[k].shape) != tuple(own[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} with another shape: {_listing(mismatched)}")
    return problems


def guess_variant(state: Mapping[str, torch.Tensor]) -> str | None:
    """Best guess of the official variant a state dict belongs to, from tell-tale keys."""
    if "backbone.patch_embed.proj.weight" in state:
        width = state["backbone.patch_embed.proj.weight"].shape[0]
        if any(k.startswith("backbone.blocks.") for k in state):
            return {768: "seem-samvitb-v1", 1024: "seem-samvitl-v1"}.get(width)
        return {96: "seem-focalt-v1", 192: "seem-focall-v1"}.get(width)
    if any(k.startswith("backbone.stem") or k.startswith("backbone._blocks") for k in state):
        return "seem-lite"
    return None


def load_checkpoint(
    model: nn.Module,
    source: str | Path | Mapping[str, torch.Tensor],
    *,
    expected_variant: str | None = None,
) -> LoadReport:
    """Copy weights into ``model`` strictly.

    Args:
        model: the freshly built model (any device; tensors are copied onto it).
        source: a file path or an in-memory state dict with official names.
        expected_variant: the model's variant name, used to tell the user which variant the
            file seems to belong to when the keys do not fit.

    Raises:
        CheckpointError: listing every missing, unexpected and mis-shaped key.
    """
    if isinstance(source, Mapping):
        state = rename_official(source)
        origin = "<state dict>"
    else:
        state = read_state_dict(source)
        origin = str(source)
    dropped = tuple(sorted(k for k in state if k.startswith(TRAINING_ONLY_PREFIXES)))
    state = {k: v for k, v in state.items() if k not in set(dropped)}

    own = model.state_dict()
    problems = key_problems(state, own, own)
    if problems:
        hint = ""
        guess = guess_variant(state)
        if guess is not None and guess != expected_variant:
            hint = f" The file looks like a {guess} checkpoint; build that variant instead."
        raise CheckpointError(
            f"checkpoint {origin} does not fit the model"
            + (f" {expected_variant}" if expected_variant else "")
            + ": "
            + "; ".join(problems)
            + "."
            + hint
        )
    model.load_state_dict(state, strict=True)
    return LoadReport(loaded=len(state), dropped=dropped, source=origin)
