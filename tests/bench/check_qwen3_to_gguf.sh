#!/usr/bin/env bash
# bench/qwen3_to_gguf.py turns bad input into one line on stderr naming the file / tensor / field, and a
# non-zero exit, before it needs numpy or gguf-py (so this runs on a bare CI machine); a good checkpoint
# then gets as far as its dependencies (numpy / gguf-py present: a GGUF with the checkpoint's tensors).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
conv=$here/../../bench/qwen3_to_gguf.py
command -v python3 >/dev/null || { echo "SKIP: no python3"; exit 0; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
# expect NAME DIR TOKENIZER PATTERN: exit 1, exactly one stderr line, matching PATTERN, no output file
expect() {
    local name=$1 dir=$2 tok=$3 pat=$4
    python3 "$conv" "$dir" "$tok" "$tmp/out.gguf" > /dev/null 2> "$tmp/err"
    local rc=$? lines
    lines=$(wc -l < "$tmp/err")
    if [[ $rc -ne 1 || $lines -ne 1 ]] || ! grep -q -- "$pat" "$tmp/err" || [[ -e $tmp/out.gguf ]]; then
        echo "FAIL $name: rc=$rc, $lines stderr lines: $(head -c 300 "$tmp/err")"; fails=$((fails + 1))
    else
        echo "ok   $name: $(cat "$tmp/err")"
    fi
}
# a tiny safetensors file: header JSON, then the data bytes
mk_st() {  # FILE HEADER_JSON DATA_BYTES
    python3 - "$@" <<'PY'
import struct, sys
h = sys.argv[2].encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + b"\0" * int(sys.argv[3]))
PY
}
cfg='{"model_type": "qwen3", "hidden_size": 4, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 1,
      "num_key_value_heads": 1, "head_dim": 4, "rope_theta": 1e6, "rms_norm_eps": 1e-6, "vocab_size": 8}'
tok='{"model": {"vocab": {"a": 0, "b": 1}, "merges": ["a b"]}, "added_tokens": []}'
mkdir -p "$tmp/m" && echo "$tok" > "$tmp/tok.json"

expect "no config.json" "$tmp/m" "$tmp/tok.json" "m/config.json: missing"
echo '{"model_type": "llama"}' > "$tmp/m/config.json"
expect "wrong model_type" "$tmp/m" "$tmp/tok.json" "config.json: model_type 'llama', expected 'qwen3'"
echo '{"model_type": "qwen3"}' > "$tmp/m/config.json"
expect "missing field" "$tmp/m" "$tmp/tok.json" "config.json: field hidden_size is missing"
echo "$cfg" > "$tmp/m/config.json"
expect "no safetensors" "$tmp/m" "$tmp/tok.json" "no .safetensors files"
mk_st "$tmp/m/model.safetensors" '{"model.embed_tokens.weight": {"dtype": "BF16", "shape": [8, 4], "data_offsets": [0, 64]}}' 10
expect "truncated tensor" "$tmp/m" "$tmp/tok.json" "tensor model.embed_tokens.weight ends at byte 64 of the data, which has 10"
mk_st "$tmp/m/model.safetensors" '{"model.embed_tokens.weight": {"dtype": "I8", "shape": [8, 4], "data_offsets": [0, 32]}}' 32
expect "wrong dtype" "$tmp/m" "$tmp/tok.json" "tensor model.embed_tokens.weight is I8, expected BF16, F16 or F32"
mk_st "$tmp/m/model.safetensors" '{"model.embed_tokens.weight": {"dtype": "BF16", "shape": [8, 4], "data_offsets": [0, 64]},
  "model.layers.0.mlp.experts.weight": {"dtype": "BF16", "shape": [4], "data_offsets": [64, 72]}}' 72
expect "unknown tensor" "$tmp/m" "$tmp/tok.json" "tensor model.layers.0.mlp.experts.weight: no llama.cpp name"
mk_st "$tmp/m/model.safetensors" '{"model.norm.weight": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}' 16
expect "no embedding" "$tmp/m" "$tmp/tok.json" "tensor model.embed_tokens.weight is missing"
mk_st "$tmp/m/model.safetensors" '{"model.embed_tokens.weight": {"dtype": "BF16", "shape": [8, 4], "data_offsets": [0, 64]},
  "model.norm.weight": {"dtype": "F32", "shape": [4], "data_offsets": [64, 80]}}' 80
expect "no tokenizer" "$tmp/m" "$tmp/none.json" "none.json: missing"
echo '{"model": {}}' > "$tmp/bad_tok.json"
expect "not a BPE tokenizer" "$tmp/m" "$tmp/bad_tok.json" "bad_tok.json: not a BPE tokenizer.json"
echo '{"model": {"vocab": {"a": 0, "b": 9}, "merges": []}}' > "$tmp/big_tok.json"
expect "vocab past vocab_size" "$tmp/m" "$tmp/big_tok.json" "big_tok.json: token ids up to 9, config vocab_size is 8"
head -c 5 "$tmp/m/model.safetensors" > "$tmp/m/model-00002.safetensors"
expect "truncated header" "$tmp/m" "$tmp/tok.json" "model-00002.safetensors: truncated: 5 bytes"
rm "$tmp/m/model-00002.safetensors"

# the good case: without numpy / gguf-py a one-line error naming them, with them a GGUF
if PYTHONPATH=${GGUF_PY:-} python3 -c 'import numpy, gguf' 2>/dev/null; then
    if PYTHONPATH=${GGUF_PY:-} python3 "$conv" "$tmp/m" "$tmp/tok.json" "$tmp/out.gguf" && [[ -s $tmp/out.gguf && ! -e $tmp/out.gguf.tmp ]]; then
        echo "ok   good checkpoint: a GGUF of $(stat -c %s "$tmp/out.gguf") bytes"
    else
        echo "FAIL good checkpoint"; fails=$((fails + 1))
    fi
else
    expect "dependencies" "$tmp/m" "$tmp/tok.json" "needs numpy (Debian: python3-numpy) and llama.cpp's gguf-py"
fi
[[ $fails -eq 0 ]] || { echo "$fails failed"; exit 1; }
