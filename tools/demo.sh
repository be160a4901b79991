#!/usr/bin/env bash
# The README's first command: set up and build (tools/setup.sh), then run the
# main job on the embedded default model with the prompt of the Ecco article,
# writing run/run.json and run/tensors.safetensors.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
start=$(date +%s%N)
"$REPO/tools/setup.sh"
OUT="${1:-$REPO/run}"
PROMPT='Frameworks for Machine Learning include: 1. TensorFlow\n2. PyTorch\n3.Scikit-learn\n4.'
echo "== eccolo generate on the default model ($("$REPO/build/eccolo" info | sed -n 's/^default model: //p'))" >&2
"$REPO/build/eccolo" generate --prompt "$PROMPT" --max-new-tokens 35 --out "$OUT"
echo "== results in $OUT (run.json, tensors.safetensors); took $(( ($(date +%s%N) - start) / 1000000 )) ms" >&2
