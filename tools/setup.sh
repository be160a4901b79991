#!/usr/bin/env bash
# Installs what eccolo needs on Debian 12 (apt-get), skipping what is there,
# then configures and builds into build/ (the CUDA kernels too when nvcc is
# installed). Used by tools/demo.sh, tools/test.sh and CI.
#   ECCOLO_BUILD_DIR   build directory (default build)
#   ECCOLO_CMAKE_ARGS  extra arguments for cmake's configure step
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${ECCOLO_BUILD_DIR:-$REPO/build}"

PACKAGES=(build-essential cmake pkg-config libopenblas-dev libopenblas-openmp-dev liblapacke-dev libcjson-dev libpcre2-dev
          libcriterion-dev chromium slurm-wlm munge python3-venv)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "== installing ${missing[*]}" >&2
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q >&2
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

# nvcc is often installed outside PATH
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
    export PATH="/usr/local/cuda/bin:$PATH"
fi

echo "== building in $BUILD" >&2
# shellcheck disable=SC2086  # ECCOLO_CMAKE_ARGS is a list of words
mkdir -p "$BUILD"
cmake -S "$REPO" -B "$BUILD" ${ECCOLO_CMAKE_ARGS:-} >"$BUILD/configure.log" 2>&1 || {
    cat "$BUILD/configure.log" >&2
    exit 1
}
grep "eccolo:" "$BUILD/configure.log" >&2 || true
cmake --build "$BUILD" -j "$(nproc)" >&2
