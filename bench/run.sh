#!/usr/bin/env bash
# eccolo vs Ecco 0.1.2: one command from a fresh clone to bench/RESULTS.md.
#
#   bench/run.sh [--quick] [--device cpu|cuda] [--threads N] [--repeats N] [--wheels DIR] [--setup-only]
#                [-- HARNESS-ARGS]
#   bench/run.sh --download-wheels DIR [--for-gpu-host]
#
# --setup-only stops before the benchmark itself. Arguments after -- go to
# bench/harness.py, e.g. `-- --lengths 35,128,512 --nmf-sizes 64,256` for a
# subset of the full plan (RESULTS.md then says "custom").
# Steps: the peer's Python environment (bench/.venv: bench/requirements.txt, then
# ecco==0.1.2 with --no-deps), a check that Ecco imports and generates on a tiny
# model, a build of eccolo and bench_sgemm (build-bench/, RelWithDebInfo), the benchmark's
# checkpoints (bench/make_models.py), then bench/harness.py, which writes
# bench/RESULTS.md (this device's section), bench/results/<device>.json and
# bench/results/time_vs_tokens_<device>.png.
#
# Offline machines: on a machine that reaches PyPI,
#   bench/run.sh --download-wheels DIR                 every wheel, torch included, for this
#                                                     machine's Python and platform
#   bench/run.sh --download-wheels DIR --for-gpu-host  only what the GPU machine lacks (its
#                                                     python3 3.12 has torch, numpy, scikit-learn,
#                                                     matplotlib, ...): about 20 MB
# then on the offline machine `bench/run.sh --wheels DIR` (or ECCOLO_BENCH_WHEELS=DIR)
# installs from DIR with --no-index. A --for-gpu-host DIR is installed with --no-deps
# into bench/.venv/site, put ahead of the machine's own packages with PYTHONPATH.
#
# Environment: ECCOLO_PIP_ARGS (extra pip install arguments, e.g. a CPU-only torch
# index), ECCOLO_BENCH_BUILD (build directory, default build-bench),
# ECCOLO_BENCH_CMAKE_ARGS (extra cmake arguments), CUDA_ARCHS (default 90).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# OpenBLAS's core type and L2 size are left to OpenBLAS for both engines (the
# environment's OPENBLAS_CORETYPE=Haswell costs about 45 % of sgemm speed)
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE

DEVICE=cpu
QUICK=()
THREADS="$(nproc)"
REPEATS=()
WHEELS="${ECCOLO_BENCH_WHEELS:-}"
DOWNLOAD=""
GPU_HOST=0
SETUP_ONLY=0
HARNESS=()
ARGS=""
for a in "$@"; do  # the command as typed, empty arguments quoted (the report quotes it)
    if [[ -z $a ]]; then ARGS+=" ''"; else ARGS+=" $a"; fi
done
ARGS="${ARGS# }"
usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) QUICK=(--quick) ;;
        --device) DEVICE="$2"; shift ;;
        --threads) THREADS="$2"; shift ;;
        --repeats) REPEATS=(--repeats "$2"); shift ;;
        --wheels) WHEELS="$2"; shift ;;
        --download-wheels) DOWNLOAD="$2"; shift ;;
        --for-gpu-host) GPU_HOST=1 ;;
        --setup-only) SETUP_ONLY=1 ;;
        --) shift; HARNESS=("$@"); break ;;
        -h|--help) usage 0 ;;
        *) echo "bench/run.sh: unknown argument $1" >&2; usage 2 ;;
    esac
    shift
done
[[ "$DEVICE" == cpu || "$DEVICE" == cuda ]] || { echo "bench/run.sh: --device cpu|cuda" >&2; exit 2; }

VENV="$REPO/bench/.venv"
ECCO_PIN="ecco==0.1.2"
# shellcheck disable=SC2206  # ECCOLO_PIP_ARGS is a list of words
PIP_ARGS=(${ECCOLO_PIP_ARGS:-})
say() { echo "== $*"; }

# ---- download mode ------------------------------------------------------------------
if [[ -n "$DOWNLOAD" ]]; then
    mkdir -p "$DOWNLOAD"
    if [[ "$GPU_HOST" == 1 ]]; then
        say "downloading the GPU machine's missing wheels (Python 3.12, manylinux x86_64) into $DOWNLOAD"
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
            -d "$DOWNLOAD" -r bench/requirements-gpu-host.txt
        echo gpu-host >"$DOWNLOAD/PROFILE"
    else
        say "downloading every wheel of bench/requirements.txt and $ECCO_PIN into $DOWNLOAD"
        python3 -m pip download -q "${PIP_ARGS[@]}" -d "$DOWNLOAD" -r bench/requirements.txt
        python3 -m pip download -q "${PIP_ARGS[@]}" --no-deps -d "$DOWNLOAD" "$ECCO_PIN"
        echo full >"$DOWNLOAD/PROFILE"
    fi
    du -sh "$DOWNLOAD"
    exit 0
fi

# ---- the peer's Python environment -----------------------------------------------------
PROFILE=online
if [[ -n "$WHEELS" ]]; then
    [[ -d "$WHEELS" ]] || { echo "bench/run.sh: no wheel directory $WHEELS" >&2; exit 2; }
    PROFILE="$(cat "$WHEELS/PROFILE" 2>/dev/null || echo full)"
fi
REQS=bench/requirements.txt
[[ "$PROFILE" == gpu-host ]] && REQS=bench/requirements-gpu-host.txt
STAMP="$([[ $PROFILE == gpu-host ]] && echo site || echo venv) $ECCO_PIN $(cat "$REQS" tools/requirements.txt | sha256sum | cut -c1-16)"
if [[ "$PROFILE" == gpu-host ]]; then
    PY=python3
    export PYTHONPATH="$VENV/site${PYTHONPATH:+:$PYTHONPATH}"
else
    PY="$VENV/bin/python"
fi
if [[ "$(cat "$VENV/.stamp" 2>/dev/null)" != "$STAMP" ]]; then
    if [[ "$PROFILE" == gpu-host ]]; then
        say "installing $REQS from $WHEELS into $VENV/site (--no-deps, ahead of $(command -v python3)'s packages)"
        rm -rf "$VENV/site"
        mkdir -p "$VENV"
        python3 -m pip install -q --no-index --no-deps --no-compile --find-links "$WHEELS" --target "$VENV/site" \
            -r "$REQS"
    else
        if [[ ! -x "$PY" ]]; then
            say "creating $VENV"
            python3 -m venv "$VENV" || { echo "python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
        fi
        SRC=("${PIP_ARGS[@]}")
        [[ "$PROFILE" == full ]] && SRC=(--no-index --find-links "$WHEELS")
        say "installing $REQS into $VENV${WHEELS:+ from $WHEELS}"
        "$PY" -m pip install -q --disable-pip-version-check "${SRC[@]}" -r "$REQS"
        # Ecco 0.1.2 pins scikit-learn~=0.23 and PyYAML~=5.4; what it imports is in the requirements
        say "installing $ECCO_PIN (--no-deps)"
        "$PY" -m pip install -q --disable-pip-version-check "${SRC[@]}" --no-deps "$ECCO_PIN"
    fi
    echo "$STAMP" >"$VENV/.stamp"
fi
say "checking that Ecco imports and generates"
MPLBACKEND=Agg "$PY" bench/ecco_worker.py check

# ---- eccolo ----------------------------------------------------------------------------
BUILD="${ECCOLO_BENCH_BUILD:-build-bench}"
# the project's default build type (RelWithDebInfo: -O2 -g), which its CI keeps free of warnings;
# ECCOLO_BENCH_CMAKE_ARGS=-DCMAKE_BUILD_TYPE=Release for -O3
CMAKE_ARGS=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DECCOLO_TESTS=OFF)
if [[ "$DEVICE" == cuda ]]; then
    CMAKE_ARGS+=(-DECCOLO_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHS:-90}")
else
    CMAKE_ARGS+=(-DECCOLO_CUDA=OFF)
fi
# shellcheck disable=SC2206
CMAKE_ARGS+=(${ECCOLO_BENCH_CMAKE_ARGS:-})
say "building eccolo and bench_sgemm in $BUILD (${CMAKE_ARGS[*]})"
mkdir -p "$BUILD"
cmake -S . -B "$BUILD" "${CMAKE_ARGS[@]}" >"$BUILD/bench-configure.log" 2>&1 || {
    cat "$BUILD/bench-configure.log" >&2
    exit 1
}
cmake --build "$BUILD" -j"$(nproc)" --target eccolo bench_sgemm >/dev/null
"$BUILD/eccolo" info | sed 's/^/   /'
if [[ "$DEVICE" == cuda ]] && ! "$BUILD/eccolo" info | grep -q '^cuda devices: [1-9]'; then
    "$PY" bench/report.py --ensure-sections
    echo "bench/run.sh: --device cuda, but eccolo finds no usable GPU here; RESULTS.md's GPU section is unchanged" >&2
    exit 2
fi

# ---- checkpoints, then the benchmark ----------------------------------------------------
MODELS=(distilgpt2 gpt2)
[[ ${#QUICK[@]} -gt 0 ]] && MODELS=(distilgpt2)
say "checkpoints"
"$PY" bench/make_models.py "${MODELS[@]}" | sed 's/^/   /'
[[ "$SETUP_ONLY" == 1 ]] && { say "set up (--setup-only): not running the benchmark"; exit 0; }
say "benchmark (progress below; every process's output goes to bench/work/$DEVICE/log.txt)"
exec "$PY" bench/harness.py --device "$DEVICE" --threads "$THREADS" "${QUICK[@]}" "${REPEATS[@]}" \
    --eccolo "$BUILD/eccolo" --sgemm "$BUILD/bench_sgemm" --command "bench/run.sh${ARGS:+ $ARGS}" "${HARNESS[@]}"
