#!/usr/bin/env bash
# Screenshots of a report's views in headless Chromium, for the README:
#   tools/screenshot_report.sh RUN_DIR [OUT_DIR]      (default OUT_DIR: docs/img)
# RUN_DIR/report.html must exist (eccolo generate ... --html, or eccolo report RUN_DIR).
# The saliency view is shot with the first generated token selected (#test=saliency:0),
# the others as they open (#view=...).
set -euo pipefail
RUN="${1:?usage: tools/screenshot_report.sh RUN_DIR [OUT_DIR]}"
OUT="${2:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/docs/img}"
HTML="$(cd "$RUN" && pwd)/report.html"
[[ -f "$HTML" ]] || { echo "no $HTML: run eccolo report $RUN first" >&2; exit 2; }
CHROME="${ECCOLO_CHROMIUM:-/usr/lib/chromium/chromium}"
[[ -x "$CHROME" ]] || CHROME="$(command -v chromium || true)"
[[ -n "$CHROME" ]] || { echo "chromium not found: apt-get install chromium" >&2; exit 2; }
mkdir -p "$OUT"
PROFILE="$(mktemp -d)"
trap 'rm -rf "$PROFILE"' EXIT
shoot() { # hash file
    "$CHROME" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
        --disable-component-update --disable-sync --user-data-dir="$PROFILE" --hide-scrollbars \
        --virtual-time-budget=2000 --window-size=1280,720 --screenshot="$OUT/$2" "file://$HTML#$1" 2>/dev/null
    echo "$OUT/$2"
}
shoot "test=saliency:0" report-saliency.png
shoot "view=nmf" report-nmf.png
shoot "view=rankings" report-rankings.png
