#!/usr/bin/env python3
"""A Qwen3 safetensors checkpoint (what `lmscope init --preset qwen3-0.6b` writes) -> a GGUF file
llama.cpp loads, for the side-by-side CPU benchmark (bench/llamacpp_bench.sh, issue 8).

    qwen3_to_gguf.py CHECKPOINT_DIR TOKENIZER_JSON OUT.gguf [--dtype bf16|f16]

Why our own: llama.cpp's convert_hf_to_gguf.py needs torch and transformers, which this machine does
not have; gguf-py (numpy only, from the llama.cpp source) writes the file. Same tensors, same bytes:
2-D weights in bf16 (as stored) or f16, norms in f32; llama.cpp's qwen3 names; the real Qwen3
tokenizer (vocab, merges, pre-tokenizer "qwen2") padded to the config's vocab_size as llama.cpp's
converter does. Needs PYTHONPATH to include llama.cpp's gguf-py.
"""
import argparse
import json
import struct
import sys
from pathlib import Path

SCRIPT_VERSION = "2"

# HF name (layer part after model.layers.{i}.) -> llama.cpp name (after blk.{i}.)
LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
TOP_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}


def fail(msg: str) -> None:
    print(f"qwen3_to_gguf: {msg}", file=sys.stderr)
    sys.exit(1)


def read_header(path: Path) -> tuple:
    """(header length, {name: (dtype string, shape, (begin, end))}) of a safetensors file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            fail(f"{path}: truncated: {size} bytes, no header length")
        n = struct.unpack("<Q", head)[0]
        if n > size - 8:
            fail(f"{path}: header length {n} runs past the file's {size} bytes")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            fail(f"{path}: header is not JSON ({e})")
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        if e > size - 8 - n:
            fail(f"{path}: tensor {name} ends at byte {e} of the data, which has {size - 8 - n}")
        if info["dtype"] not in ("BF16", "F16", "F32"):
            fail(f"{path}: tensor {name} is {info['dtype']}, expected BF16, F16 or F32")
        out[name] = (info["dtype"], info["shape"], (b, e))
    return n, out


def gguf_name(name: str) -> str:
    """llama.cpp's name for an HF Qwen3 tensor."""
    if name in TOP_NAMES:
        return TOP_NAMES[name]
    if name.startswith("model.layers."):
        idx, _, tail = name[len("model.layers."):].partition(".")
        if idx.isdigit() and tail in LAYER_NAMES:
            return f"blk.{int(idx)}.{LAYER_NAMES[tail]}"
    fail(f"tensor {name}: no llama.cpp name for it (a Qwen3 checkpoint has {', '.join(sorted(TOP_NAMES))} and model.layers.N.*)")


def to_array(np, gguf, dtype: str, shape: list, raw, want: str) -> tuple:
    """(array, raw_dtype for gguf or None): 2-D weights in `want`, 1-D in f32."""
    if dtype == "BF16":
        u16 = raw.view(np.uint16).reshape(shape)
        f32 = lambda: (u16.astype(np.uint32) << 16).view(np.float32)
    elif dtype == "F16":
        f32 = lambda: raw.view(np.float16).reshape(shape).astype(np.float32)
    else:  # F32 (read_header admits nothing else)
        f32 = lambda: raw.view(np.float32).reshape(shape)
    if len(shape) == 1:
        return np.ascontiguousarray(f32()), None
    if want == "bf16":
        if dtype == "BF16":
            return np.ascontiguousarray(u16), gguf.GGMLQuantizationType.BF16
        bits = f32().view(np.uint32)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even
        return rounded, gguf.GGMLQuantizationType.BF16
    return f32().astype(np.float16), None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("tokenizer_json", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--dtype", choices=["bf16", "f16"], default="bf16")
    a = ap.parse_args()

    # every check first, with the standard library only: numpy and gguf-py come after
    cfg_path = a.checkpoint / "config.json"
    if not cfg_path.is_file():
        fail(f"{cfg_path}: missing (expected a Hugging Face checkpoint folder)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except ValueError as e:
        fail(f"{cfg_path}: not JSON ({e})")
    if cfg.get("model_type") != "qwen3":
        fail(f"{cfg_path}: model_type {cfg.get('model_type')!r}, expected 'qwen3'")
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "head_dim", "rope_theta", "rms_norm_eps", "vocab_size"):
        if key not in cfg:
            fail(f"{cfg_path}: field {key} is missing")
    files = sorted(a.checkpoint.glob("*.safetensors"))
    if not files:
        fail(f"{a.checkpoint}: no .safetensors files")
    headers = [(f, *read_header(f)) for f in files]
    names = {gguf_name(name): name for _, _, hdr in headers for name in hdr}
    if "token_embd.weight" not in names:
        fail(f"{a.checkpoint}: tensor model.embed_tokens.weight is missing")
    if not a.tokenizer_json.is_file():
        fail(f"{a.tokenizer_json}: missing (the Qwen3 tokenizer.json)")
    try:
        tok = json.loads(a.tokenizer_json.read_text())
        vocab = dict(tok["model"]["vocab"])
        merges_in = tok["model"]["merges"]
    except (ValueError, KeyError, TypeError) as e:
        fail(f"{a.tokenizer_json}: not a BPE tokenizer.json (model.vocab / model.merges: {e})")
    V = cfg["vocab_size"]
    special = {}
    for t in tok.get("added_tokens", []):
        vocab[t["content"]] = t["id"]
        special[t["id"]] = bool(t.get("special", True))
    if max(vocab.values()) >= V:
        fail(f"{a.tokenizer_json}: token ids up to {max(vocab.values())}, config vocab_size is {V}")
    try:
        import numpy as np
        import gguf
    except ImportError as e:
        fail(f"needs numpy (Debian: python3-numpy) and llama.cpp's gguf-py on PYTHONPATH: {e}")

    w = gguf.GGUFWriter(str(a.out) + ".tmp", "qwen3")
    L = cfg["num_hidden_layers"]
    w.add_name("lmscope random-weight qwen3")
    w.add_string("lmscope.qwen3_to_gguf.version", SCRIPT_VERSION)
    w.add_context_length(cfg.get("max_position_embeddings", 40960))
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(L)
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_key_length(cfg["head_dim"])
    w.add_value_length(cfg["head_dim"])
    w.add_rope_freq_base(float(cfg["rope_theta"]))
    w.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16 if a.dtype == "bf16" else gguf.LlamaFileType.MOSTLY_F16)

    by_id = {i: s for s, i in vocab.items()}
    tokens, types = [], []
    for i in range(V):
        if i in by_id:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if special.get(i) else
                         gguf.TokenType.USER_DEFINED if i in special else gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges_in]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(cfg.get("bos_token_id", 151643))
    w.add_eos_token_id(cfg.get("eos_token_id", 151645))
    w.add_add_bos_token(False)

    for f, n, hdr in headers:
        data = np.memmap(f, dtype=np.uint8, mode="r", offset=8 + n)
        for name in sorted(hdr):
            dt, shape, (b, e) = hdr[name]
            arr, raw_dtype = to_array(np, gguf, dt, shape, data[b:e], a.dtype)
            w.add_tensor(gguf_name(name), arr, raw_dtype=raw_dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    Path(str(a.out) + ".tmp").replace(a.out)  # written whole, then renamed
    print(f"{a.out}: {len(names)} tensors, {a.dtype}, vocab {V} ({len(merges)} merges)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
