"""Training inputs: images with instance labels and class names, validated.

A :class:`LabelledImage` is one 2-D image ``(H, W)`` or ``(H, W, 3)`` with ``(H, W)``
integer instance labels (0 = unlabelled background, each other value one object) and the
class name of every object. Readers build them from numpy arrays (or napari Labels layer
data), TIFF folders, zarr groups and OME-Zarr images with a ``labels/`` group. Stacks
(``(Z, H, W)`` images with ``(Z, H, W)`` labels) become one image per plane that has
objects. ``axes=`` (letters from ``tczyx``, e.g. ``"cyx"``) names the image's axes when its
shape alone would be read wrongly, e.g. a band-first ``(3, H, W)`` raster; every reader
passes it on to :func:`from_arrays`.

``semantic=True`` marks dense class maps (land cover): each label value is a class and its
whole region one segment ("stuff"); the class name is looked up by the value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "ClassNames",
    "LabelledImage",
    "TrainingDataError",
    "by_axes",
    "from_arrays",
    "from_napari_layers",
    "from_ome_zarr",
    "from_tiff_folder",
    "from_zarr",
    "labelled_image",
]

#: One name for every object, a name per label id (``names[i]`` for id ``i + 1``), or a
#: mapping ``{label id: name}``.
ClassNames = str | Sequence[str] | Mapping[int, str]


class TrainingDataError(ValueError):
    """Training inputs that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class LabelledImage:
    """One validated training image.

    Attributes:
        image: ``(H, W)`` or ``(H, W, C)`` array as given (any dtype; converted to RGB uint8
            by :func:`napari_seem.core.images.as_rgb_uint8` when cached).
        labels: ``(H, W)`` int64 labels, 0 = background.
        classes: ``{label id: class name}`` for every id present in ``labels``.
        name: for messages.
        semantic: the labels are a dense class map (one "stuff" segment per value).
        scale: resize factor before cropping; None follows ``TrainConfig.short_side`` (use
            it for a cut-out of a larger image, which must be scaled like the whole image).
    """

    image: np.ndarray
    labels: np.ndarray
    classes: dict[int, str]
    name: str = ""
    semantic: bool = False
    scale: float | None = None

    @property
    def class_names(self) -> list[str]:
        """Distinct class names, in first-appearance order of the ids."""
        return list(dict.fromkeys(self.classes[i] for i in sorted(self.classes)))


def _lookup(class_names: ClassNames, ids: npt.NDArray[np.int64], where: str) -> dict[int, str]:
    if isinstance(class_names, str):
        return {int(i): class_names for i in ids}
    out: dict[int, str] = {}
    for i in ids:
        key = int(i)
        if isinstance(class_names, Mapping):
            name = class_names.get(key)
        else:
            name = class_names[key - 1] if 1 <= key <= len(class_names) else None
        if name is None:
            raise TrainingDataError(
                f"{where}: label id {key} has no class name; give one name for all objects, "
                "a list with one name per id (ids 1..n), or a {id: name} mapping"
            )
        out[key] = name
    return out


def labelled_image(
    image: npt.ArrayLike,
    labels: npt.ArrayLike,
    class_names: ClassNames,
    *,
    vocabulary: Sequence[str] | None = None,
    name: str = "image",
    semantic: bool = False,
) -> LabelledImage:
    """Validate one image and its labels.

    Args:
        image: ``(H, W)`` or ``(H, W, C)``.
        labels: ``(H, W)`` integer labels (0 = background).
        class_names: see :data:`ClassNames`.
        vocabulary: if given, every class name must be in it.
        name: used in error messages.
        semantic: the labels are a dense class map.

    Raises:
        TrainingDataError: shape mismatch, non-integer or negative labels, no objects, an id
            without a class name, an empty name, or a class outside ``vocabulary``.
    """
    img = np.asarray(image)
    lab = np.asarray(labels)
    if img.ndim not in (2, 3):
        raise TrainingDataError(f"{name}: the image must be (H, W) or (H, W, C); got {img.shape}")
    if lab.ndim != 2 or lab.shape != img.shape[:2]:
        raise TrainingDataError(
            f"{name}: labels shape {lab.shape} does not match the image shape {img.shape[:2]} "
            "(labels must be (H, W) with the image's height and width)"
        )
    if lab.dtype == bool or not np.issubdtype(lab.dtype, np.integer):
        raise TrainingDataError(f"{name}: labels must be integers (got {lab.dtype})")
    if lab.size and lab.min() < 0:
        raise TrainingDataError(f"{name}: labels must be >= 0 (0 = background)")
    lab = lab.astype(np.int64)
    ids = np.unique(lab)
    ids = ids[ids > 0]
    if len(ids) == 0:
        raise TrainingDataError(f"{name}: the labels contain no objects (all zero)")
    classes = _lookup(class_names, ids, name)
    for key, cls in classes.items():
        if not isinstance(cls, str) or not cls.strip():
            raise TrainingDataError(f"{name}: label id {key} has an empty class name")
        classes[key] = cls.strip()
    if vocabulary is not None:
        known = {v.strip() for v in vocabulary}
        unknown = sorted({c for c in classes.values() if c not in known})
        if unknown:
            raise TrainingDataError(
                f"{name}: unknown class {', '.join(map(repr, unknown))}; the vocabulary is "
                f"{sorted(known)}"
            )
    return LabelledImage(img, lab, classes, name, semantic)


def by_axes(
    image: npt.ArrayLike, labels: npt.ArrayLike, axes: str, *, name: str = "image"
) -> tuple[np.ndarray, np.ndarray]:
    """Rearrange an image with named ``axes`` to ``(H, W)`` / ``(H, W, C)`` or, with plane
    axes (``t``, ``z``; several are flattened into one), ``(N, H, W[, C])``; its labels
    come in the image's axis order without ``c`` (or already arranged) and are arranged
    the same way to ``(H, W)`` / ``(N, H, W)``.

    Raises:
        TrainingDataError: ``axes`` are not distinct letters of ``tczyx`` with ``y`` and
            ``x``, one per image dimension, or the labels do not fit them.
    """
    img, lab = np.asarray(image), np.asarray(labels)
    letters = axes.strip().lower()
    if (
        set(letters) - set("tczyx")
        or len(set(letters)) != len(letters)
        or not {"y", "x"} <= set(letters)
        or len(letters) != img.ndim
    ):
        raise TrainingDataError(
            f"{name}: axes {axes!r} do not fit the image shape {img.shape}: give one distinct "
            "letter of tczyx per dimension, including y and x (e.g. cyx, zyx, yxc)"
        )
    planes = [a for a in "tz" if a in letters]
    order = [*planes, "y", "x", *(["c"] if "c" in letters else [])]
    img = np.transpose(img, [letters.index(a) for a in order])
    height, width = img.shape[len(planes)], img.shape[len(planes) + 1]
    if "c" in letters and img.shape[-1] == 1:
        img = img[..., 0]
    lab_letters = letters.replace("c", "")
    count = int(np.prod(img.shape[: len(planes)], dtype=np.int64))
    arranged = (count, height, width) if planes else (height, width)
    if lab.ndim == len(lab_letters) and lab.shape != arranged:
        lab = np.transpose(lab, [lab_letters.index(a) for a in order if a != "c"])
    if planes:
        img = img.reshape((count, height, width, *img.shape[len(planes) + 2 :]))
        lab = lab.reshape(arranged) if lab.size == count * height * width else lab
    if lab.shape != arranged:
        raise TrainingDataError(
            f"{name}: labels shape {np.asarray(labels).shape} does not fit the image "
            f"{np.asarray(image).shape} with axes {letters!r}: the labels need the image's "
            f"axes without c ({lab_letters!r})"
        )
    return img, lab


def from_arrays(
    images: npt.ArrayLike | Sequence[npt.ArrayLike],
    labels: npt.ArrayLike | Sequence[npt.ArrayLike],
    class_names: ClassNames,
    *,
    vocabulary: Sequence[str] | None = None,
    semantic: bool = False,
    name: str = "image",
    axes: str | None = None,
) -> list[LabelledImage]:
    """Images and labels as arrays, lists of arrays or stacks.

    A single ``(H, W)`` / ``(H, W, 3)`` image pairs with ``(H, W)`` labels; a ``(Z, H, W)``
    stack (or a list) pairs element-wise with ``(Z, H, W)`` labels, and planes without
    objects are skipped (an error only if no plane has any). napari Labels layer data is
    such an array. ``axes`` names the axes of every image (see :func:`by_axes`); without
    it the layout above is assumed.
    """
    if axes is not None:
        if isinstance(images, list | tuple) and isinstance(labels, list | tuple):
            if len(images) != len(labels):
                raise TrainingDataError(f"{len(images)} images but {len(labels)} label images")
            arranged = [
                by_axes(i, lab, axes, name=name) for i, lab in zip(images, labels, strict=True)
            ]
            images, labels = [a[0] for a in arranged], [a[1] for a in arranged]
        else:
            images, labels = by_axes(images, labels, axes, name=name)  # type: ignore[arg-type]
    if isinstance(images, list | tuple) or isinstance(labels, list | tuple):
        pairs = list(zip(images, labels, strict=False))  # type: ignore[arg-type]
        if len(pairs) != len(images) or len(pairs) != len(labels):  # type: ignore[arg-type]
            raise TrainingDataError(
                f"{len(images)} images but {len(labels)} label images"  # type: ignore[arg-type]
            )
    else:
        img, lab = np.asarray(images), np.asarray(labels)
        if lab.ndim == 3 and img.ndim in (3, 4) and img.shape[0] == lab.shape[0]:
            pairs = [(img[z], lab[z]) for z in range(lab.shape[0])]
        else:
            pairs = [(img, lab)]
    out = []
    for z, (img_z, lab_z) in enumerate(pairs):
        label = f"{name}[{z}]" if len(pairs) > 1 else name
        lab_arr = np.asarray(lab_z)
        if len(pairs) > 1 and lab_arr.ndim == 2 and not lab_arr.any():
            continue
        out.append(
            labelled_image(
                img_z, lab_arr, class_names, vocabulary=vocabulary, name=label, semantic=semantic
            )
        )
    if not out:
        raise TrainingDataError(f"{name}: no plane of the labels contains objects")
    return out


def from_napari_layers(
    image_layer: Any, labels_layer: Any, class_names: ClassNames, **kwargs: Any
) -> list[LabelledImage]:
    """A napari Image layer and Labels layer (2-D or a stack); uses ``layer.data`` only."""
    return from_arrays(
        np.asarray(image_layer.data),
        np.asarray(labels_layer.data),
        class_names,
        name=getattr(labels_layer, "name", "labels"),
        **kwargs,
    )


def from_tiff_folder(
    folder: str | Path,
    class_names: ClassNames,
    *,
    labels_suffix: str = "_labels",
    **kwargs: Any,
) -> list[LabelledImage]:
    """Pairs ``NAME.tif`` + ``NAME{labels_suffix}.tif`` in ``folder`` (recursively)."""
    import tifffile

    root = Path(folder)
    if not root.is_dir():
        raise TrainingDataError(f"{root} is not a folder")
    out: list[LabelledImage] = []
    for lab_path in sorted(root.rglob(f"*{labels_suffix}.tif*")):
        stem = lab_path.name.split(labels_suffix)[0]
        candidates = [p for p in lab_path.parent.glob(f"{stem}.tif*") if p != lab_path]
        if not candidates:
            continue
        out += from_arrays(
            tifffile.imread(candidates[0]),
            tifffile.imread(lab_path),
            class_names,
            name=str(candidates[0].relative_to(root)),
            **kwargs,
        )
    if not out:
        raise TrainingDataError(
            f"no image/labels pairs in {root}: expected NAME.tif next to NAME{labels_suffix}.tif"
        )
    return out


def from_zarr(
    path: str | Path,
    class_names: ClassNames,
    *,
    image: str = "image",
    labels: str = "labels",
    **kwargs: Any,
) -> list[LabelledImage]:
    """A zarr group with an image array and a labels array (names configurable)."""
    import zarr

    group = zarr.open_group(str(path), mode="r")
    try:
        img, lab = group[image], group[labels]
    except KeyError as exc:
        raise TrainingDataError(
            f"{path}: needs arrays {image!r} and {labels!r} (found {sorted(group.keys())})"
        ) from exc
    return from_arrays(np.asarray(img), np.asarray(lab), class_names, name=str(path), **kwargs)


def from_ome_zarr(
    path: str | Path, class_names: ClassNames, *, labels_name: str | None = None, **kwargs: Any
) -> list[LabelledImage]:
    """An OME-Zarr image (level ``0``) with its NGFF labels (``labels/<name>/0``).

    A channel axis in front of ``(Y, X)`` (``(C, Y, X)`` with C <= 4) is moved last; with a
    ``(Z, Y, X)`` or ``(C, Z, Y, X)`` image, each plane pairs with the labels' plane.
    """
    import zarr

    root = zarr.open_group(str(path), mode="r")
    try:
        listed = root["labels"].attrs.get("labels", [])
        names = [str(n) for n in listed] if isinstance(listed, list) else []
    except KeyError as exc:
        raise TrainingDataError(f"{path}: no 'labels' group (OME-Zarr labels)") from exc
    chosen = labels_name or (names[0] if names else None)
    if chosen is None:
        raise TrainingDataError(f"{path}: the labels group lists no labels")
    img = np.asarray(root["0"])
    lab = np.asarray(root[f"labels/{chosen}/0"])
    if kwargs.get("axes") is not None:  # the given axes name every dimension of level 0
        return from_arrays(img, lab, class_names, name=str(path), **kwargs)
    img = np.squeeze(img)
    lab = np.squeeze(lab)
    if img.ndim == lab.ndim + 1 and img.shape[0] <= 4:
        img = np.moveaxis(img, 0, -1)
    return from_arrays(img, lab, class_names, name=str(path), **kwargs)
