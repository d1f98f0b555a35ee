#!/usr/bin/env bash
# The default job of `make run`: `lmscope trace` with no model, i.e. the seed's configuration (a nanochat
# GPT, depth 4, d_model 256, 2 heads, vocab 65536, sequence 1024) trained for 3 iterations on the Brown
# corpus with every component traced forward and backward; writes trace.md and trace.html here and
# prints the summary with the health findings.
set -euo pipefail
bin=${1:-build/lmscope}
cd "$(dirname "$0")/.."
echo "\$ lmscope trace"
"$bin" trace
