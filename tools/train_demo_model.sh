#!/usr/bin/env bash
# Rebuilds models/demo/ (eccolo's embedded demo model) from scratch on a Debian 12
# machine: fetches Debian's English package descriptions with apt, sets up the
# Python environment, and runs tools/train_demo_model.py (corpus, tokenizer,
# training, model card). Arguments are passed to the Python script; MODEL.md
# gives the exact command the committed model was made with.
#
# The corpus is the Translation-en (and Packages) files of Debian 12 main. The
# system's own apt lists are not touched: apt-get update runs into a private
# lists directory, build-demo-model/apt/, with Acquire::Languages=en (Debian's
# docker image disables the Translation files). The downloaded files are
# verified by apt against /usr/share/keyrings/debian-archive-keyring.gpg.
# Environment:
#   ECCOLO_TOOLS_VENV     virtual environment to use/create (default: $REPO/.venv-tools)
#   ECCOLO_PIP_ARGS       extra arguments for pip install (e.g. a CPU-only torch index)
#   ECCOLO_DEBIAN_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#   ECCOLO_APT_REFRESH=1  fetch the description files again even if present
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ECCOLO_TOOLS_VENV:-$REPO/.venv-tools}"
PY="$VENV/bin/python"
MIRROR="${ECCOLO_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
APT="$REPO/build-demo-model/apt"

if [[ ! -f /etc/debian_version ]] || ! command -v apt-get >/dev/null; then
    echo "train_demo_model.sh needs a Debian (12) machine with apt" >&2
    exit 1
fi

# 1. Debian's package descriptions, into a private apt lists directory
if [[ "${ECCOLO_APT_REFRESH:-0}" == 1 ]] || ! compgen -G "$APT/lists/*_i18n_Translation-en*" >/dev/null; then
    echo "== apt-get update into $APT (bookworm main, Acquire::Languages=en)"
    mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial"
    echo "deb $MIRROR bookworm main" >"$APT/sources.list"
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    # shellcheck disable=SC2086  # $SUDO is empty or one word
    $SUDO apt-get update -q \
        -o Acquire::Languages=en \
        -o Dir::State::Lists="$APT/lists" \
        -o Dir::Cache="$APT/cache" \
        -o Dir::Etc::SourceList="$APT/sources.list" \
        -o Dir::Etc::SourceParts=/nonexistent \
        -o APT::Get::List-Cleanup=false
    [[ -z "$SUDO" ]] || $SUDO chown -R "$(id -u):$(id -g)" "$APT"
fi
compgen -G "$APT/lists/*_i18n_Translation-en*" >/dev/null || {
    echo "apt-get update did not fetch Translation-en into $APT/lists" >&2
    exit 1
}

# 2. Python environment (as tools/make_fixtures.sh sets it up)
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

# 3. corpus, tokenizer, training, models/demo/
cd "$REPO"
echo "== tools/train_demo_model.py $*"
# PASSIVE: waiting OpenMP threads sleep instead of spinning; on a shared 2-core machine that
# nearly halved the time of a training step
OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" "$PY" tools/train_demo_model.py --lists-dir "$APT/lists" "$@"
du -sh models/demo | awk '{print "== models/demo: " $1}'
