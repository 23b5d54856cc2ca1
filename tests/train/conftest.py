"""Shared fixtures of the training tests: a seem-lite model with random trained parts
(the packaged backbone and sentence encoder are real) and tiny synthetic scenes."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="session")
def lite_state() -> dict[str, torch.Tensor]:
    from napari_seem.model.build import build_seem

    model = build_seem("seem-lite", shipped_weights=False, seed=0)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture()
def fresh_lite(lite_state):  # type: ignore[no-untyped-def]
    """A seem-lite with seeded random trained parts (a fresh copy per test, built once)."""
    import warnings

    from napari_seem.model.build import build_seem

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_seem("seem-lite", shipped_weights=False, seed=0)
    model.load_state_dict(lite_state)
    return model


def tiny_scenes(seeds, shape=(96, 96)):  # type: ignore[no-untyped-def]
    from napari_seem.datasets.synthetic import synthetic_nuclei
    from napari_seem.train.data import labelled_image

    out = []
    for s in seeds:
        scene = synthetic_nuclei(shape, n_objects=6, radius=(7.0, 12.0), seed=s)
        out.append(labelled_image(scene.image, scene.labels, "nucleus", name=f"tiny {s}"))
    return out
