"""Preview pictures of generated scenes: image | instance outlines, written as PNG.

``python -m napari_seem.datasets.preview [OUT_DIR]`` writes one PNG per modality (default
``docs/images/synthetic``). Only numpy and the standard library (zlib) are used.
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import numpy as np

from napari_seem.datasets.instances import boundary_mask
from napari_seem.datasets.scene import Scene

__all__ = ["PREVIEW_OPTIONS", "PREVIEW_SEEDS", "display_rgb", "preview", "write_png"]

#: The (training-range) seed shown per modality in ``docs/images/synthetic``.
PREVIEW_SEEDS = {
    "nuclei": 1,
    "cells": 1,
    "phase_contrast": 2,
    "brightfield": 4,
    "em": 2,
    "he": 6,
    "landcover": 2,
}
#: Options of the preview scenes (the nuclei picture shows crowded nuclei of two sizes).
PREVIEW_OPTIONS: dict[str, dict[str, object]] = {
    "nuclei": {"density": "crowded", "populations": 2, "diameter": (8, 30), "touching": 0.7},
}


def display_rgb(scene: Scene) -> np.ndarray:
    """``(H, W, 3)`` uint8 view of a scene's image (grey stretched to its 0.5-99.8 %
    percentiles; land cover as true colour from bands blue, green, red)."""
    img = np.asarray(scene.image)
    if img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8:
        return img.copy()
    if img.ndim == 3:
        img = img[..., [2, 1, 0]]
    lo, hi = np.percentile(img, [0.5, 99.8])
    out = np.clip((img.astype(np.float64) - lo) / max(hi - lo, 1e-9), 0, 1)
    out = (out * 255).astype(np.uint8)
    return np.repeat(out[..., None], 3, -1) if out.ndim == 2 else out


def preview(scene: Scene) -> np.ndarray:
    """``(H, 2 W + 4, 3)`` uint8: the image, a white gap, the image with every instance
    outlined in a colour of its own (adjacent instances differ)."""
    rgb = display_rgb(scene)
    edge = boundary_mask(scene.instances)
    rng = np.random.default_rng(0)
    palette = rng.integers(60, 256, (int(scene.instances.max(initial=0)) + 1, 3)).astype(np.uint8)
    palette[:, int(rng.integers(3))] = 255
    over = rgb.copy()
    over[edge] = palette[scene.instances[edge]]
    gap = np.full((rgb.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([rgb, gap, over], axis=1)


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write an ``(H, W, 3)`` uint8 array as an 8-bit RGB PNG."""
    arr = np.ascontiguousarray(rgb, np.uint8)
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[r].tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return (
            struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6))
    Path(path).write_bytes(png + chunk(b"IEND", b""))


def main(argv: list[str] | None = None) -> int:
    """Write ``<modality>.png`` for every modality into the folder given (or the default)."""
    from napari_seem.datasets.generate import MODALITIES, generate

    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "docs/images/synthetic")
    out.mkdir(parents=True, exist_ok=True)
    for modality in MODALITIES:
        options = PREVIEW_OPTIONS.get(modality, {})
        scene = generate(modality, PREVIEW_SEEDS.get(modality, 1), (256, 256), **options)
        write_png(out / f"{modality}.png", preview(scene))
    # the other stain of the fluorescent cells
    membrane = generate("cells", 3, (256, 256), stain="membrane", diameter=(20, 80))
    write_png(out / "cells_membrane.png", preview(membrane))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
