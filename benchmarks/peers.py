"""Peers: SAM ViT-B and SAM 2 (transformers implementations, random weights: speed only).

Each peer is built offline from its transformers config object (nothing is downloaded):

- ``sam-vit-b``: ``SamConfig()`` defaults are the published ViT-B (768 wide, 12 layers,
  global attention in blocks 2, 5, 8, 11; 93.7 M parameters at 1024 px);
- ``sam2-hiera-t``: ``Sam2Config()`` defaults are the published SAM 2 Hiera-Tiny
  (stages 1/2/7/2, 96 wide).

At each size ``S`` the config's ``image_size`` is set to ``S`` (SAM's own pipeline resizes
every image to 1024; at 512 this is the smaller-input configuration, same weights shapes
except the positional embeddings). Figures with warm features, as for SEEM:

- **encode**: ``get_image_embeddings`` on a ``(1, 3, S, S)`` tensor;
- **per prompt**: prompt encoder + mask decoder on the cached embeddings for a click, a box
  and a scribble (SAM has no stroke prompt: the stroke's 8 vertices as positive points);
  text and text + click are not supported by either peer (the table says so).

A peer that fails to build or run is reported with the error instead of figures.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from typing import Any

from benchmarks._report import peak_rss_bytes, sample

__all__ = ["PEERS", "UNSUPPORTED", "measure_peer", "run"]

PEERS = ("sam-vit-b", "sam2-hiera-t")
UNSUPPORTED = {
    "text": "no text prompt in SAM / SAM 2",
    "text+click": "no text prompt in SAM / SAM 2",
}


def _build(peer: str, size: int) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if peer == "sam-vit-b":
        from transformers import SamConfig, SamModel

        config: Any = SamConfig()
        config.vision_config.image_size = size
        config.prompt_encoder_config.image_size = size
        config.prompt_encoder_config.image_embedding_size = size // 16
        return SamModel(config).eval()
    if peer == "sam2-hiera-t":
        from transformers import Sam2Config, Sam2Model

        config2: Any = Sam2Config()
        config2.vision_config.image_size = [size, size]
        config2.vision_config.backbone_feature_sizes = [[size // s] * 2 for s in (4, 8, 16)]
        config2.vision_config.backbone_config.image_size = [size, size]
        config2.prompt_encoder_config.image_size = size
        return Sam2Model(config2).eval()
    raise ValueError(f"unknown peer {peer!r}; known: {', '.join(PEERS)}")


def _prompts(size: int) -> dict[str, dict[str, Any]]:
    import torch

    c = size / 2
    # (x, y) pixel coordinates, as the transformers processors produce them
    stroke = [[c - size / 8 + k * size / 28, c - size / 32 + (k % 2) * size / 16] for k in range(8)]
    return {
        "click": {
            "input_points": torch.tensor([[[[c + size / 20, c - size / 20]]]]),
            "input_labels": torch.tensor([[[1]]]),
        },
        "box": {
            "input_boxes": torch.tensor(
                [[[c - size / 6, c - size / 8, c + size / 6, c + size / 8]]]
            )
        },
        "scribble": {
            "input_points": torch.tensor([[stroke]]),
            "input_labels": torch.ones(1, 1, 8, dtype=torch.long),
        },
    }


def _row(samples: Any, **keys: Any) -> dict[str, Any]:
    return {
        **keys,
        **asdict(samples.stats()),
        "samples_s": samples.total,
        "load_1m": samples.load_1m,
    }


def measure_peer(
    peer: str,
    sizes: Sequence[int],
    *,
    repeats: int,
    budget_s: float,
    threads: int,
    encode_repeats: int = 2,
) -> dict[str, Any]:
    """Every figure of one peer, in this process; errors become ``{"error": ...}``."""
    import torch

    torch.set_num_threads(threads)
    image_rows: list[dict[str, Any]] = []
    prompt_rows: list[dict[str, Any]] = []
    parameters: dict[str, int] = {}
    try:
        for size in sorted(sizes):
            model = _build(peer, size)
            parameters[str(size)] = sum(p.numel() for p in model.parameters())
            x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
            held: dict[str, Any] = {}

            def encode(
                model: Any = model, x: torch.Tensor = x, held: dict[str, Any] = held
            ) -> None:
                held.clear()
                held["emb"] = model.get_image_embeddings(x)

            with torch.inference_mode():
                encoded = sample(encode, repeats=encode_repeats, budget_s=0.0)
                image_rows.append(_row(encoded, variant=peer, size=size, stage="encode_image"))
                emb = held["emb"]
                for name, kwargs in _prompts(size).items():

                    def decode(
                        model: Any = model, emb: Any = emb, kwargs: dict[str, Any] = kwargs
                    ) -> None:
                        model(image_embeddings=emb, multimask_output=False, **kwargs)

                    samples = sample(decode, repeats=repeats, budget_s=budget_s)
                    prompt_rows.append(
                        _row(samples, variant=peer, size=size, prompt=name, path="peer")
                    )
            del model, held, emb
    except Exception as exc:  # a peer that cannot run is reported, not fatal
        return {
            "variant": peer,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=3),
            "image": image_rows,
            "prompts": prompt_rows,
        }
    return {
        "variant": peer,
        "parameters": parameters,
        "peak_rss_bytes": peak_rss_bytes(),
        "image": image_rows,
        "prompts": prompt_rows,
    }


def run(
    peers: Sequence[str] = PEERS,
    sizes: Sequence[int] = (512, 1024),
    *,
    repeats: int = 10,
    budget_s: float = 1.0,
    threads: int = 2,
    encode_repeats: int = 2,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Each peer in a fresh process (clean peak RSS); one result dict per peer."""
    say = log or (lambda _m: None)
    out = []
    context = multiprocessing.get_context("spawn")
    for peer in peers:
        t0 = time.perf_counter()
        try:
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                part = pool.submit(
                    measure_peer,
                    peer,
                    sizes,
                    repeats=repeats,
                    budget_s=budget_s,
                    threads=threads,
                    encode_repeats=encode_repeats,
                ).result()
        except Exception as exc:  # the child died (memory, import)
            part = {"variant": peer, "error": f"{type(exc).__name__}: {exc}", "image": []}
            part["prompts"] = []
        part["wall_s"] = time.perf_counter() - t0
        say(f"[{peer}] " + (part.get("error") or f"done in {part['wall_s']:.0f} s"))
        out.append(part)
    return out
