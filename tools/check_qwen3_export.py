#!/usr/bin/env python3
"""Checks that transformers reads a `lmscope train --arch qwen3` checkpoint as the same model.

Loads MODEL_DIR (config.json + model.safetensors + tokenizer.json, as `lmscope train --arch qwen3`
writes it; the optimizer.safetensors / train_state.json / log.jsonl next to them are ignored by
transformers) with AutoModelForCausalLM in float64 with eager attention, runs the token ids given by
--ids, and compares its logits with LOGITS_FILE, the safetensors that lmscope wrote for the same ids:

    lmscope run --model MODEL_DIR --ids 5,17,42,... --max-new-tokens 0 --save-logits LOGITS_FILE

Prints ||lmscope - transformers|| / ||transformers|| over all logits (and the max abs difference,
and whether the argmax agrees at every position); exits 1 when the relative error is above --tol
(default 1e-4), 0 otherwise. Needs torch, transformers (>= 4.51, Qwen3) and safetensors; runs on the
CPU (float64) and needs no network.

Usage: python3 tools/check_qwen3_export.py MODEL_DIR LOGITS_FILE --ids 5,17,42 [--tol 1e-4]
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("logits_file", help="safetensors with 'logits' F32 [T, V] from lmscope run --save-logits")
    ap.add_argument("--ids", required=True, help="the comma-separated ids given to lmscope run --ids")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()

    with open(os.path.join(a.model_dir, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("architectures") != ["Qwen3ForCausalLM"] or cfg.get("model_type") != "qwen3":
        print(f"{a.model_dir}/config.json: not a Qwen3ForCausalLM ({cfg.get('architectures')})")
        return 1
    ids = [int(x) for x in a.ids.replace(" ", "").split(",") if x]
    if not ids:
        print("--ids: no ids")
        return 2

    model = AutoModelForCausalLM.from_pretrained(a.model_dir, torch_dtype=torch.float64,
                                                 attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        ref = model(torch.tensor([ids], dtype=torch.long)).logits[0]  # (T, V) float64
    ours = load_file(a.logits_file)["logits"].to(torch.float64)
    if ours.shape != ref.shape:
        print(f"shape mismatch: lmscope {tuple(ours.shape)} vs transformers {tuple(ref.shape)} "
              f"(same --ids for both? vocab {cfg['vocab_size']})")
        return 1
    rel = (torch.linalg.norm(ours - ref) / torch.linalg.norm(ref)).item()
    max_abs = (ours - ref).abs().max().item()
    argmax_ok = bool((ours.argmax(-1) == ref.argmax(-1)).all())
    import transformers
    print(f"{a.model_dir}: {len(ids)} tokens, vocab {ref.shape[1]}, tie_word_embeddings "
          f"{cfg.get('tie_word_embeddings')}, transformers {transformers.__version__}, torch {torch.__version__}")
    print(f"rel error {rel:.3e}  max |diff| {max_abs:.3e}  argmax agrees: {argmax_ok}  (tolerance {a.tol:g})")
    if not (rel <= a.tol):
        print("FAIL")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
