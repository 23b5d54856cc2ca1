"""Without the geo extra: ``import napari_seem`` and the non-geo paths work, and a GeoTIFF
says which ``pip install`` adds support (rasterio blocked in a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

BLOCK = "import sys\nsys.modules['rasterio'] = None\n"  # `import rasterio` -> ImportError


def _run(code: str, *, block: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", (BLOCK if block else "") + code],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_import_napari_seem_loads_no_geo_package() -> None:
    code = (
        "import sys, napari_seem, napari_seem.core.io, napari_seem.batch, napari_seem.cli.main\n"
        "print(sorted(m for m in ('rasterio', 'pyproj', 'shapely') if m in sys.modules))\n"
    )
    done = _run(code, block=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_geotiff_names_the_extra_and_plain_paths_still_work(
    landsat_paths: list[str], tmp_path: Path
) -> None:
    import tifffile

    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((32, 40), np.uint8))
    code = f"""
from napari_seem.core.io import ImageSourceError, open_image
import numpy as np
assert open_image({str(plain)!r}).config.kind == "tiff"
assert open_image(np.zeros((8, 8))).spatial_shape == (8, 8)
for source in ({landsat_paths[0]!r}, {landsat_paths!r}):
    try:
        open_image(source)
    except ImageSourceError as exc:
        print(exc)
    else:
        raise SystemExit("opened a GeoTIFF without rasterio")
"""
    done = _run(code)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert 'pip install "napari-seem[geo]"' in line and "missing here: rasterio" in line


def test_the_command_line_says_so_too(landsat_paths: list[str], tmp_path: Path) -> None:
    code = (
        "from napari_seem.cli.main import main\n"
        f"raise SystemExit(main(['segment', {landsat_paths[0]!r}, '--out', "
        f"{str(tmp_path / 'water.gpkg')!r}, '--text', 'water', '--no-progress']))\n"
    )
    done = _run(code)
    assert done.returncode == 2, done.stderr
    assert 'pip install "napari-seem[geo]"' in done.stderr
    assert not (tmp_path / "water.labels.zarr").exists()
