"""The engine's interactive answers (what napari and the Jupyter widget get) never put an
object on the scene's nodata border, as batch runs and ``napari_seem.segment`` do not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_seem.core.io import open_image
from napari_seem.core.prompts import Box, ObjectPrompt
from napari_seem.core.variants import seem_lite_shipped
from tests.geo.conftest import FALSE_COLOUR

pytestmark = pytest.mark.slow

BOX = Box(0, 0, 80, 80)  # the top-left corner: about half nodata, half land


def _on_frame(obj: object, shape: tuple[int, int]) -> np.ndarray:
    full = np.zeros(shape, bool)
    r0, c0 = obj.offset  # type: ignore[attr-defined]
    h, w = obj.mask.shape  # type: ignore[attr-defined]
    full[r0 : r0 + h, c0 : c0 + w] = obj.mask  # type: ignore[attr-defined]
    return full


def test_engine_answers_stop_at_the_nodata_border(landsat_tif: Path) -> None:
    if not seem_lite_shipped():
        pytest.skip("needs the shipped seem-lite weights")
    from napari_seem.engine import Engine
    from napari_seem.model.build import build_seem
    from napari_seem.predict.predictor import SeemPredictor

    source = open_image(str(landsat_tif), bands=FALSE_COLOUR)
    valid = source.read_valid_mask(0, 0, 443, 489)
    assert 0.1 < (~valid).mean() < 0.3
    predictor = SeemPredictor(build_seem("seem-lite", shipped_weights=True))
    with Engine(predictor, tile=512, halo=32) as engine:
        # the same pixels without nodata (drawn black): the model's box answer reaches into
        # the border, so the assertion on the georeferenced session below can fail
        plain = engine.open_session(image_id=engine.add_image(source.read_rgb(0, 0, 443, 489)))
        answer = engine.predict(plain, ObjectPrompt((BOX,)))
        assert (_on_frame(answer, valid.shape) & ~valid).sum() > 100

        geo = engine.open_session(str(landsat_tif), bands=FALSE_COLOUR)
        answer = engine.predict(geo, ObjectPrompt((BOX,)))
        on_frame = _on_frame(answer, valid.shape)
        assert on_frame.sum() > 200 and not (on_frame & ~valid).any()
        for found in engine.ground(geo, "water"):
            assert not (_on_frame(found, valid.shape) & ~valid).any()
