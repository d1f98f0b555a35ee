#!/usr/bin/env bash
# Renders lmscope's HTML trace report in a real headless browser (Debian's chromium) and checks that
# every SVG plot is drawn: the DOM chromium builds (--dump-dom) must hold each plot's <svg
# class="plot"> with at least one <polyline> with points, and the page must hold no <script>.
# A screenshot is taken too (non-empty PNG).
#   tests/browser/check_html.sh [path/to/lmscope]      (default: build/lmscope)
# Skips (exit 0) when chromium is absent, unless LMSCOPE_REQUIRE_ASSETS=1 (then exit 1).
# Install: apt-get install -y chromium
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
LMSCOPE="${1:-$ROOT/build/lmscope}"
CHROME="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
if [[ -z "$CHROME" ]]; then
    if [[ "${LMSCOPE_REQUIRE_ASSETS:-0}" == "1" ]]; then
        echo "check_html: FAIL: chromium not found (apt-get install -y chromium)" >&2
        exit 1
    fi
    echo "check_html: SKIP: chromium not found (apt-get install -y chromium to run the headless-browser test)"
    exit 0
fi
[[ -x "$LMSCOPE" ]] || { echo "check_html: FAIL: no lmscope binary at $LMSCOPE" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
MODEL="$ROOT/tests/golden/qwen3_gqa"
"$LMSCOPE" trace --model "$MODEL" --ids 1,7,3,9,11,2,5,8,13,4,6,10 --format html --out "$TMP/trace.html" >/dev/null

browse() {
    # --no-sandbox: the test runs as root in CI containers
    timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --disable-background-networking \
        --disable-component-update --no-first-run --user-data-dir="$(mktemp -d -p "$TMP")" "$@" 2>/dev/null
}
browse --dump-dom "file://$TMP/trace.html" > "$TMP/dom.html"
browse --window-size=1280,2000 --screenshot="$TMP/shot.png" "file://$TMP/trace.html" >/dev/null || true

fail=0
plots=0
expected="plot-residual plot-qkv_std plot-qkv_absmax plot-scores"
for id in $expected; do
    # the text between this plot's <svg ...> and its </svg>
    svg="$(awk -v id="$id" 'index($0, "id=\"" id "\"") {on=1} on {print} on && /<\/svg>/ {exit}' "$TMP/dom.html")"
    if [[ -z "$svg" ]]; then
        echo "check_html: FAIL: plot $id missing from the rendered DOM" >&2
        fail=1
        continue
    fi
    lines="$(grep -c '<polyline[^>]*points="[0-9]' <<<"$svg" || true)"
    if [[ "$lines" -lt 1 ]]; then
        echo "check_html: FAIL: plot $id has no drawn <polyline>" >&2
        fail=1
        continue
    fi
    plots=$((plots + 1))
done
if grep -qi '<script' "$TMP/dom.html"; then
    echo "check_html: FAIL: the page contains a <script> element" >&2
    fail=1
fi
if [[ ! -s "$TMP/shot.png" ]]; then
    echo "check_html: FAIL: chromium produced no screenshot" >&2
    fail=1
fi
[[ $fail -eq 0 ]] || exit 1
echo "check_html: OK: $plots plots drawn in $(basename "$CHROME") ($("$CHROME" --version 2>/dev/null | head -1))"
