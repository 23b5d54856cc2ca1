"""An object cut at the model's tile limit is said in the widget's status (issue 16).

The engine decodes at most ``max_tiles`` tiles per ``predict``; its answer says
``truncated``. :func:`napari_seem.app.backend.predict_answer` carries the flag to the UIs;
the Jupyter widget appends the notice (the limit and what to do) to its status line.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from napari_seem import Box
from napari_seem.app.backend import Answer, LocalBackend, predict_answer
from napari_seem.core.prompts import ObjectPrompt
from napari_seem.core.results import ObjectMask


def test_notice_names_the_limit_and_what_to_do() -> None:
    mask = ObjectMask(np.ones((2, 2), bool), (0, 0), score=0.5)
    assert Answer(mask).notice is None
    notice = Answer(mask, truncated=True, max_tiles=4).notice
    assert notice is not None and "4 tiles" in notice and "max_tiles" in notice
    assert "smaller object" in notice


def test_backend_without_predict_answer_is_not_truncated() -> None:
    mask = ObjectMask(np.ones((2, 2), bool), (3, 4), score=0.5)

    class Plain:
        def predict(self, session_id: str, prompt: ObjectPrompt, *, object_id: object) -> Any:
            return mask

    got = predict_answer(Plain(), "s", ObjectPrompt(Box(0, 0, 2, 2)))
    assert got.mask is mask and not got.truncated


@pytest.mark.slow
def test_widget_status_says_the_object_was_cut() -> None:
    from napari_seem.engine import Engine
    from napari_seem.jupyter import SeemWidget
    from napari_seem.predict.predictor import SeemPredictor

    predictor = SeemPredictor.from_variant("seem-tiny-focal", device="cpu")
    image = np.random.default_rng(0).integers(0, 255, (384, 384), dtype=np.uint8)
    with Engine(predictor, tile=128, halo=16, max_tiles=1) as engine:
        backend = LocalBackend(engine)
        sid = backend.open_image(image)
        prompt = ObjectPrompt(Box(0, 0, 383, 383))  # the whole image: more than one tile
        answer = backend.predict_answer(sid, prompt)
        if not answer.truncated:
            pytest.skip("the random model's mask stayed inside one tile")
        assert answer.max_tiles == 1 and answer.notice is not None
        widget = SeemWidget(image, model=engine)
        widget.add_prompt(Box(0, 0, 383, 383))
        widget.segment()
        widget.wait()
        assert "1 tiles" in widget.status and "max_tiles" in widget.status, widget.status
        widget.close()
