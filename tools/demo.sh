#!/usr/bin/env bash
# The README's first command: install what is missing and build (tools/setup.sh), then run the main job on
# the embedded demo model (models/demo) with the prompt of the Ecco article: generate 35 tokens, explain them
# by grad x input, capture the activations and the logit lens, factorise the activations into 10 groups (NMF),
# and write the interactive report.
#   tools/demo.sh [OUT_DIR]      (default: run/)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
t0=$(date +%s%N)
"$REPO/tools/setup.sh"
t1=$(date +%s%N)
OUT="${1:-$REPO/run}"
PROMPT='Frameworks for Machine Learning include: 1. TensorFlow\n2. PyTorch\n3.Scikit-learn\n4.'
echo "== eccolo generate on the default model: $("$REPO/build/eccolo" info | sed -n 's/^default model: //p')" >&2
"$REPO/build/eccolo" generate --prompt "$PROMPT" --max-new-tokens 35 --attribution grad_x_input --activations \
    --rankings --nmf 10 --html --print-saliency 5 --out "$OUT"
t2=$(date +%s%N)
echo
echo "report: $OUT/report.html   (open it in a browser; it needs no network)"
echo "time: $(( (t2 - t1) / 1000000 )) ms for the job, $(( (t1 - t0) / 1000000 )) ms for set-up and build"
