#!/usr/bin/env bash
# lmscope CUDA vs transformers on random-weight checkpoints made on the GPU machine (never committed).
#   bash bench/cuda_bench.sh LMSCOPE_BINARY OUT_DIR       (run by tools/cuda_device_run.sh device)
# Per shape in $BENCH_MODELS (default "qwen3-0.6b") and weight format in $BENCH_FORMATS (default
# "bf16 fp8 awq": the bf16 checkpoint of `lmscope init`, then `lmscope quantize --fp8` and
# `lmscope quantize --awq --method rtn` of it, made here): batch-1 decode tok/s (512-token prompt,
# 128 new), prefill tok/s at 512 and 2048, batch-32 decode tok/s; transformers (bf16, eager) on the
# bf16 folder; the measured copy bandwidth and bf16 matmul rate (bench/cuda_peaks.py) give the floors:
#   decode floor  = (weight bytes on the GPU + KV bytes read per step) / copy bandwidth
#   prefill floor = 2 * params * P (+ attention FLOPs) / matmul rate
# The AWQ quantisation (single-threaded, minutes for 8B) runs in the background while the bf16 / fp8
# rows are measured; `bash bench/cuda_bench.sh --prepare BIN OUT` only makes the bf16 and (when named)
# FP8 checkpoints and starts the AWQ quantisation (tools/cuda_device_run.sh calls it before the tests,
# so that they overlap).
# BENCH_REPEAT (default 5) runs per row, BENCH_PDL=1 adds bf16 b=1 without PDL, BENCH_L2=1
# the decode b=1 row of each format with the L2 prefetch chain on (LMSCOPE_CUDA_L2_PREFETCH_MB=auto).
# Prints a table last; JSON lines in OUT_DIR/bench.jsonl. See bench/cuda_notes.md.
set -uo pipefail
PREPARE_ONLY=0
if [ "${1:-}" = "--prepare" ]; then PREPARE_ONLY=1; shift; fi
BIN=${1:?lmscope binary}
OUT=${2:-/tmp}
MODELS=${BENCH_MODELS:-qwen3-0.6b}
FORMATS=${BENCH_FORMATS:-bf16 fp8 awq}
GEN=${BENCH_GEN:-128}
HF_GEN=${BENCH_HF_GEN:-32}
REPEAT=${BENCH_REPEAT:-5}
J=$OUT/bench.jsonl
export PYTHONUNBUFFERED=1

# the bf16 checkpoint, the FP8 one (seconds), and the AWQ quantisation started in the background (marker
# file while it runs), each only when $BENCH_FORMATS names it
prepare() {
    local m=$1 base=/tmp/lmscope_bench_$1 s
    [ -f "$base/config.json" ] || "$BIN" init --preset "$m" --dtype bf16 "$base" >/dev/null || { echo "init $m failed"; return 1; }
    if [[ " $FORMATS " == *" fp8 "* ]] && [ ! -f "${base}_fp8/config.json" ]; then
        s=$(date +%s)
        "$BIN" quantize --fp8 "$base" "${base}_fp8" --no-progress > "$OUT/quant_fp8_$m.log" 2>&1 || { echo "quantize --fp8 $m failed"; tail -3 "$OUT/quant_fp8_$m.log"; }
        echo "fp8 $m: quantized in $(( $(date +%s) - s )) s"
    fi
    if [[ " $FORMATS " == *" awq "* ]] && [ ! -f "${base}_awq/config.json" ] && [ ! -f "${base}_awq.running" ]; then
        touch "${base}_awq.running"
        ( s=$(date +%s); "$BIN" quantize --awq "$base" "${base}_awq" --method rtn --no-progress > "$OUT/quant_awq_$m.log" 2>&1;
          echo "awq rtn $m: exit $? in $(( $(date +%s) - s )) s" >> "$OUT/quant_awq_$m.log"; rm -f "${base}_awq.running" ) \
            > /dev/null 2>&1 &
    fi
}
if [ "$PREPARE_ONLY" = 1 ]; then
    for m in $MODELS; do prepare "$m"; done
    exit 0
fi

: > "$J"
echo "== peaks"
python3 bench/cuda_peaks.py | tee -a "$J"

bench_rows() {  # shape format dir
    local m=$1 f=$2 dir=$3 args line
    for args in "--prompt-len 512 --gen-len $GEN --batch 1" "--prompt-len 2048 --gen-len 0 --batch 1" \
                "--prompt-len 512 --gen-len 64 --batch 32"; do
        line=$("$BIN" bench --device cuda --model "$dir" $args --repeat "$REPEAT" --json 2>"$OUT/bench_err.log") \
            || { echo "FAILED: $m $f $args"; tail -3 "$OUT/bench_err.log"; continue; }
        echo "{\"shape\": \"$m\", \"format\": \"$f\", \"who\": \"lmscope\", \"args\": \"$args\", \"r\": $line}" | tee -a "$J"
    done
    if [ "${BENCH_L2:-0}" = 1 ]; then  # the decode GEMVs with their L2 prefetch chain (bench/cuda_notes.md v7)
        args="--prompt-len 512 --gen-len $GEN --batch 1"
        line=$(LMSCOPE_CUDA_L2_PREFETCH_MB=auto "$BIN" bench --device cuda --model "$dir" $args --repeat "$REPEAT" --json 2>"$OUT/bench_err.log") \
            && echo "{\"shape\": \"$m\", \"format\": \"$f\", \"who\": \"lmscope\", \"args\": \"$args l2\", \"r\": $line}" | tee -a "$J"
    fi
    if [ "$f" = bf16 ] && [ "${BENCH_PDL:-0}" = 1 ]; then  # without programmatic dependent launch (on by default: cuda_notes v14)
        args="--prompt-len 512 --gen-len $GEN --batch 1"
        line=$(LMSCOPE_CUDA_PDL=0 "$BIN" bench --device cuda --model "$dir" $args --repeat "$REPEAT" --json 2>"$OUT/bench_err.log") \
            && echo "{\"shape\": \"$m\", \"format\": \"$f\", \"who\": \"lmscope\", \"args\": \"$args nopdl\", \"r\": $line}" | tee -a "$J"
    fi
}

for m in $MODELS; do
    base=/tmp/lmscope_bench_$m
    prepare "$m" || continue
    for f in $FORMATS; do
        case $f in
            bf16) dir=$base ;;
            fp8) dir=${base}_fp8 ;;
            awq) dir=${base}_awq; while [ -f "${base}_awq.running" ]; do sleep 2; done; tail -1 "$OUT/quant_awq_$m.log" 2>/dev/null ;;
            *) echo "unknown format $f"; continue ;;
        esac
        [ -f "$dir/config.json" ] || { echo "no $f checkpoint for $m"; continue; }
        echo "== $m $f lmscope"
        bench_rows "$m" "$f" "$dir"
    done
    if [ "${SKIP_HF:-0}" != 1 ]; then
        echo "== $m transformers (bf16)"
        line=$(timeout "${HF_TIMEOUT:-200}" python3 bench/cuda_transformers.py "$base" "$HF_GEN" 32 2>"$OUT/hf_err.log") \
            && echo "{\"shape\": \"$m\", \"format\": \"bf16\", \"who\": \"transformers\", \"r\": $line}" | tee -a "$J" \
            || { echo "transformers failed"; tail -3 "$OUT/hf_err.log"; }
    fi
done
python3 bench/cuda_table.py "$J" | tee "$OUT/bench_table.txt"
