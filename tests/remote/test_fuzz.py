"""Schemathesis against the server's own OpenAPI schema: no request may get a 5xx.

In-process (ASGI) on the tiny model, with a valid token, derandomized (a fixed seed) and a
few examples per operation and mode (schema-conforming and deliberately malformed),
bounded to well under a minute. Path ids are pinned to real ones (an open session, a
finished job, an upload) so the generated bodies reach the engine instead of stopping at
404; ``DELETE`` operations keep generated ids so the shared objects survive.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from napari_seem.engine import Engine
from napari_seem.model.build import build_seem
from napari_seem.remote.server import create_app

TOKEN = "fuzz-token"
BUDGET_S = 50.0  # the whole run; operations left past it are skipped (and reported)
EXAMPLES = 10  # per operation and generation mode


@pytest.mark.slow
def test_no_request_gets_a_5xx(tmp_path: Path) -> None:
    started = time.monotonic()
    engine = Engine(build_seem("seem-tiny-focal", seed=0), tile=96, halo=16, max_tiles=4)
    image = np.random.default_rng(0).integers(0, 255, (80, 90), dtype=np.uint8)
    image_id = engine.add_image(image)
    session_id = engine.open_session(image_id=image_id)
    job_id = engine.start_job("encode_region", session_id)
    engine.wait_job(job_id, 60)
    ids = {"session_id": session_id, "job_id": job_id, "image_id": image_id}
    app = create_app(engine, token=TOKEN, allowed_roots=[tmp_path], max_body_bytes=1 << 20)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    called: dict[str, int] = {}
    auth = {"Authorization": f"Bearer {TOKEN}"}

    with engine:
        for result in schema.get_all_operations():
            operation = result.ok()
            names = {p.name for p in operation.path_parameters}
            pinned = {} if operation.method.upper() == "DELETE" else {n: ids[n] for n in names}
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                if time.monotonic() - started > BUDGET_S:
                    break
                strategy = operation.as_strategy(mode, path_parameters=pinned or None)

                @given(case=strategy)
                @settings(
                    max_examples=EXAMPLES,
                    derandomize=True,
                    deadline=None,
                    database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                def run(case: Any) -> None:
                    response = case.call(headers=auth)
                    called[case.operation.label] = called.get(case.operation.label, 0) + 1
                    if response.status_code >= 500:
                        failures.append(
                            f"{case.method} {case.formatted_path} -> {response.status_code}: "
                            f"{response.text[:300]}"
                        )

                try:
                    run()
                except Unsatisfiable:
                    assert mode is GenerationMode.NEGATIVE  # nothing in it can be malformed
    assert not failures, "\n".join(failures[:10])
    assert len(called) >= 15, called  # every operation was exercised, within the budget
    assert time.monotonic() - started < 60 + 30  # bounded (the budget plus one slow example)
