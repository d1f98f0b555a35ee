#!/usr/bin/env python3
"""Golden data for lmscope's block-FP8 (E4M3, 128x128 weight_scale_inv) support, from PyTorch/transformers.

Mode `make OUT_ROOT` writes under OUT_ROOT (normally tests/golden):
  fp8_e4m3/e4m3.safetensors
      codes U8 [256], decoded F32 [256]      torch: uint8.view(float8_e4m3fn).float()
      sweep F32 [N]                          inputs: every code value, every midpoint (ties) and its f32
                                             neighbours, subnormals, +-448..+-480 boundaries, out of range,
                                             inf, NaN, +-0 and log-uniform random values
      enc_raw U8 [N]                         torch CPU sweep.to(float8_e4m3fn)       (>464 -> NaN)
      enc_sat U8 [N]                         torch CPU sweep.clamp(-448,448).to(...) (what quantisers do)
      enc_cuda U8 [N]                        same as enc_raw on the GPU when there is one
  fp8_src_<case>/   config.json + model.safetensors: the BF16 source model (random weights)
  fp8_<case>/       config.json (with quantization_config) + model.safetensors: the source quantised in
                    PyTorch exactly as `lmscope quantize --fp8` documents it (per 128x128 block, zero-padded:
                    scale = amax / 448 in f32 (1.0 for an all-zero block), codes = (w / scale).clamp(+-448)
                    .to(float8_e4m3fn); weight_scale_inv F32, or BF16 scales rounded before use for
                    the case that tests them), plus golden.safetensors:
                    input_ids I64 [T]; logits F64 [T, V] and hidden.<i> F64 from transformers in float64
                    (eager) on the dequantised weights (fp8.double() * scale, cropped);
                    logits_hf_dequant F32/F64 [T, V] when transformers itself loads the folder with
                    FineGrainedFP8Config(dequantize=True); logits_hf_native F32 when its FP8 kernels run (GPU).
Mode `check DIR IDS_FILE` loads a folder written by `lmscope quantize --fp8` and writes DIR/golden_check.safetensors
  with logits_f64_dequant (manual dequantisation, float64 transformers), logits_hf_dequant and logits_hf_native
  (transformers loading the folder itself) for the input_ids of IDS_FILE (a golden.safetensors), and in its
  metadata the relative errors between them and, when DIR/../<source> exists, how many codes/scales differ
  from this script's own quantiser applied to the source weights.

Run on the GPU machine:  python3 tools/golden_fp8.py make tests/golden
                         python3 tools/golden_fp8.py check tests/golden/fp8_ours_qwen3_gqa tests/golden/qwen3_gqa/golden.safetensors
"""
import json
import math
import os
import shutil
import sys
import tempfile
import traceback

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM

GENERATOR = "tools/golden_fp8.py v1"
FP8_MAX = 448.0
F8 = torch.float8_e4m3fn

CASES = {
    # nothing is a multiple of 128: hidden 200, intermediate 328, q 3x40 = 120, kv 1x40; untied; F32 scales
    "qwen3": dict(
        config={
            "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 300,
            "hidden_size": 200, "intermediate_size": 328, "num_hidden_layers": 2,
            "num_attention_heads": 3, "num_key_value_heads": 1, "head_dim": 40,
            "hidden_act": "silu", "max_position_embeddings": 256, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0, "rope_scaling": None, "tie_word_embeddings": False,
            "attention_bias": False, "use_sliding_window": False, "sliding_window": None,
            "max_window_layers": 2, "bos_token_id": 1, "eos_token_id": 2,
        },
        scale_dtype=torch.float32, seq=23),
    # tied head, hidden 136 (128 + 8), intermediate 264, q 2x72 = 144, kv 2x72; BF16 scales (as in
    # Qwen3-*-FP8 releases), rounded to bf16 before the codes are computed
    "qwen3_tied": dict(
        config={
            "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 280,
            "hidden_size": 136, "intermediate_size": 264, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 72,
            "hidden_act": "silu", "max_position_embeddings": 256, "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0, "rope_scaling": None, "tie_word_embeddings": True,
            "attention_bias": False, "use_sliding_window": False, "sliding_window": None,
            "max_window_layers": 2, "bos_token_id": 1, "eos_token_id": 2,
        },
        scale_dtype=torch.bfloat16, seq=19),
}

QUANT_CONFIG = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                "weight_block_size": [128, 128], "modules_to_not_convert": ["lm_head"]}


def log(*a):
    print(*a, flush=True)


def rel(a, b):
    a = a.to(torch.float64).flatten()
    b = b.to(torch.float64).flatten()
    return float((a - b).norm() / b.norm())


def is_linear_weight(name):
    return name.startswith("model.layers.") and name.endswith("_proj.weight")


def quantize_block(w, bo=128, bi=128, scale_dtype=torch.float32):
    """2-D weight -> (codes float8_e4m3fn [out, in], scale [ceil(out/bo), ceil(in/bi)] in scale_dtype)."""
    w = w.to(torch.float32)
    out, inn = w.shape
    nbo, nbi = -(-out // bo), -(-inn // bi)
    pad = torch.zeros(nbo * bo, nbi * bi, dtype=torch.float32)
    pad[:out, :inn] = w
    blocks = pad.view(nbo, bo, nbi, bi)
    amax = blocks.abs().amax(dim=(1, 3))
    # tensor / tensor: IEEE f32 division (no reciprocal trick), like lmscope
    scale = torch.where(amax > 0, amax / torch.full_like(amax, FP8_MAX), torch.ones_like(amax))
    scale = scale.to(scale_dtype).to(torch.float32)
    q = (blocks / scale[:, None, :, None].expand_as(blocks)).clamp(-FP8_MAX, FP8_MAX)
    codes = q.reshape(nbo * bo, nbi * bi)[:out, :inn].contiguous().to(F8)
    return codes, scale.to(scale_dtype).contiguous()


def dequantize_block(codes, scale, bo=128, bi=128):
    out, inn = codes.shape
    s = scale.to(torch.float64).repeat_interleave(bo, 0).repeat_interleave(bi, 1)[:out, :inn]
    return codes.to(torch.float64) * s


def randomize(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            elif p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * (1.5 / p.shape[1] ** 0.5))
            else:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
        # one all-zero block (exercises the amax = 0 rule) in layer 0's down_proj
        for name, p in model.named_parameters():
            if name == "model.layers.0.mlp.down_proj.weight":
                p[:128, :128] = 0.0


def f64_model(cfg_dict):
    """transformers model in float64, eager attention, built from a config without quantization_config."""
    cfg_dict = {k: v for k, v in cfg_dict.items() if k != "quantization_config"}
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg_dict, f)
        config = AutoConfig.from_pretrained(d)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float64, attn_implementation="eager")


def dense_f64_state(st, scale_keep=None):
    """safetensors dict of an FP8 checkpoint -> float64 dense state dict (dequantised)."""
    out = {}
    for k, v in st.items():
        if k.endswith("_scale_inv") or k.endswith(".weight_scale"):
            continue
        if v.dtype == F8:
            s = st.get(k + "_scale_inv", st.get(k[: -len(".weight")] + ".weight_scale"))
            out[k] = dequantize_block(v, s.to(torch.float32))
        else:
            out[k] = v.to(torch.float64)
    return out


def run_logits(model, ids, hidden=False):
    model.eval()
    with torch.no_grad():
        res = model(input_ids=ids, output_hidden_states=hidden, use_cache=False)
    return res


def load_into(model, state, tied):
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (tied and m == "lm_head.weight") and "rotary" not in m]
    if missing or unexpected:
        raise RuntimeError(f"state dict mismatch: missing {missing} unexpected {unexpected}")
    if tied:
        model.tie_weights()


def hf_attempts(folder, ids):
    """transformers loading an FP8 folder itself: dequantize=True (CPU f64, else GPU f32), and native FP8 on GPU."""
    results, notes = {}, {}
    try:
        from transformers import FineGrainedFP8Config
    except Exception as e:  # noqa: BLE001
        notes["hf"] = f"no FineGrainedFP8Config: {e}"
        return results, notes
    for label, make_kwargs, dev in [
        ("hf_dequant_f64_cpu", lambda: dict(quantization_config=FineGrainedFP8Config(dequantize=True),
                                            dtype=torch.float64), "cpu"),
        ("hf_dequant_f32_cuda", lambda: dict(quantization_config=FineGrainedFP8Config(dequantize=True),
                                             dtype=torch.float32), "cuda"),
        ("hf_native_cuda", lambda: dict(dtype=torch.bfloat16), "cuda"),
    ]:
        if label.startswith("hf_dequant") and "logits_hf_dequant" in results:
            continue
        if dev == "cuda" and not torch.cuda.is_available():
            notes[label] = "no cuda"
            continue
        try:
            m = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager", device_map=dev,
                                                     **make_kwargs())
            lg = run_logits(m, ids.to(dev)).logits[0].detach().to("cpu")
            key = "logits_hf_native" if "native" in label else "logits_hf_dequant"
            results[key] = lg.to(torch.float64 if lg.dtype == torch.float64 else torch.float32).contiguous()
            notes[label] = "ok"
            types = sorted({type(mod).__name__ for mod in m.modules() if "Linear" in type(mod).__name__})
            notes[label + "_linear_types"] = ",".join(types)
            log(f"  {label}: ok, linear types {types}")
        except Exception as e:  # noqa: BLE001
            notes[label] = f"failed: {type(e).__name__}: {str(e)[:400]}"
            log(f"  {label}: {notes[label]}")
            traceback.print_exc(limit=3)
    return results, notes


def e4m3_tables(out_root):
    d = os.path.join(out_root, "fp8_e4m3")
    os.makedirs(d, exist_ok=True)
    codes = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    decoded = codes.view(F8).to(torch.float32)
    finite = sorted({float(v) for v in decoded.tolist() if not math.isnan(v) and v >= 0})
    vals = []
    vals += finite + [-v for v in finite]
    for a, b in zip(finite, finite[1:]):
        mid = (a + b) / 2
        vals += [mid, -mid]
        m32 = torch.tensor([mid], dtype=torch.float32)
        up = torch.nextafter(m32, torch.tensor([math.inf])).item()
        dn = torch.nextafter(m32, torch.tensor([-math.inf])).item()
        vals += [up, dn, -up, -dn]
    vals += [k * 2.0 ** -10 for k in range(0, 40)]
    vals += [2.0 ** -12, 2.0 ** -11, 1e-30, 1e-45, 2.0 ** -126, 2.0 ** -6 * 0.999, 2.0 ** -6 * 1.001]
    for v in [448.0, 449.0, 450.0, 455.99, 456.0, 456.01, 460.0, 463.99, 464.0, 464.01, 465.0, 470.0, 479.99,
              480.0, 481.0, 500.0, 512.0, 1000.0, 65504.0, 1e10, 3.4e38, math.inf]:
        vals += [v, -v]
    m448 = torch.tensor([448.0, 464.0], dtype=torch.float32)
    vals += torch.nextafter(m448, torch.tensor([math.inf, math.inf])).tolist()
    vals += torch.nextafter(m448, torch.tensor([-math.inf, -math.inf])).tolist()
    vals += [math.nan, 0.0, -0.0]
    g = torch.Generator().manual_seed(4242)
    r = torch.exp2(torch.rand(3000, generator=g, dtype=torch.float64) * 22 - 12)
    sgn = torch.where(torch.rand(3000, generator=g) < 0.5, -1.0, 1.0).to(torch.float64)
    vals += (r * sgn).tolist()
    sweep = torch.tensor(vals, dtype=torch.float64).to(torch.float32)
    out = {"codes": codes, "decoded": decoded.contiguous(), "sweep": sweep,
           "enc_raw": sweep.to(F8).view(torch.uint8).contiguous(),
           "enc_sat": sweep.clamp(-FP8_MAX, FP8_MAX).to(F8).view(torch.uint8).contiguous()}
    meta = {"generator": GENERATOR, "torch": torch.__version__}
    if torch.cuda.is_available():
        out["enc_cuda"] = sweep.cuda().to(F8).view(torch.uint8).cpu().contiguous()
        diff = int((out["enc_cuda"] != out["enc_raw"]).sum())
        meta["cuda_vs_cpu_encode_differences"] = str(diff)
        meta["cuda_device"] = torch.cuda.get_device_name(0)
    save_file(out, os.path.join(d, "e4m3.safetensors"), metadata=meta)
    log(f"e4m3: {len(sweep)} sweep values; {meta}")


def make_case(name, spec, out_root, seed):
    cfg = dict(spec["config"])
    cfg["torch_dtype"] = "bfloat16"
    src_dir = os.path.join(out_root, f"fp8_src_{name}")
    q_dir = os.path.join(out_root, f"fp8_{name}")
    for d in (src_dir, q_dir):
        os.makedirs(d, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    model = f64_model(cfg)
    randomize(model, gen)
    tied = cfg.get("tie_word_embeddings", False)
    state = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()
             if "rotary_emb" not in k and not (tied and k == "lm_head.weight")}
    with open(os.path.join(src_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    save_file(state, os.path.join(src_dir, "model.safetensors"), metadata={"format": "pt"})

    qstate = {}
    for k, v in state.items():
        if is_linear_weight(k):
            codes, scale = quantize_block(v, scale_dtype=spec["scale_dtype"])
            qstate[k] = codes
            qstate[k + "_scale_inv"] = scale
        else:
            qstate[k] = v
    qcfg = dict(cfg, quantization_config=QUANT_CONFIG)
    with open(os.path.join(q_dir, "config.json"), "w") as f:
        json.dump(qcfg, f, indent=2)
    save_file(qstate, os.path.join(q_dir, "model.safetensors"), metadata={"format": "pt"})

    # float64 reference on the dequantised weights
    ref = f64_model(cfg)
    load_into(ref, dense_f64_state(load_file(os.path.join(q_dir, "model.safetensors"))), tied)
    T = spec["seq"]
    ids = torch.randint(0, cfg["vocab_size"], (1, T), generator=gen)
    res = run_logits(ref, ids, hidden=True)
    golden = {"input_ids": ids[0].to(torch.int64).contiguous(), "logits": res.logits[0].contiguous()}
    for i, h in enumerate(res.hidden_states):
        golden[f"hidden.{i}"] = h[0].contiguous()
    # the unquantised source in float64, for the quality numbers
    src = f64_model(cfg)
    load_into(src, {k: v.to(torch.float64) for k, v in state.items()}, tied)
    golden["logits_source"] = run_logits(src, ids).logits[0].contiguous()
    hf, notes = hf_attempts(q_dir, ids)
    golden.update(hf)
    meta = {"generator": GENERATOR, "torch": torch.__version__, "transformers": transformers.__version__,
            "case": name, "reference": "transformers float64 eager on fp8.double() * weight_scale_inv",
            "scale_dtype": str(spec["scale_dtype"]),
            "rel_fp8_vs_source": f"{rel(golden['logits'], golden['logits_source']):.6g}"}
    for k in hf:
        meta[f"rel_{k}_vs_reference"] = f"{rel(hf[k], golden['logits']):.6g}"
    meta.update({f"note_{k}": v for k, v in notes.items()})
    save_file(golden, os.path.join(q_dir, "golden.safetensors"), metadata=meta)
    log(f"{name}: T={T} {json.dumps(meta, indent=1)}")


def check(folder, ids_file):
    ids = load_file(ids_file)["input_ids"].to(torch.int64)[None, :]
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    tied = cfg.get("tie_word_embeddings", False)
    st = load_file(os.path.join(folder, "model.safetensors"))
    ref = f64_model(cfg)
    load_into(ref, dense_f64_state(st), tied)
    out = {"input_ids": ids[0].contiguous(), "logits_f64_dequant": run_logits(ref, ids).logits[0].contiguous()}
    hf, notes = hf_attempts(folder, ids)
    out.update(hf)
    meta = {"generator": GENERATOR + " check", "torch": torch.__version__, "transformers": transformers.__version__}
    for k in hf:
        meta[f"rel_{k}_vs_f64_dequant"] = f"{rel(hf[k], out['logits_f64_dequant']):.6g}"
    meta.update({f"note_{k}": v for k, v in notes.items()})
    # the source of fp8_ours_<case> is tests/golden/<case>: re-quantise it here and compare bit for bit
    src_dir = os.path.join(os.path.dirname(os.path.abspath(folder)), os.path.basename(folder).replace("fp8_ours_", ""))
    if os.path.isdir(src_dir):
        src = load_file(os.path.join(src_dir, "model.safetensors"))
        code_diff = scale_diff = n = 0
        for k, v in src.items():
            if is_linear_weight(k):
                codes, scale = quantize_block(v)
                code_diff += int((codes.view(torch.uint8) != st[k].view(torch.uint8)).sum())
                scale_diff += int((scale.view(torch.int32) != st[k + "_scale_inv"].view(torch.int32)).sum())
                n += codes.numel()
        meta["torch_requantize_code_differences"] = f"{code_diff} of {n}"
        meta["torch_requantize_scale_differences"] = str(scale_diff)
    save_file(out, os.path.join(folder, "golden_check.safetensors"), metadata=meta)
    log(f"check {folder}: {json.dumps(meta, indent=1)}")


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "make"
    if mode == "make":
        out_root = sys.argv[2] if len(sys.argv) > 2 else "tests/golden"
        e4m3_tables(out_root)
        for i, (name, spec) in enumerate(CASES.items()):
            make_case(name, spec, out_root, seed=5000 + i)
    elif mode == "check":
        check(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"usage: {sys.argv[0]} make OUT_ROOT | check DIR IDS_FILE")


if __name__ == "__main__":
    main()
