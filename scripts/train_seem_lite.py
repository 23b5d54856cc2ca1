#!/usr/bin/env python
"""Train the shipped seem-lite weights (the committed recipe, seed included).

    .venv/bin/python scripts/train_seem_lite.py [--out out/seem-lite-train] [--ship]

Two stages (see napari_seem.train.recipe): 2000 steps from scratch, then 500 "polish"
steps with negative clicks on touching neighbours. Each resumes from its last.pt
(OUT/last.pt, OUT/polish/last.pt) when present. ``--ship`` exports to
src/napari_seem/model/data/seem_lite.safetensors (otherwise OUT/seem_lite.safetensors).
Same as ``napari-seem train --recipe seem-lite``.

``--recipe seem-lite-v2`` runs the v2 recipe (napari_seem.train.recipe_v2: fresh crops of
every modality and the real training data, multi-round clicks from the model's own errors,
from the shipped weights or ``--init``); OUT defaults to out/seem-lite-v2, which gets
last.pt every 25 steps and float16 milestones in OUT/milestones every ``--milestone-every``
steps. It never writes into the package::

    nohup .venv/bin/python scripts/train_seem_lite.py --recipe seem-lite-v2 --threads 1 \
        > out/seem-lite-v2/train.log 2>&1 &
"""

from __future__ import annotations

import argparse
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[1] / "src/napari_seem/model/data/seem_lite.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipe", choices=("seem-lite", "seem-lite-v2"), default="seem-lite")
    parser.add_argument("--out", default=None, help="default: out/<recipe dir>")
    parser.add_argument("--steps", type=int, default=None, help="stage-1 steps")
    parser.add_argument("--polish-steps", type=int, default=None, help="stage-2 steps")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--ship", action="store_true", help="export into the package")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--init", default=None, help="v2: start from this weight file")
    parser.add_argument("--milestone-every", type=int, default=100, help="v2")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.recipe == "seem-lite-v2":
        if args.ship:
            parser.error("--ship is for the v1 recipe; the lead decides what ships from v2")
        from napari_seem.train.recipe_v2 import run_seem_lite_v2

        path = run_seem_lite_v2(
            args.out,
            steps=args.steps,
            init=args.init,
            milestone_every=args.milestone_every,
            device=args.device,
            num_threads=args.threads,
        )
        print(f"weights: {path}")
        return

    from napari_seem.train.recipe import run_seem_lite_recipe

    path = run_seem_lite_recipe(
        args.out or "out/seem-lite-train",
        export_to=SHIPPED if args.ship else None,
        steps=args.steps,
        polish_steps=args.polish_steps,
        device=args.device,
        progress=not args.no_progress,
    )
    print(f"weights: {path}")


if __name__ == "__main__":
    main()
