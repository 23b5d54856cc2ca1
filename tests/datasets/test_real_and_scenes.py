"""Readers of the packaged real data and the extra synthetic generators."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seem.datasets.synthetic import (
    LANDCOVER_CLASSES,
    synthetic_brightfield,
    synthetic_landcover,
)


def test_brightfield_is_seeded_and_labelled() -> None:
    a, b = synthetic_brightfield((96, 128), seed=3), synthetic_brightfield((96, 128), seed=3)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert a.labels.max() == len(a.class_names) > 0
    inside = a.labels > 0
    assert a.image[inside].mean() < a.image[~inside].mean()  # dark objects, bright field


def test_landcover_is_seeded_multiband_with_known_classes() -> None:
    bands, classes = synthetic_landcover((64, 80), seed=5)
    again, _ = synthetic_landcover((64, 80), seed=5)
    assert bands.shape == (6, 64, 80) and bands.dtype == np.float32
    assert np.array_equal(bands, again)
    assert set(np.unique(classes)) <= set(LANDCOVER_CLASSES)
    water = classes == 6
    if water.any():  # water is dark in the near infrared (band index 3)
        assert bands[3][water].mean() < bands[3][~water].mean()


def test_bbbc007_split_and_landsat() -> None:
    real = pytest.importorskip("napari_seem.datasets.real")
    try:
        items = real.bbbc007()
        scene = real.landsat()
    except real.DataNotInstalled as exc:
        pytest.skip(str(exc))
    names = {i.name for i in items}
    assert len(items) == 14 and set(real.BBBC007_HELD_OUT) <= names
    assert all(i.image.shape == i.labels.shape for i in items)
    assert scene.bands.shape == (6, 443, 489) and scene.classes.shape == (443, 489)
    rgb = real.landsat_false_colour(scene.bands)
    assert rgb.shape == (443, 489, 3) and rgb.dtype == np.uint8
