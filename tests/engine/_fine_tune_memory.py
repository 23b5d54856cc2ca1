"""Run in a child process: the memory of a fine-tune job cancelled after its first step.

Prints one JSON line: ``baseline`` (VmRSS before the job), ``peak`` (VmHWM), ``after``
(VmRSS once the cancelled job ended), in MiB. Arguments: work folder, batch size, crop.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def main() -> None:
    from napari_seem.datasets.synthetic import synthetic_nuclei
    from napari_seem.engine import Engine
    from napari_seem.engine.limits import ServerLimits
    from napari_seem.model.build import build_seem

    work, batch, crop = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_seem("seem-lite", shipped_weights=False, seed=0)
    limits = ServerLimits(max_fine_tune_batch_pixels=64 * 1024**2)
    scene = synthetic_nuclei((crop, crop), n_objects=8, radius=(8.0, 14.0), seed=3)
    with Engine(model, tile=128, halo=16, work_dir=work, limits=limits) as engine:
        image = engine.add_image(scene.image)
        labels = engine.add_image(scene.labels.astype(np.uint32))
        session = engine.open_session(image_id=image)
        baseline = _status_mib("VmRSS")
        job = engine.start_job(
            "fine_tune",
            session,
            labels=labels,
            steps=1000,
            batch_size=batch,
            crop=crop,
            crops_per_image=4,
            tasks=["spatial"],
            switch=False,
        )
        deadline = time.monotonic() + 600
        while engine.job_status(job).done < 1 and engine.job_status(job).state != "failed":
            assert time.monotonic() < deadline, "no step in 600 s"
            time.sleep(0.05)
        engine.cancel_job(job)
        status = engine.wait_job(job, 120)
        time.sleep(0.5)
        after = _status_mib("VmRSS")
        files = sorted(p.name for p in work.iterdir())
    print(
        json.dumps(
            {
                "state": status.state,
                "error": status.error,
                "baseline": round(baseline, 1),
                "peak": round(_status_mib("VmHWM"), 1),
                "after": round(after, 1),
                "files": files,
            }
        )
    )


if __name__ == "__main__":
    main()
