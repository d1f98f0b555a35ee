#!/usr/bin/env bash
# lmscope CUDA vs transformers on random-weight checkpoints made on the GPU machine (never committed).
#   bash bench/cuda_bench.sh LMSCOPE_BINARY OUT_DIR       (run by tools/cuda_device_run.sh device)
# Per shape in $BENCH_MODELS (default "qwen3-0.6b"): batch-1 decode tok/s (512-token prompt, 128 new),
# prefill tok/s at 512 and 2048, batch-32 decode tok/s; transformers (bf16, eager) on the same folder;
# the measured copy bandwidth and bf16 matmul rate (bench/cuda_peaks.py) give the floors:
#   decode floor  = (weight bytes + KV bytes read per step) / copy bandwidth
#   prefill floor = 2 * params * P (+ attention FLOPs) / matmul rate
# Prints a table last; JSON lines in OUT_DIR/bench.jsonl. See bench/cuda_notes.md.
set -uo pipefail
BIN=${1:?lmscope binary}
OUT=${2:-/tmp}
MODELS=${BENCH_MODELS:-qwen3-0.6b}
GEN=${BENCH_GEN:-128}
HF_GEN=${BENCH_HF_GEN:-32}
J=$OUT/bench.jsonl
: > "$J"
export PYTHONUNBUFFERED=1
echo "== peaks"
python3 bench/cuda_peaks.py | tee -a "$J"
for m in $MODELS; do
    dir=/tmp/lmscope_bench_$m
    [ -f "$dir/config.json" ] || "$BIN" init --preset "$m" --dtype bf16 "$dir" >/dev/null || { echo "init $m failed"; continue; }
    echo "== $m lmscope"
    for args in "--prompt-len 512 --gen-len $GEN --batch 1" "--prompt-len 2048 --gen-len 0 --batch 1" \
                "--prompt-len 512 --gen-len 64 --batch 32"; do
        line=$("$BIN" bench --device cuda --model "$dir" $args --repeat 5 --json 2>"$OUT/bench_err.log") || { echo "FAILED: $args"; tail -3 "$OUT/bench_err.log"; continue; }
        echo "{\"shape\": \"$m\", \"who\": \"lmscope\", \"args\": \"$args\", \"r\": $line}" | tee -a "$J"
    done
    # variant: programmatic dependent launch of the decode GEMVs (bench/cuda_notes.md v2)
    args="--prompt-len 512 --gen-len $GEN --batch 1"
    line=$(LMSCOPE_CUDA_PDL=1 "$BIN" bench --device cuda --model "$dir" $args --repeat 5 --json 2>"$OUT/bench_err.log") \
        && echo "{\"shape\": \"$m\", \"who\": \"lmscope\", \"args\": \"$args pdl\", \"r\": $line}" | tee -a "$J"
    if [ "${SKIP_HF:-0}" != 1 ]; then
        echo "== $m transformers"
        line=$(timeout "${HF_TIMEOUT:-200}" python3 bench/cuda_transformers.py "$dir" "$HF_GEN" 32 2>"$OUT/hf_err.log") \
            && echo "{\"shape\": \"$m\", \"who\": \"transformers\", \"r\": $line}" | tee -a "$J" \
            || { echo "transformers failed"; tail -3 "$OUT/hf_err.log"; }
    fi
done
python3 bench/cuda_table.py "$J"
