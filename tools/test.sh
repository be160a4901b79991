#!/usr/bin/env bash
# The test command: set up and build (tools/setup.sh), run every test with
# ctest, build and test the Python package (tools/test_python.sh: a wheel in
# a fresh venv, pytest), then build again with AddressSanitizer +
# UndefinedBehaviorSanitizer (CPU backend) and run the tests there too.
#   --no-sanitize   skip the sanitizer build
#   --no-python     skip the Python package
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sanitize=1
python=1
for a in "$@"; do
    case "$a" in
    --no-sanitize) sanitize=0 ;;
    --no-python) python=0 ;;
    *) echo "usage: tools/test.sh [--no-sanitize] [--no-python]" >&2; exit 2 ;;
    esac
done

"$REPO/tools/setup.sh"
echo "== tests (build/)" >&2
(cd "$REPO/build" && ctest --output-on-failure -j 2)

if ((python)); then
    "$REPO/tools/test_python.sh"
fi

if ((sanitize)); then
    ECCOLO_BUILD_DIR="$REPO/build-asan" ECCOLO_CMAKE_ARGS="-DECCOLO_SANITIZE=ON -DECCOLO_CUDA=OFF -DCMAKE_BUILD_TYPE=Debug" \
        "$REPO/tools/setup.sh"
    echo "== tests under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)" >&2
    (cd "$REPO/build-asan" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --output-on-failure -j 2)
fi
echo "== all tests passed" >&2
