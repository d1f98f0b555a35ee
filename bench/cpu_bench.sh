#!/usr/bin/env bash
# CPU inference benchmark, one command (issue 8): a Qwen3-0.6B-shaped checkpoint with random weights in
# BF16, block-FP8 and AWQ-int4, prefill 512 and decode 128 tokens/s with 1 and 2 threads (median of
# REPEAT runs after a warm-up, `lmscope bench`), next to the machine's measured ceilings
# (bench_machine: read bandwidth, FMA peak) and llama.cpp's published figures from the issue.
#   bench/cpu_bench.sh [build-dir] > table.md
# Env: REPEAT (default 5), PROMPT (512), GEN (128), THREADS ("1 2"), WORK (/tmp/lmscope-bench).
set -euo pipefail
build=${1:-build}
bin=$build/lmscope
repeat=${REPEAT:-5}
prompt=${PROMPT:-512}
gen=${GEN:-128}
threads=${THREADS:-1 2}
work=${WORK:-/tmp/lmscope-bench}
mkdir -p "$work"

[[ -f $work/bf16/config.json ]] || "$bin" init --preset qwen3-0.6b --seed 1 "$work/bf16" >&2
[[ -f $work/fp8/config.json ]] || "$bin" quantize --fp8 "$work/bf16" "$work/fp8" --no-progress >&2
[[ -f $work/int4/config.json ]] || "$bin" quantize --awq --method rtn "$work/bf16" "$work/int4" --no-progress >&2

echo "## Machine ceilings (bench_machine)"
echo
"$build/bench/bench_machine" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
  --benchmark_filter='BM_ReadBandwidth|BM_FmaPeak' --benchmark_format=json > "$work/machine.json" 2>/dev/null
python3 - "$work/machine.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for b in d["benchmarks"]:
    if b.get("aggregate_name") != "median":
        continue
    if "bytes_per_second" in b:
        print("- %s: %.1f GB/s read" % (b["run_name"], b["bytes_per_second"] / 1e9))
    if "FLOP/s" in b:
        print("- %s: %.0f GFLOP/s f32 FMA" % (b["run_name"], b["FLOP/s"] / 1e9))
PY
echo
echo "## lmscope bench, Qwen3-0.6B shape (prompt $prompt, gen $gen, median of $repeat)"
echo
echo "| format | threads | weight bytes | prefill tok/s | decode tok/s | decode GB/s of weights |"
echo "|---|---|---|---|---|---|"
for fmt in bf16 fp8 int4; do
  for t in $threads; do
    j=$("$bin" bench --model "$work/$fmt" --prompt-len "$prompt" --gen-len "$gen" --threads "$t" --repeat "$repeat" --json)
    python3 - "$j" "$fmt" <<'PY'
import json, sys
j = json.loads(sys.argv[1])
print("| %s | %d | %.3f GB | %.1f | %.1f | %.1f |" % (sys.argv[2], j["threads"], j["weights_bytes"] / 1e9,
      j["prefill_tok_s"], j["decode_tok_s"], j["decode_tok_s"] * j["weights_bytes"] / 1e9))
PY
  done
done
