#!/usr/bin/env bash
# tools/gpu-check.sh OUTDIR — everything a GPU machine should check, in one
# call, in under 10 minutes on an H100:
#   1. configure + build (Release, -DCMAKE_CUDA_ARCHITECTURES=90) into build-gpu/
#   2. eccolo info
#   3. the GPU tests (ctest -L gpu), and meanwhile the CPU suite (ctest -LE 'gpu|slurm': the
#      Slurm test needs a local Slurm)
#      (on a GPU test failure: the failing tests again with ECCOLO_CUDA_SYNC_CHECK=1,
#      and under compute-sanitizer when it is installed, to pin the fault to an op)
#   4. GPU benchmarks: bench_backward --device cuda (and --device cpu at T=128 for
#      the ratio); the error of --precision tf32 / bf16 (bench/precision_error.py);
#      bench/run.sh --device cuda --quick when it and its Python environment exist
#      (optional steps: shown, but they do not fail the check)
# Every step has a time limit and its own log in OUTDIR; a failing step does
# not stop the others. A short table comes last (also OUTDIR/summary.txt).
# Exit status: 0 when every step passed, 1 otherwise.
#
# Environment: ECCOLO_GPU_BUILD_DIR (default REPO/build-gpu), ECCOLO_GPU_ARCH (default 90).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ $# -ne 1 ]]; then
    echo "usage: tools/gpu-check.sh OUTDIR" >&2
    exit 2
fi
mkdir -p "$1"
OUT="$(cd "$1" && pwd)"
BUILD="${ECCOLO_GPU_BUILD_DIR:-$REPO/build-gpu}"
ARCH="${ECCOLO_GPU_ARCH:-90}"
JOBS="$(nproc 2>/dev/null || echo 4)"
ROWS="$OUT/.rows"
: >"$ROWS"
T_START=$(date +%s)

# step NAME LIMIT_SECONDS LOG CMD...: run CMD with a time limit, log its
# output, and record "name|status|seconds|log" (status ok, FAIL(rc) or
# TIMEOUT; with OPTIONAL=1 in the environment, opt-fail(rc) / opt-timeout,
# which do not fail the check).
step() {
    local name=$1 limit=$2 log=$3 rc=0 status t0 t1 opt=${OPTIONAL:-0}
    shift 3
    echo "== $name (limit ${limit}s) -> $log" >&2
    t0=$(date +%s.%N)
    timeout --kill-after=15 "$limit" "$@" >"$log" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    if [[ $rc -eq 0 ]]; then
        status=ok
    elif [[ $rc -eq 124 || $rc -eq 137 ]]; then
        status=TIMEOUT
    else
        status="FAIL($rc)"
    fi
    if [[ $opt == 1 && $rc -ne 0 ]]; then
        status="opt-$(echo "$status" | tr '[:upper:]' '[:lower:]')"
    fi
    printf '%s|%s|%s|%s\n' "$name" "$status" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')" \
        "$(basename "$log")" >>"$ROWS"
    return $rc
}

note() { printf '%s|%s|-|%s\n' "$1" "$2" "$3" >>"$ROWS"; }
elapsed() { echo $(($(date +%s) - T_START)); }

# ---- the machine -------------------------------------------------------------------------
{
    echo "date: $(date -u +%FT%TZ)"
    echo "repo: $REPO ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')," \
        "$(git -C "$REPO" status --short 2>/dev/null | wc -l) changed files)"
    echo "cpus: $JOBS"
    command -v nvidia-smi >/dev/null && nvidia-smi || echo "nvidia-smi: not found"
    command -v nvcc >/dev/null && nvcc --version || /usr/local/cuda/bin/nvcc --version || echo "nvcc: not found"
} >"$OUT/machine.log" 2>&1 || true

# ---- 1. build ------------------------------------------------------------------------------
built=0
if step configure 180 "$OUT/configure.log" cmake -S "$REPO" -B "$BUILD" -DECCOLO_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DCMAKE_BUILD_TYPE=Release; then
    if step build 420 "$OUT/build.log" cmake --build "$BUILD" -j "$JOBS"; then
        built=1
    fi
fi
if grep -qiE "warning" "$OUT/build.log" 2>/dev/null; then
    note "build warnings" "WARN" "$(grep -ciE 'warning' "$OUT/build.log") lines mention a warning: see build.log"
fi

if [[ $built -eq 1 ]]; then
    # ---- 2. info -----------------------------------------------------------------------
    step "eccolo info" 30 "$OUT/info.log" "$BUILD/eccolo" info || true

    # ---- 3. tests: the CPU suite in the background, the GPU tests in front --------------
    (
        export OMP_NUM_THREADS=2
        step "cpu tests (ctest -LE gpu,slurm)" 330 "$OUT/tests-cpu.log" \
            ctest --test-dir "$BUILD" -LE 'gpu|slurm' -j "$((JOBS > 4 ? JOBS / 2 : 2))" --timeout 300 \
            --output-on-failure || true
    ) &
    cpu_pid=$!
    gpu_ok=1
    CRITERION_VERBOSITY_LEVEL=1 step "gpu tests (ctest -L gpu)" 420 "$OUT/tests-gpu.log" \
        ctest --test-dir "$BUILD" -L gpu --timeout 400 -V || gpu_ok=0
    wait "$cpu_pid" || true
    if [[ $gpu_ok -eq 0 ]]; then
        # pin an asynchronous fault to the op that caused it
        ECCOLO_CUDA_SYNC_CHECK=1 CRITERION_VERBOSITY_LEVEL=1 step "gpu tests again, ECCOLO_CUDA_SYNC_CHECK=1" 240 \
            "$OUT/tests-gpu-synccheck.log" ctest --test-dir "$BUILD" -L gpu --timeout 230 -V --rerun-failed || true
        if command -v compute-sanitizer >/dev/null || [[ -x /usr/local/cuda/bin/compute-sanitizer ]]; then
            CS="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
            (cd "$BUILD/tests" && mkdir -p tmp &&
                ECCOLO_FIXTURES="$REPO/tests/fixtures" ECCOLO_BIN="$BUILD/eccolo" ECCOLO_TMP="$BUILD/tests/tmp" \
                    step "compute-sanitizer memcheck test_gpu_ops" 150 "$OUT/tests-gpu-memcheck.log" \
                    "$CS" --tool memcheck --error-exitcode 9 ./test_gpu_ops --jobs 1) || true
        else
            note "compute-sanitizer" "skipped" "not installed"
        fi
    fi

    # ---- 4. benchmarks ----------------------------------------------------------------
    if [[ $(elapsed) -gt 500 ]]; then
        note "benchmarks" "skipped" "only $((600 - $(elapsed))) s of the 10 minutes left"
    else
        step "bench_backward --device cuda" 150 "$OUT/bench-backward-cuda.log" \
            "$BUILD/bench_backward" --device cuda --T 128,512 --json "$OUT/bench_backward_cuda.json" || true
        if [[ $(elapsed) -lt 480 ]]; then # the CPU at T=128 for the ratio (optional: may not fit the time)
            OPTIONAL=1 OMP_NUM_THREADS="$JOBS" step "bench_backward --device cpu (T=128)" 60 \
                "$OUT/bench-backward-cpu.log" "$BUILD/bench_backward" --device cpu --T 128 \
                --json "$OUT/bench_backward_cpu.json" || true
        fi
        # the error of --precision tf32 / bf16 against fp32 and the CPU (numpy only)
        OPTIONAL=1 step "precision errors (bench/precision_error.py)" 90 "$OUT/precision.log" \
            python3 "$REPO/bench/precision_error.py" --eccolo "$BUILD/eccolo" --out "$OUT/precision" \
            --json "$OUT/precision.json" || true
        # the comparison with Ecco / PyTorch (bench/run.sh, its own build in build-bench/) needs its
        # Python environment: bench/.venv, or wheels in bench/wheels or $ECCOLO_BENCH_WHEELS
        wheels=()
        [[ -z "${ECCOLO_BENCH_WHEELS:-}" && -d "$REPO/bench/wheels" ]] && wheels=(--wheels "$REPO/bench/wheels")
        if [[ ! -x "$REPO/bench/run.sh" ]]; then
            note "bench/run.sh" "skipped" "bench/run.sh is not there"
        elif [[ ! -d "$REPO/bench/.venv" && -z "${ECCOLO_BENCH_WHEELS:-}" && ${#wheels[@]} -eq 0 ]]; then
            note "bench/run.sh" "skipped" "no bench/.venv, bench/wheels or ECCOLO_BENCH_WHEELS"
        else
            left=$((590 - $(elapsed)))
            if [[ $left -gt 60 ]]; then
                # optional: it builds its own tree and may not finish in what is left of the 10 minutes
                OPTIONAL=1 step "bench/run.sh --device cuda --quick" "$left" "$OUT/bench-run.log" \
                    "$REPO/bench/run.sh" --device cuda --quick "${wheels[@]}" || true
            else
                note "bench/run.sh" "skipped" "only ${left} s left"
            fi
        fi
    fi
else
    note "tests and benchmarks" "skipped" "the build failed: see configure.log / build.log"
fi

# ---- the table ------------------------------------------------------------------------------
set +e +o pipefail # the summary reports whatever the logs hold
criterion_counts() { # LOG -> "P passed, F failed, S skipped"
    local log=$1
    [[ -f $log ]] || { echo "no log"; return; }
    printf '%d passed, %d failed, %d skipped' "$(grep -c '\[PASS\]' "$log" || true)" \
        "$(grep -cE '\[FAIL\]|CRASH' "$log" || true)" "$(grep -c '\[SKIP\]' "$log" || true)"
}
ctest_line() { # LOG -> ctest's "N% tests passed, F tests failed out of M"
    [[ -f $1 ]] && grep -E 'tests passed, .* failed out of' "$1" | tail -1 || echo "no result"
}
{
    echo
    echo "==================== eccolo GPU check ($(elapsed) s) ===================="
    printf '%-44s %-10s %8s  %s\n' step status seconds log/note
    while IFS='|' read -r name status secs log; do
        printf '%-44s %-10s %8s  %s\n' "$name" "$status" "$secs" "$log"
    done <"$ROWS"
    echo
    echo "gpu tests:  $(ctest_line "$OUT/tests-gpu.log"); Criterion: $(criterion_counts "$OUT/tests-gpu.log")"
    echo "cpu tests:  $(ctest_line "$OUT/tests-cpu.log")"
    if [[ -f $OUT/tests-gpu.log ]] && grep -q '\[SKIP\].*no usable GPU' "$OUT/tests-gpu.log"; then
        echo "NOTE: GPU tests were skipped: $(grep -m1 -o 'no usable GPU.*' "$OUT/tests-gpu.log")"
    fi
    if [[ -f $OUT/tests-gpu.log ]]; then
        grep -E '^\s*[0-9]+: \[FAIL\]|\[FAIL\]' "$OUT/tests-gpu.log" | head -10 | sed 's/^/  /'
    fi
    for f in "$OUT/bench-backward-cuda.log" "$OUT/bench-backward-cpu.log"; do
        if [[ -f $f ]]; then
            echo "$(basename "$f" .log):"
            grep -E '^(T |[0-9])' "$f" | sed 's/^/  /'
        fi
    done
    if [[ -f $OUT/precision.log ]]; then
        echo "precision errors:"
        sed 's/^/  /' "$OUT/precision.log"
    fi
    if [[ -f $OUT/bench-run.log ]]; then
        echo "bench/run.sh (last lines; bench/RESULTS.md has the table):"
        tail -n 8 "$OUT/bench-run.log" | sed 's/^/  /'
    fi
    [[ -f $OUT/info.log ]] && grep -E '^(build|cuda devices|  )' "$OUT/info.log" | sed 's/^/info: /'
} | tee "$OUT/summary.txt"

if grep -qE '\|(FAIL|TIMEOUT)' "$ROWS"; then
    echo "gpu-check: FAILED (logs in $OUT)" >&2
    exit 1
fi
echo "gpu-check: all steps passed (logs in $OUT)" >&2
exit 0
