# Sourced by scripts/quickstart.sh and scripts/test.sh (not run on its own): create the virtual
# environment and install PyTorch, pinned, before anything else.
#
# Expects VENV (the virtual environment's folder) and PY (the Python that creates it) to be set.
# Defines two functions, each taking the log prefix (e.g. [quickstart]) as $1:
#   venv_and_pip PREFIX    create VENV when it is missing, then set the `pip` array (a quiet
#                          `pip install` in VENV)
#   install_torch PREFIX   install the pinned torch (see below) unless it is already there

venv_and_pip() {  # $1: the log prefix
    if [ ! -x "$VENV/bin/python" ]; then
        echo "$1 creating virtual environment $VENV"
        "$PY" -m venv "$VENV"
    fi
    pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
}

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
