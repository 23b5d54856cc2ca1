"""Evaluation data: images with instance labels and class names.

Sources (:func:`load_source`):

- a folder of TIFF pairs: ``NAME.tif`` + ``NAME_labels.tif`` side by side, or
  ``images/NAME.tif`` + ``labels/NAME.tif``;
- one image (zarr, OME-Zarr, TIFF) + one labels array (zarr, OME-Zarr labels such as
  ``image.ome.zarr/labels/nuclei``, TIFF);
- built-in held-out data (DATA.md): ``bbbc007-heldout`` (the BBBC007 images never trained
  on, class ``nucleus``) and ``landsat-heldout`` (Landsat columns 245..488, the region no
  training or tuning may see; each land-cover class's connected regions are its instances).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = [
    "BUILTIN_DATASETS",
    "EvalDataError",
    "EvalItem",
    "load_builtin",
    "load_folder",
    "load_pair",
    "load_source",
]

BUILTIN_DATASETS = ("bbbc007-heldout", "landsat-heldout")
# a Landsat land-cover region smaller than this many pixels is not an instance worth clicking
LANDSAT_MIN_REGION = 100
# images are evaluated whole, in memory: beyond this, crop first (the message says so)
MAX_MEGAPIXELS = 64.0
_TIFF = (".tif", ".tiff")


class EvalDataError(ValueError):
    """Unusable evaluation data; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class EvalItem:
    """One labelled image.

    Attributes:
        name: shown in the report.
        image: ``(H, W)`` or ``(H, W, 3)`` image as the model takes it.
        instances: ``(H, W)`` int32 instance labels, 0 = background.
        class_of: instance id -> class name (every id of ``instances``).
    """

    name: str
    image: np.ndarray
    instances: np.ndarray
    class_of: dict[int, str] = field(repr=False)

    def __post_init__(self) -> None:
        if self.image.shape[:2] != self.instances.shape:
            raise EvalDataError(
                f"{self.name}: image {self.image.shape[:2]} and labels {self.instances.shape} "
                "differ in size"
            )

    @property
    def classes(self) -> list[str]:
        """The class names present, sorted."""
        return sorted(set(self.class_of.values()))

    def class_mask(self, name: str) -> npt.NDArray[np.bool_]:
        """``(H, W)`` union of the instances of class ``name`` (the text prompt's truth)."""
        ids = [i for i, c in self.class_of.items() if c == name]
        return np.isin(self.instances, ids)


def _as_instances(labels: np.ndarray, where: str) -> np.ndarray:
    labels = np.squeeze(np.asarray(labels))
    if labels.ndim != 2:
        raise EvalDataError(f"{where}: labels must be 2-D (H, W), got shape {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise EvalDataError(
            f"{where}: labels must be integers (instance ids, 0 = background), got {labels.dtype}"
        )
    if labels.min() < 0:
        raise EvalDataError(f"{where}: labels hold negative values")
    if not labels.any():
        raise EvalDataError(f"{where}: labels are all background (0): nothing to evaluate")
    return labels.astype(np.int32)


def _single_class(instances: np.ndarray, class_name: str) -> dict[int, str]:
    return {int(i): class_name for i in np.unique(instances) if i != 0}


def _read_image(path: Path, axes: str | None = None) -> np.ndarray:
    from napari_seem.core.io import ImageSourceError, open_image

    try:
        # an ambiguous shape such as (3, H, W) is refused unless ``axes`` says what it is
        source = open_image(path, axes=axes, strict_axes=True)
    except ImageSourceError as exc:
        raise EvalDataError(f"cannot read image {path}: {exc}") from exc
    if source.plane_axes:
        raise EvalDataError(f"{path}: has axes {source.axes!r}; give a single 2-D image")
    h, w = source.spatial_shape
    if h * w > MAX_MEGAPIXELS * 1e6:
        raise EvalDataError(
            f"{path} is {h} x {w}: evaluation reads images whole; crop to at most "
            f"{MAX_MEGAPIXELS:g} MP"
        )
    return source.read_rgb(0, 0, h, w)


def _read_labels(path: Path) -> np.ndarray:
    from napari_seem.core.io import ImageSourceError, open_image

    try:
        source = open_image(path, axes=None)
    except ImageSourceError as exc:
        raise EvalDataError(f"cannot read labels {path}: {exc}") from exc
    if source.num_channels != 1 or source.plane_axes:
        raise EvalDataError(f"{path}: labels must be one 2-D array, got axes {source.axes!r}")
    h, w = source.spatial_shape
    return source.read_region(0, 0, h, w)[..., 0]


def load_pair(
    image: str | Path,
    labels: str | Path,
    *,
    class_name: str = "object",
    axes: str | None = None,
) -> EvalItem:
    """One image + its labels (zarr, OME-Zarr or TIFF each); ``axes`` names the image's axes
    (letters of ``tczyx``, e.g. ``cyx``) when its metadata and shape leave them ambiguous."""
    image, labels = Path(image), Path(labels)
    for what, path in (("image", image), ("labels", labels)):
        if not path.exists():
            raise EvalDataError(f"{what} {path} does not exist")
    instances = _as_instances(_read_labels(labels), str(labels))
    pixels = _read_image(image, axes)
    return EvalItem(image.stem, pixels, instances, _single_class(instances, class_name))


def _pairs(folder: Path) -> list[tuple[Path, Path]]:
    pairs = []
    if (folder / "images").is_dir() and (folder / "labels").is_dir():
        for img in sorted((folder / "images").iterdir()):
            lab = folder / "labels" / img.name
            if img.suffix.lower() in _TIFF and lab.exists():
                pairs.append((img, lab))
        return pairs
    for lab in sorted(folder.iterdir()):
        stem, suffix = lab.stem, lab.suffix
        if suffix.lower() in _TIFF and stem.endswith("_labels"):
            img = lab.with_name(stem[: -len("_labels")] + suffix)
            if img.exists():
                pairs.append((img, lab))
    return pairs


def load_folder(
    folder: str | Path, *, class_name: str = "object", axes: str | None = None
) -> list[EvalItem]:
    """Every TIFF pair in ``folder`` (module docstring), sorted by name; ``axes`` as in
    :func:`load_pair`, for every image."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvalDataError(f"{folder} is not a folder")
    pairs = _pairs(folder)
    if not pairs:
        raise EvalDataError(
            f"{folder}: no image/labels pairs found; name them NAME.tif + NAME_labels.tif, "
            "or put them in images/ and labels/ with the same file names"
        )
    return [load_pair(img, lab, class_name=class_name, axes=axes) for img, lab in pairs]


def _landsat_heldout() -> list[EvalItem]:
    from scipy import ndimage

    from napari_seem.datasets.real import (
        LANDSAT_CLASSES,
        LANDSAT_TRAIN_COLUMNS,
        landsat,
        landsat_false_colour,
    )

    scene = landsat()
    # stretch fitted on the training columns only, then crop to the held-out columns
    rgb = landsat_false_colour(scene.bands)[:, LANDSAT_TRAIN_COLUMNS:]
    classes = scene.classes[:, LANDSAT_TRAIN_COLUMNS:]
    instances = np.zeros(classes.shape, np.int32)
    class_of: dict[int, str] = {}
    for value, name in LANDSAT_CLASSES.items():
        parts, n = ndimage.label(classes == value)
        if not n:
            continue
        areas = np.bincount(parts.ravel(), minlength=n + 1)
        for part in np.nonzero(areas >= LANDSAT_MIN_REGION)[0]:
            if part == 0:
                continue
            new = len(class_of) + 1
            instances[parts == part] = new
            class_of[new] = name
    return [EvalItem("landsat columns 245-488", rgb, instances, class_of)]


def load_builtin(name: str) -> list[EvalItem]:
    """A built-in held-out data set (:data:`BUILTIN_DATASETS`)."""
    from napari_seem.datasets.real import BBBC007_HELD_OUT, DataNotInstalled, bbbc007

    try:
        if name == "bbbc007-heldout":
            return [
                EvalItem(item.name, item.image, item.labels, _single_class(item.labels, "nucleus"))
                for item in bbbc007()
                if item.name in BBBC007_HELD_OUT
            ]
        if name == "landsat-heldout":
            return _landsat_heldout()
    except DataNotInstalled as exc:
        raise EvalDataError(str(exc)) from exc
    raise EvalDataError(f"unknown data set {name!r}; built-in: {', '.join(BUILTIN_DATASETS)}")


def load_source(
    *,
    dataset: str | None = None,
    folder: str | Path | None = None,
    image: str | Path | None = None,
    labels: str | Path | None = None,
    class_name: str = "object",
    axes: str | None = None,
) -> list[EvalItem]:
    """Exactly one source: ``dataset``, ``folder``, or ``image`` with ``labels`` (``axes``: the
    images' axis letters when ambiguous, see :func:`load_pair`)."""
    given = [dataset is not None, folder is not None, image is not None or labels is not None]
    if sum(given) != 1:
        raise EvalDataError("give exactly one of: a built-in dataset, a folder, image + labels")
    if dataset is not None:
        return load_builtin(dataset)
    if folder is not None:
        return load_folder(folder, class_name=class_name, axes=axes)
    if image is None or labels is None:
        raise EvalDataError("an image needs its labels and labels need their image")
    return [load_pair(image, labels, class_name=class_name, axes=axes)]
