#!/usr/bin/env python3
"""Golden checkpoints and logits from Hugging Face transformers, for lmscope's tests.

Writes, for each case, tests/golden/<case>/{config.json, model.safetensors, golden.safetensors}:
  config.json        hub-style (rope_theta / rope_scaling keys, as released checkpoints have them)
  model.safetensors  random weights; norm weights and biases random too (ones/zeros would hide
                     wrong orderings), stored in the case's dtype (F32 or BF16)
  golden.safetensors input_ids I64 [T]; logits F64 [T, V]; hidden.<i> F64 [T, H] for the embedding
                     output and each layer (transformers' output_hidden_states);
                     computed by transformers in float64, eager attention, from the saved files.
Metadata of golden.safetensors: generator (this script + version), torch and transformers versions.

Run on the GPU machine (torch + transformers installed, no network):  python3 tools/gen_golden.py OUT_DIR
"""
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM

GENERATOR = "tools/gen_golden.py v1"

CASES = {
    # head_dim * heads (4*32=128) != hidden (64), GQA 4/2, untied
    "qwen3_gqa": dict(
        config={
            "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 256,
            "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
            "hidden_act": "silu", "max_position_embeddings": 512, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0, "rope_scaling": None, "tie_word_embeddings": False,
            "attention_bias": False, "use_sliding_window": False, "sliding_window": None,
            "max_window_layers": 2, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
        },
        dtype=torch.float32, seq=24),
    # same architecture stored in bf16: lmscope computes in f32 straight from bf16 weights
    "qwen3_gqa_bf16": dict(base="qwen3_gqa", dtype=torch.bfloat16, seq=19, seed_offset=7),
    # tied embeddings, MQA (1 kv head), head_dim 48 with hidden 80
    "qwen3_tied": dict(
        config={
            "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 300,
            "hidden_size": 80, "intermediate_size": 128, "num_hidden_layers": 3,
            "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 48,
            "hidden_act": "silu", "max_position_embeddings": 256, "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0, "rope_scaling": None, "tie_word_embeddings": True,
            "attention_bias": False, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
        },
        dtype=torch.float32, seq=17),
    # Qwen2: q/k/v biases, no q/k norm, head_dim from hidden/heads (no head_dim key)
    "qwen2_bias": dict(
        config={
            "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 200,
            "hidden_size": 64, "intermediate_size": 112, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
            "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
            "rope_scaling": None, "tie_word_embeddings": False, "use_sliding_window": False,
            "sliding_window": 4096, "max_window_layers": 2, "bos_token_id": 1, "eos_token_id": 2,
            "torch_dtype": "float32",
        },
        dtype=torch.float32, seq=21),
    # Llama 3 with llama3 rope scaling; the prompt (48) is longer than original_max_position_embeddings (32);
    # head_dim 32 with theta 5e5 puts frequencies in all three bands (kept, smoothed, divided by factor);
    # attention_bias on (o_proj bias too)
    "llama3_scaled": dict(
        config={
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 320,
            "hidden_size": 96, "intermediate_size": 160, "num_hidden_layers": 2,
            "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 32, "hidden_act": "silu",
            "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
            "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 32, "rope_type": "llama3"},
            "tie_word_embeddings": False, "attention_bias": True, "mlp_bias": False,
            "bos_token_id": 1, "eos_token_id": 2, "pretraining_tp": 1, "torch_dtype": "float32",
        },
        dtype=torch.float32, seq=48),
}


def randomize(model, gen):
    """Random weights of a sensible scale; norms around 1, biases around 0, all random."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            elif p.ndim == 2:
                fan_in = p.shape[1]
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * (1.5 / fan_in ** 0.5))
            else:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))


def make_case(name, spec, out_root, seed):
    if "base" in spec:
        spec = dict(CASES[spec["base"]], **{k: v for k, v in spec.items() if k != "base"})
    cfg = dict(spec["config"])
    dtype = spec["dtype"]
    cfg["torch_dtype"] = "bfloat16" if dtype == torch.bfloat16 else "float32"
    out = os.path.join(out_root, name)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)

    gen = torch.Generator().manual_seed(seed + spec.get("seed_offset", 0))
    config = AutoConfig.from_pretrained(out)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float64, attn_implementation="eager")
    randomize(model, gen)
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    if cfg.get("tie_word_embeddings"):
        state.pop("lm_head.weight", None)
    state = {k: v for k, v in state.items() if "rotary_emb" not in k}
    save_file(state, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})

    # Reload exactly what lmscope will read, then compute in float64.
    ref = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float64, attn_implementation="eager")
    ref.eval()
    T = spec["seq"]
    ids = torch.randint(0, cfg["vocab_size"], (1, T), generator=gen)
    with torch.no_grad():
        res = ref(input_ids=ids, output_hidden_states=True, use_cache=False)
    golden = {"input_ids": ids[0].to(torch.int64).contiguous(),
              "logits": res.logits[0].to(torch.float64).contiguous()}
    for i, h in enumerate(res.hidden_states):
        golden[f"hidden.{i}"] = h[0].to(torch.float64).contiguous()
    meta = {"generator": GENERATOR, "torch": torch.__version__, "transformers": transformers.__version__,
            "case": name, "weights_dtype": str(dtype), "reference": "transformers float64 eager"}
    save_file(golden, os.path.join(out, "golden.safetensors"), metadata=meta)
    print(f"{name}: T={T} logits {tuple(res.logits.shape)} |logits| max {res.logits.abs().max().item():.3f}"
          f" rope={getattr(ref.config, 'rope_parameters', None)}")


def main():
    out_root = sys.argv[1] if len(sys.argv) > 1 else "tests/golden"
    for i, (name, spec) in enumerate(CASES.items()):
        make_case(name, spec, out_root, seed=1000 + i)


if __name__ == "__main__":
    main()
