from __future__ import annotations

import numpy as np

from napari_seem.datasets.synthetic import synthetic_nuclei


def test_synthetic_nuclei_is_seeded_and_labelled() -> None:
    a = synthetic_nuclei((128, 160), n_objects=8, seed=3)
    b = synthetic_nuclei((128, 160), n_objects=8, seed=3)
    c = synthetic_nuclei((128, 160), n_objects=8, seed=4)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)
    ids = np.unique(a.labels)
    assert ids[0] == 0 and len(ids) - 1 == len(a.class_names) >= 4
    # nuclei are brighter than the background
    assert a.image[a.labels > 0].mean() > a.image[a.labels == 0].mean() + 50
