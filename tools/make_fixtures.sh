#!/usr/bin/env bash
# Regenerates every file under tests/fixtures/:
#   tools/fixtures_tokenizer.py  gpt2-tokenizer/, small-tokenizer/, tokenizer_corpus.json
#   tools/fixtures_models.py     tiny-gpt2/, tiny-gpt2-f16/, tiny-gpt2-sharded/, tiny-gpt2-deep/
#   tools/fixtures_ecco.py       explain_reference.{safetensors,json} in tiny-gpt2/,
#                                tiny-gpt2-f16/ and tiny-gpt2-deep/ (real Ecco 0.1.2)
#   tools/fixtures_nmf.py        nmf_reference.safetensors (scikit-learn) in the same dirs
#   tools/fixtures_analysis.py   analysis_reference.safetensors (Ecco 0.1.2's ecco.analysis on
#                                the explain references' activations and hidden states)
# Not run here: tools/fixtures_padded.py (tiny-gpt2-padded/) needs transformers 5
# (tools/requirements-padded.txt); run it in a venv with those versions.
# Needs python3 with venv (Debian 12: apt-get install python3-venv) and PyPI.
# Environment:
#   ECCOLO_TOOLS_VENV  virtual environment to use/create (default: $REPO/.venv-tools)
#   ECCOLO_PIP_ARGS    extra arguments for pip install (e.g. a CPU-only torch index)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ECCOLO_TOOLS_VENV:-$REPO/.venv-tools}"
PY="$VENV/bin/python"
ECCO_PIN="ecco==0.1.2"

if [[ ! -x "$PY" ]]; then
    echo "== creating virtual environment $VENV"
    python3 -m venv "$VENV" || {
        echo "python3 -m venv failed (Debian: apt-get install python3-venv)" >&2
        exit 1
    }
    "$PY" -m pip install -q --upgrade pip
fi

echo "== installing tools/requirements.txt into $VENV"
# shellcheck disable=SC2086  # ECCOLO_PIP_ARGS is a list of words
"$PY" -m pip install -q --disable-pip-version-check ${ECCOLO_PIP_ARGS:-} -r "$REPO/tools/requirements.txt"
# Ecco 0.1.2 (the last release) requires scikit-learn~=0.23 and PyYAML~=5.4 (0.x and
# 5.x only), which conflict with the pins above; what it imports is pinned in
# requirements.txt, so install Ecco itself without its declared dependencies.
echo "== installing $ECCO_PIN (--no-deps)"
# shellcheck disable=SC2086  # ECCOLO_PIP_ARGS is a list of words
"$PY" -m pip install -q --disable-pip-version-check --no-deps ${ECCOLO_PIP_ARGS:-} "$ECCO_PIN"

cd "$REPO"
echo "== tools/fixtures_tokenizer.py"
"$PY" tools/fixtures_tokenizer.py
echo "== tools/fixtures_models.py"
"$PY" tools/fixtures_models.py
echo "== tools/fixtures_ecco.py"
MPLBACKEND=Agg "$PY" tools/fixtures_ecco.py
echo "== tools/fixtures_nmf.py"
"$PY" tools/fixtures_nmf.py
echo "== tools/fixtures_analysis.py"
"$PY" tools/fixtures_analysis.py

echo "== wrote tests/fixtures:"
find tests/fixtures -type f -print0 | sort -z | xargs -0 ls -l | awk '{printf "%10d  %s\n", $5, $9}'
du -sh tests/fixtures | awk '{print "total " $1}'
