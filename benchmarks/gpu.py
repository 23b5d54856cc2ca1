"""GPU section: SEEM encode and per-prompt decode on CUDA in fp32 and bf16 (autocast).

Runs only when ``torch.cuda.is_available()``; otherwise :func:`run` returns
``{"available": False, "reason": "no CUDA on this machine"}``. Timings synchronise the
device around every sample. Per prompt: the fast (interactive) path with warm features.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from functools import partial
from typing import Any

__all__ = ["run"]


def run(
    variants: Sequence[str],
    sizes: Sequence[int],
    *,
    repeats: int = 20,
    budget_s: float = 1.0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"available": False, "reason": "no CUDA on this machine"}
    from napari_seem.model.build import build_seem
    from napari_seem.model.tokenizer import load_clip_tokenizer
    from napari_seem.model.transforms import make_frame, preprocess

    say = log or (lambda _m: None)
    device = torch.device("cuda")
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    for variant in variants:
        try:
            model = build_seem(variant, device=device, shipped_weights=False)
            bundled = getattr(model.text_encoder, "bundled_tokenizer", None)
            tokenizer = bundled() if bundled is not None else load_clip_tokenizer()
            vocab = torch.nn.functional.normalize(
                torch.randn(134, model.decoder.config.dim_proj, device=device), dim=-1
            )
            for dtype_name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
                for size in sorted(sizes):
                    frame = make_frame(
                        (size, size),
                        size_divisibility=model.size_divisibility,
                        fixed_size=model.fixed_size,
                    )
                    image = torch.randint(0, 256, (size, size, 3), dtype=torch.uint8)
                    x = preprocess(image, frame, model.pixel_mean, model.pixel_std).to(device)

                    keys = {"variant": variant, "size": size, "dtype": dtype_name}
                    rows += _measure_size(
                        model, frame, x, tokenizer, vocab, dtype, keys, repeats, budget_s
                    )
                    say(f"[gpu {variant} {size} {dtype_name}] done")
            del model
            torch.cuda.empty_cache()
        except Exception as exc:  # reported, not fatal
            errors[variant] = f"{type(exc).__name__}: {exc}"
    return {
        "available": True,
        "device": torch.cuda.get_device_name(0),
        "rows": rows,
        "errors": errors,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _synced(fn: Callable[[], Any], dtype: Any) -> Callable[[], None]:
    """``fn`` under inference mode and (bf16) autocast, then wait for the device."""
    import torch

    def call() -> None:
        with (
            torch.inference_mode(),
            torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None),
        ):
            fn()
        torch.cuda.synchronize()

    return call


def _measure_size(
    model: Any,
    frame: Any,
    x: Any,
    tokenizer: Any,
    vocab: Any,
    dtype: Any,
    keys: dict[str, Any],
    repeats: int,
    budget_s: float,
) -> list[dict[str, Any]]:
    import torch

    from benchmarks._report import sample
    from benchmarks.model_speed import _prompt_step, _Warm, prompt_cases

    held: dict[str, Any] = {}

    def encode() -> None:
        held["f"] = model.encode_image(x)

    enc = sample(_synced(encode, dtype), repeats=repeats, budget_s=budget_s)
    rows = [{**keys, "stage": "encode_image", **asdict(enc.stats())}]
    with torch.inference_mode():
        features = held["f"]
        memory = model.decoder.project_image(features.multi_scale_features)
    warm = _Warm(model, frame, features, memory, tokenizer, vocab)
    for case in prompt_cases(frame.padded_hw[0]):
        step = partial(_prompt_step, warm, case, "fast")
        s = sample(_synced(step, dtype), repeats=repeats, budget_s=budget_s)
        rows.append({**keys, "prompt": case.name, **asdict(s.stats())})
    return rows
