"""Training inputs: readers and clear errors for bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seem.train.data import (
    TrainingDataError,
    from_arrays,
    from_ome_zarr,
    from_tiff_folder,
    from_zarr,
    labelled_image,
)


def _pair() -> tuple[np.ndarray, np.ndarray]:
    image = np.zeros((32, 40), np.uint8)
    labels = np.zeros((32, 40), np.int32)
    labels[2:8, 2:8] = 1
    labels[20:30, 10:20] = 2
    return image, labels


def test_valid_image_maps_every_id_to_its_class() -> None:
    image, labels = _pair()
    item = labelled_image(image, labels, ["nucleus", "cell"])
    assert item.classes == {1: "nucleus", 2: "cell"}
    assert item.class_names == ["nucleus", "cell"]


def test_labels_shape_mismatch_is_a_clear_error() -> None:
    image, labels = _pair()
    with pytest.raises(TrainingDataError, match=r"labels shape \(32, 39\) does not match"):
        labelled_image(image, labels[:, :39], "nucleus")


def test_no_objects_is_a_clear_error() -> None:
    image, labels = _pair()
    with pytest.raises(TrainingDataError, match="no objects"):
        labelled_image(image, np.zeros_like(labels), "nucleus")
    with pytest.raises(TrainingDataError, match="no plane"):
        from_arrays(np.stack([image, image]), np.zeros((2, 32, 40), np.int32), "nucleus")


def test_unknown_class_and_missing_names_are_clear_errors() -> None:
    image, labels = _pair()
    with pytest.raises(TrainingDataError, match="unknown class 'cell'"):
        labelled_image(image, labels, {1: "nucleus", 2: "cell"}, vocabulary=["nucleus"])
    with pytest.raises(TrainingDataError, match="label id 2 has no class name"):
        labelled_image(image, labels, ["nucleus"])
    with pytest.raises(TrainingDataError, match="integers"):
        labelled_image(image, labels.astype(float), "nucleus")


def test_stacks_skip_empty_planes() -> None:
    image, labels = _pair()
    stack = np.stack([labels, np.zeros_like(labels), labels])
    items = from_arrays(np.stack([image] * 3), stack, "nucleus")
    assert len(items) == 2


def test_tiff_folder_zarr_and_ome_zarr(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import tifffile
    import zarr

    image, labels = _pair()
    tifffile.imwrite(tmp_path / "a.tif", image)
    tifffile.imwrite(tmp_path / "a_labels.tif", labels)
    assert len(from_tiff_folder(tmp_path, "nucleus")) == 1

    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("image", data=image)
    group.create_array("labels", data=labels)
    assert from_zarr(tmp_path / "g.zarr", "nucleus")[0].classes == {1: "nucleus", 2: "nucleus"}

    ome = zarr.open_group(str(tmp_path / "o.zarr"), mode="w")
    ome.create_array("0", data=image[None])
    lab = ome.create_group("labels")
    lab.attrs["labels"] = ["cells"]
    lab.create_group("cells").create_array("0", data=labels[None])
    items = from_ome_zarr(tmp_path / "o.zarr", "nucleus")
    assert items[0].labels.shape == (32, 40)
