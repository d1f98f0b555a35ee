#!/usr/bin/env bash
# CPU inference benchmark, one command (issue 8): a Qwen3-0.6B-shaped checkpoint with random weights in
# BF16, block-FP8 and AWQ-int4 (RTN), each quantized format also with `--quantize-lm-head` (fp8h, int4h:
# the tied head quantized too, as in llama.cpp's Q8_0 / Q4_0 files); prefill 512 and decode 128 tokens/s
# with 1 and 2 threads (median of REPEAT runs after a warm-up, `lmscope bench`), next to the machine's
# measured ceilings (bench_machine: read bandwidth, FMA peak).
# Bytes/token = the weight bytes one decode step reads: every tensor of the checkpoint except the
# embedding table when the head is a tensor of its own (decode reads one row of it). Floor = measured read
# bandwidth at that thread count / bytes per token; "of floor" = decode tok/s / floor (issue 8's
# definition: weights only). The KV cache adds layers * 2 * kv_dim * 2 bytes per cached position (f16,
# the default; 4 with LMSCOPE_KV_CACHE=f32) at the mean decode position prompt + gen/2: the "+KV" columns,
# and "of floor with KV" = decode tok/s / (bandwidth / (weights + KV bytes)).
#   bench/cpu_bench.sh [build-dir] > table.md
# Env: REPEAT (default 5), PROMPT (512), GEN (128), THREADS ("1 2"), WORK (/tmp/lmscope-bench),
#      FORMATS ("bf16 bf16+bf16act fp8 fp8h int4 int4h int4h+bf16act"; "+bf16act": the same checkpoint with
#      `--bf16-activations`, the opt-in bf16 prefill GEMM), PREPARE_ONLY=1 (make the checkpoints, nothing else).
set -euo pipefail
build=${1:-build}
bin=$build/lmscope
repeat=${REPEAT:-5}
prompt=${PROMPT:-512}
gen=${GEN:-128}
threads=${THREADS:-1 2}
work=${WORK:-/tmp/lmscope-bench}
formats=${FORMATS:-bf16 bf16+bf16act fp8 fp8h int4 int4h int4h+bf16act}
mkdir -p "$work"

[[ -f $work/bf16/config.json ]] || "$bin" init --preset qwen3-0.6b --seed 1 "$work/bf16" >&2
[[ -f $work/fp8/config.json ]] || "$bin" quantize --fp8 "$work/bf16" "$work/fp8" --no-progress >&2
[[ -f $work/fp8h/config.json ]] || "$bin" quantize --fp8 "$work/bf16" "$work/fp8h" --quantize-lm-head --no-progress >&2
[[ -f $work/int4/config.json ]] || "$bin" quantize --awq --method rtn "$work/bf16" "$work/int4" --no-progress >&2
[[ -f $work/int4h/config.json ]] || "$bin" quantize --awq --method rtn "$work/bf16" "$work/int4h" --quantize-lm-head --no-progress >&2
[[ "${PREPARE_ONLY:-0}" = 1 ]] && exit 0  # the checkpoints only (bench/llamacpp_bench.sh)

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
echo "## lmscope bench, Qwen3-0.6B shape (prompt $prompt, gen $gen, median of $repeat; load average $(cut -d' ' -f1-3 /proc/loadavg) at start)"
echo
echo "| format | threads | bytes/token | prefill tok/s | decode tok/s | decode GB/s | floor tok/s | of floor | +KV bytes | of floor with KV |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for fmt in $formats; do
  ckpt=${fmt%+bf16act} flags=()
  [[ $fmt == *+bf16act ]] && flags=(--bf16-activations)
  for t in $threads; do
    j=$("$bin" bench --model "$work/$ckpt" --prompt-len "$prompt" --gen-len "$gen" --threads "$t" --repeat "$repeat" --json "${flags[@]}")
    BENCH_DIR=$(dirname "$0") python3 - "$j" "$fmt" "$work/$ckpt" "$work/machine.json" "$prompt" "$gen" <<'PY'
import json, os, sys
sys.path.insert(0, os.environ["BENCH_DIR"])
from weight_bytes import decode_weight_bytes
j = json.loads(sys.argv[1])
fmt, model = sys.argv[2], sys.argv[3]
cfg = json.load(open(os.path.join(model, "config.json")))
per_token = decode_weight_bytes(model)
bw = {}
for b in json.load(open(sys.argv[4]))["benchmarks"]:
    if b.get("aggregate_name") == "median" and "bytes_per_second" in b:
        bw[int(b["run_name"].split("/")[1])] = b["bytes_per_second"]
floor = bw.get(j["threads"], 0) / per_token if per_token else 0
kv_dim = cfg["num_key_value_heads"] * cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
kv_bytes = 4 if os.environ.get("LMSCOPE_KV_CACHE") == "f32" else 2
kv = cfg["num_hidden_layers"] * 2 * kv_dim * kv_bytes * (int(sys.argv[5]) + int(sys.argv[6]) / 2)
floor_kv = bw.get(j["threads"], 0) / (per_token + kv) if per_token else 0
d = j["decode_tok_s"]
print("| %s | %d | %.3f GB | %.1f | %.1f | %.1f | %.1f | %.0f%% | %.3f GB | %.0f%% |" % (fmt, j["threads"],
      per_token / 1e9, j["prefill_tok_s"], d, d * per_token / 1e9, floor, 100 * d / floor if floor else 0,
      kv / 1e9, 100 * d / floor_kv if floor_kv else 0))
PY
  done
done
