"""Engines built from model names, and the one cache that keeps them between API calls.

``model=None``, a variant name or a checkpoint path becomes an in-process
:class:`~napari_seem.engine.Engine` here, built once per ``(name, file, device)`` and kept
(the default model loads once per process) until :func:`clear_model_cache`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from napari_seem.app.images import Backend
from napari_seem.core.variants import DEFAULT_VARIANT

__all__ = ["VARIANT_ENV", "cached_backend", "clear_model_cache", "default_variant"]

#: Environment variable naming the variant used when ``model`` is not given (tests and CI
#: set it to ``seem-tiny-focal``); unset, :data:`napari_seem.core.variants.DEFAULT_VARIANT`.
VARIANT_ENV = "NAPARI_SEEM_VARIANT"


def default_variant() -> str:
    """The variant used when no ``model`` is given: ``$NAPARI_SEEM_VARIANT`` or the default."""
    return os.environ.get(VARIANT_ENV, "").strip() or DEFAULT_VARIANT


@dataclass
class _ModelCache:
    """Engines built from names, kept between calls (the default model loads once)."""

    backends: dict[tuple[str, str | None, str], Backend] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


# The one piece of process state of the API: without it every call would rebuild the model.
_CACHE = _ModelCache()


def clear_model_cache() -> None:
    """Forget the engines built for ``model=None`` / variant names (frees their memory)."""
    with _CACHE.lock:
        backends = list(_CACHE.backends.values())
        _CACHE.backends.clear()
    for backend in backends:
        if backend.engine is not None:
            backend.engine.close()


def cached_backend(name: str, device: str) -> Backend:
    """The cached backend of a variant name or checkpoint path (built on first use)."""
    path = Path(name).expanduser()
    key = (name, str(path.resolve()) if path.is_file() else None, device)
    with _CACHE.lock:
        backend = _CACHE.backends.get(key)
        if backend is None:
            backend = _build_backend(name, path if path.is_file() else None, device)
            _CACHE.backends[key] = backend
    return backend


def _build_backend(name: str, checkpoint: Path | None, device: str) -> Backend:
    from napari_seem.engine import Engine
    from napari_seem.model.build import VARIANTS, build_seem

    if checkpoint is not None and is_fine_tuned(checkpoint):
        from napari_seem.train.api import load_finetuned

        return Backend(engine=Engine(load_finetuned(checkpoint, device=device)))
    if checkpoint is not None:
        from napari_seem.model.checkpoint import guess_variant, read_state_dict

        state = read_state_dict(checkpoint)
        variant = guess_variant(state)
        if variant is None:
            raise ValueError(
                f"cannot tell which variant the checkpoint {checkpoint} is for: pass "
                "model=SeemPredictor.from_variant(VARIANT, checkpoint=PATH)"
            )
        return Backend(engine=Engine(build_seem(variant, checkpoint=state, device=device)))
    if name not in VARIANTS:
        raise ValueError(
            f"model={name!r} is neither a variant ({', '.join(VARIANTS)}) nor a checkpoint file"
        )
    weights: Path | None = None
    if name.endswith("-v1"):
        from napari_seem.core.hub import cached_path

        weights = cached_path(name)
        if weights is None:
            raise ValueError(
                f"{name} needs its official weights: run `napari-seem models download {name}` "
                "(or pass a checkpoint path as model=)"
            )
    return Backend(engine=Engine(build_seem(name, checkpoint=weights, device=device)))


def is_fine_tuned(path: Path) -> bool:
    """Whether ``path`` is a weight file :func:`napari_seem.fine_tune` wrote."""
    if path.suffix != ".safetensors":
        return False
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata() or {}
    return meta.get("format") == "napari-seem-trained-parts"
