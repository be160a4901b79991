#!/usr/bin/env bash
# The Python package's tests, as a user gets it: build a wheel from this clone with the project's
# CMake (pip wheel; the CUDA backend too when nvcc is found), install it into a fresh venv
# (build-py/venv, with tools/requirements-python.txt), and run pytest on python/tests there
# (the results against the eccolo command and real Ecco, a notebook in headless Chromium).
# Called by tools/test.sh; needs python3-venv and network access to PyPI.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${ECCOLO_PY_BUILD_DIR:-$REPO/build-py}"
VENV="$OUT/venv"

if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
    export PATH="/usr/local/cuda/bin:$PATH"
fi
echo "== python: venv and test requirements ($VENV)" >&2
[[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -r "$REPO/tools/requirements-python.txt" >&2

echo "== python: wheel (pip wheel, the project's CMake)" >&2
rm -rf "$OUT/dist"
CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$VENV/bin/pip" wheel -q --disable-pip-version-check --no-build-isolation \
    --no-deps -C build-dir="$OUT/cmake" -w "$OUT/dist" "$REPO" >&2
"$VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$OUT"/dist/eccolo-*.whl >&2
"$VENV/bin/python" -c 'import eccolo; print("== python: eccolo", eccolo.__version__, "-", eccolo.build_info())' >&2

echo "== python: tests (pytest python/tests)" >&2
cd "$OUT"
env -u ECCOLO_LIBRARY -u ECCOLO_BIN -u PYTHONPATH OMP_WAIT_POLICY=PASSIVE \
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$REPO/python/tests"
