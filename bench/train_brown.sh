#!/usr/bin/env bash
# The 15-minute Brown training runs of issue 3 (bench/RESULTS.md), both at once, one thread each on this
# 2-core machine, then the curves. Usage: bash bench/train_brown.sh [path/to/lmscope]
# The checkpoints (runs/gpt-d4, runs/qwen3-d4) are the models tools/quant_quality.py measures.
set -euo pipefail
cd "$(dirname "$0")/.."
LMS=${1:-build/lmscope}
mkdir -p runs
rm -rf runs/gpt-d4 runs/qwen3-d4  # the script owns these two folders: a rerun starts them afresh
LMSCOPE_THREADS=1 "$LMS" train --depth 4 --seq-len 1024 --batch 1 --steps 1400 --eval-every 100 --log-every 50 \
    --out runs/gpt-d4 > runs/gpt-d4.log 2>&1 &
gpt=$!
LMSCOPE_THREADS=1 "$LMS" train --arch qwen3 --depth 4 --seq-len 1024 --batch 1 --steps 1500 --eval-every 100 \
    --log-every 50 --out runs/qwen3-d4 > runs/qwen3-d4.log 2>&1 &
qwen=$!
wait $gpt
wait $qwen
tail -n 3 runs/gpt-d4.log runs/qwen3-d4.log
python3 tools/plot_training.py bench/training_curves.svg "GPT d4 (nanochat)=runs/gpt-d4" "Qwen3 d4=runs/qwen3-d4"
