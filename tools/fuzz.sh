#!/usr/bin/env bash
# A fuzzing campaign against one target (docs/FUZZING.md):
#
#   tools/fuzz.sh TARGET SECONDS [libFuzzer flags...]
#   tools/fuzz.sh --merge TARGET      fold the work corpus's new coverage into fuzz/corpus/TARGET
#   tools/fuzz.sh --list              the targets
#
# Builds the libFuzzer targets with clang-14 (-fsanitize=fuzzer,address,undefined,
# the whole library instrumented, no CUDA) into build-fuzz/ when needed, then runs
# fuzz_TARGET for SECONDS as one process at nice 10, starting from the committed
# corpus fuzz/corpus/TARGET (read only) and the work corpus
# build-fuzz/work/TARGET/corpus, where new interesting inputs go. Every crash,
# leak, timeout (-timeout=10), out-of-memory (-rss_limit_mb / -malloc_limit_mb
# 2048: an allocation that size from a small input is a bug) or sanitizer report
# is minimised and copied to fuzz/regressions/TARGET/, which the ctest regression
# runners replay (ctest -L fuzz). The log is build-fuzz/work/TARGET/fuzz.log; the
# last lines printed are the campaign's figures (executions, cov, ft, corpus).
# Exit status: 0 when nothing was found, 1 when something was.
#   ECCOLO_FUZZ_BUILD   build directory (default build-fuzz)
#   CC                  the clang to use (default clang-14, else clang)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$(realpath -m "${ECCOLO_FUZZ_BUILD:-$REPO/build-fuzz}")"
TARGETS=$(sed -n 's/^set(ECC_FUZZ_TARGETS \(.*\))$/\1/p' "$REPO/fuzz/CMakeLists.txt")

usage() {
    sed -n '2,/^set -e/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}
known() { [[ " $TARGETS " == *" $1 "* ]] || { echo "fuzz.sh: unknown target '$1' (targets: $TARGETS)" >&2; exit 2; }; }

build() {
    local t=$1 cc="${CC:-}"
    if [[ -z "$cc" ]]; then
        cc=$(command -v clang-14 || command -v clang || true)
    fi
    if [[ -z "$cc" ]] || ! "$cc" --version >/dev/null 2>&1; then
        echo "fuzz.sh: clang is needed (Debian: apt-get install -y clang-14 libfuzzer-14-dev)" >&2
        exit 2
    fi
    if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
        echo "== configuring $BUILD with $cc" >&2
        CC="$cc" cmake -S "$REPO" -B "$BUILD" -DECCOLO_FUZZ=ON -DECCOLO_CUDA=OFF -DECCOLO_TESTS=OFF \
            -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$BUILD.configure.log" 2>&1 || {
            cat "$BUILD.configure.log" >&2
            exit 1
        }
    fi
    nice -n 10 cmake --build "$BUILD" -j "$(nproc)" --target "fuzz_$t" >&2
}

if [[ "${1:-}" == "--list" ]]; then
    echo "$TARGETS"
    exit 0
fi
if [[ "${1:-}" == "--merge" ]]; then
    [[ $# -eq 2 ]] || usage
    known "$2"
    build "$2"
    work="$BUILD/work/$2/corpus"
    mkdir -p "$work"
    export ECCOLO_FIXTURES="$REPO/tests/fixtures" OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
    cd "$REPO"
    nice -n 10 "$BUILD/fuzz/fuzz_$2" -merge=1 -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
        "$REPO/fuzz/corpus/$2" "$work"
    exit 0
fi
[[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || usage
t=$1 secs=$2
shift 2
known "$t"
build "$t"

work="$BUILD/work/$t"
mkdir -p "$work/corpus" "$work/artifacts" "$REPO/fuzz/regressions/$t"
rm -f "$work/artifacts"/*
export ECCOLO_FIXTURES="$REPO/tests/fixtures" OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
cd "$REPO" # the report seeds name their model directory relative to the repository

echo "== fuzzing $t for ${secs}s (log: $work/fuzz.log)" >&2
set +e
# one process (no -jobs/-workers: the machine is shared); the first corpus
# directory receives the new inputs, the committed one is only read
nice -n 10 "$BUILD/fuzz/fuzz_$t" "$work/corpus" "$REPO/fuzz/corpus/$t" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    -dict="$REPO/fuzz/eccolo.dict" -artifact_prefix="$work/artifacts/" -print_final_stats=1 \
    -reload=0 "$@" >"$work/fuzz.log" 2>&1
rc=$?
set -e

found=0
for a in "$work/artifacts"/*; do
    [[ -f "$a" ]] || continue
    name=$(basename "$a")
    case "$name" in minimized-from-*) continue ;; esac
    found=$((found + 1))
    kind=${name%%-*}
    echo "== $t: $kind: $a" >&2
    min="$work/artifacts/minimized-from-$name"
    if [[ "$kind" == crash || "$kind" == leak || "$kind" == timeout || "$kind" == oom ]]; then
        nice -n 10 "$BUILD/fuzz/fuzz_$t" -minimize_crash=1 -max_total_time=120 -runs=100000 -timeout=10 \
            -rss_limit_mb=2048 -malloc_limit_mb=2048 -exact_artifact_path="$min" "$a" >"$work/minimize.log" 2>&1 || true
    fi
    [[ -s "$min" ]] || min="$a"
    dst="$REPO/fuzz/regressions/$t/$kind-$(sha1sum "$min" | cut -c1-16)"
    cp "$min" "$dst"
    echo "   kept as ${dst#"$REPO"/}" >&2
    "$BUILD/fuzz/fuzz_$t" "$dst" 2>&1 | grep -m1 -E "ERROR|runtime error|violated|Leak|timeout" >&2 || true
done

# the campaign's figures
grep -E "^#[0-9]+[[:space:]]+(DONE|INITED)" "$work/fuzz.log" | tail -2 >&2 || true
grep -E "^stat::" "$work/fuzz.log" >&2 || true
echo "corpus: $(find "$work/corpus" -type f | wc -l) files ($(du -sk "$work/corpus" | cut -f1) KB) in $work/corpus" >&2
if ((found)); then
    echo "== $t: $found finding(s) kept under fuzz/regressions/$t/ (libFuzzer exit $rc)" >&2
    exit 1
fi
if ((rc != 0)); then
    echo "== $t: libFuzzer exited with $rc; see $work/fuzz.log" >&2
    tail -20 "$work/fuzz.log" >&2
    exit 1
fi
echo "== $t: no findings" >&2
