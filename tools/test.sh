#!/usr/bin/env bash
# The test command: set up and build (tools/setup.sh), run every test with
# ctest, then build again with AddressSanitizer + UndefinedBehaviorSanitizer
# (CPU backend) and run the tests there too.
#   --no-sanitize   skip the sanitizer build
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sanitize=1
[[ "${1:-}" == "--no-sanitize" ]] && sanitize=0

"$REPO/tools/setup.sh"
echo "== tests (build/)" >&2
(cd "$REPO/build" && ctest --output-on-failure -j 2)

if ((sanitize)); then
    ECCOLO_BUILD_DIR="$REPO/build-asan" ECCOLO_CMAKE_ARGS="-DECCOLO_SANITIZE=ON -DECCOLO_CUDA=OFF -DCMAKE_BUILD_TYPE=Debug" \
        "$REPO/tools/setup.sh"
    echo "== tests under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)" >&2
    (cd "$REPO/build-asan" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --output-on-failure -j 2)
fi
echo "== all tests passed" >&2
