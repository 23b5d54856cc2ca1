#!/usr/bin/env python
"""Train the shipped seem-lite weights (the committed recipe, seed included).

    .venv/bin/python scripts/train_seem_lite.py [--out out/seem-lite-train] [--ship]

Two stages (see napari_seem.train.recipe): 2000 steps from scratch, then 500 "polish"
steps with negative clicks on touching neighbours. Each resumes from its last.pt
(OUT/last.pt, OUT/polish/last.pt) when present. ``--ship`` exports to
src/napari_seem/model/data/seem_lite.safetensors (otherwise OUT/seem_lite.safetensors).
Same as ``napari-seem train --recipe seem-lite``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[1] / "src/napari_seem/model/data/seem_lite.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="out/seem-lite-train")
    parser.add_argument("--steps", type=int, default=None, help="stage-1 steps")
    parser.add_argument("--polish-steps", type=int, default=None, help="stage-2 steps")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--ship", action="store_true", help="export into the package")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    from napari_seem.train.recipe import run_seem_lite_recipe

    path = run_seem_lite_recipe(
        args.out,
        export_to=SHIPPED if args.ship else None,
        steps=args.steps,
        polish_steps=args.polish_steps,
        device=args.device,
        progress=not args.no_progress,
    )
    print(f"weights: {path}")


if __name__ == "__main__":
    main()
