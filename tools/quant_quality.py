#!/usr/bin/env python3
"""Quality report of lmscope's quantizers (issues 5 and 6), reproducible with one command.

Usage: tools/quant_quality.py [--lmscope build/lmscope] [--trained runs/qwen3-d4] [--out bench/quant_quality]

1. The Brown-trained Qwen3 (`lmscope train --arch qwen3 ...`): quantized to FP8 block, int4 RTN and int4 AWQ
   (group 128), each evaluated on Brown's validation split with `lmscope eval --json` (FP8 also with
   --fp8-activations).
2. The golden Hugging Face checkpoints of tests/golden (random weights, transformers-verified): the same
   formats (AWQ/RTN group = the largest power of two <= 128 dividing every in_features, since these tiny
   models have widths like 64 and 96), logits of a fixed prompt compared with the source's: relative
   error ||q - src|| / ||src|| and top-1 agreement.
3. Writes OUT.json (every number) and OUT.svg (perplexity increase per format, and AWQ vs RTN per-linear
   output MSE from the AWQ report). Standard library only: no numpy on the CPU machine.
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys

GOLDEN = ["qwen3_gqa", "qwen3_tied", "qwen2_bias", "llama3_scaled", "qwen3_gqa_bf16"]
PROMPT = "1,17,42,7,99,3,150,18,5,61,12,140,33,8,77,2"  # ids < 200, the smallest golden vocab
VERSION = 1


def sh(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"quant_quality: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr.strip()}")
    return r.stdout


def read_logits(path):
    """tensor 'logits' (F32 [T, V]) of a safetensors file -> list of rows."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        info = header["logits"]
        if info["dtype"] != "F32":
            sys.exit(f"{path}: logits are {info['dtype']}, expected F32")
        t, v = info["shape"]
        b, e = info["data_offsets"]
        f.seek(8 + n + b)
        flat = struct.unpack(f"<{(e - b) // 4}f", f.read(e - b))
    return [flat[i * v:(i + 1) * v] for i in range(t)]


def compare(src, q):
    num = sum((a - b) ** 2 for ra, rb in zip(src, q) for a, b in zip(ra, rb))
    den = sum(a * a for ra in src for a in ra)
    top1 = sum(max(range(len(ra)), key=ra.__getitem__) == max(range(len(rb)), key=rb.__getitem__)
               for ra, rb in zip(src, q)) / len(src)
    return math.sqrt(num / den), top1


def group_for(cfg):
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    hd = cfg.get("head_dim") or h // cfg["num_attention_heads"]
    dims = [h, i, hd * cfg["num_attention_heads"]]
    g = 128
    while any(d % g for d in dims):
        g //= 2
    return g


def byte_tokenizer(path):
    """A byte-level BPE tokenizer.json with no merges: token id = byte value (ids 0..255), for calibrating
    the golden models (vocab >= 256, no tokenizer of their own) on real text."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = {}, 0
    for b in range(256):
        if b in keep:
            cs[b] = chr(b)
        else:
            cs[b] = chr(256 + n)
            n += 1
    tok = {"version": "1.0", "added_tokens": [], "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
           "post_processor": None, "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                                               "use_regex": True},
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                     "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                     "vocab": {cs[b]: b for b in range(256)}, "merges": []}}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)


def quantize_all(lms, src, work, group, tokenizer=None, with_awq=True):
    outs = {}
    for name, args in [("fp8", ["--fp8"]), ("rtn", ["--awq", "--method", "rtn"]), ("awq", ["--awq"])]:
        if name == "awq" and not with_awq:
            continue
        dst = os.path.join(work, name)
        if not os.path.isdir(dst):
            extra = ["--group-size", str(group)] if name != "fp8" else []
            if tokenizer and name == "awq":
                extra += ["--tokenizer", tokenizer, "--calib-samples", "32", "--calib-len", "128"]
            sh([lms, "quantize", *args, *extra, src, dst])
        outs[name] = dst
    return outs


def trained_report(lms, model, work):
    outs = quantize_all(lms, model, work, 128)
    rows = {}
    for label, path, extra in [("source", model, []), ("fp8", outs["fp8"], []),
                               ("fp8_act", outs["fp8"], ["--fp8-activations"]),
                               ("rtn", outs["rtn"], []), ("awq", outs["awq"], [])]:
        rows[label] = json.loads(sh([lms, "eval", "--model", path, "--json", *extra]))
        print(f"  {label:8s} loss {rows[label]['loss']:.5f} ppl {rows[label]['ppl']:.3f} bpb {rows[label]['bpb']:.5f}")
    with open(os.path.join(outs["awq"], "awq", "report.json"), encoding="utf-8") as f:
        rows["awq_report"] = json.load(f)
    return rows


def golden_report(lms, root, work):
    res = {}
    for g in GOLDEN:
        src = os.path.join(root, "tests", "golden", g)
        with open(os.path.join(src, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        group = group_for(cfg)
        # calibration text goes through a 256-token byte tokenizer: a smaller vocabulary cannot take it
        with_awq = cfg["vocab_size"] >= 256
        os.makedirs(os.path.join(work, g), exist_ok=True)
        tok = os.path.join(work, g, "bytes_tokenizer.json")
        byte_tokenizer(tok)
        outs = quantize_all(lms, src, os.path.join(work, g), group, tok, with_awq)
        ref_path = os.path.join(work, g, "src_logits.safetensors")
        sh([lms, "run", "--model", src, "--ids", PROMPT, "--max-new-tokens", "0", "--save-logits", ref_path])
        ref = read_logits(ref_path)
        res[g] = {"group_size": group}
        for name, path in outs.items():
            lp = os.path.join(work, g, f"{name}_logits.safetensors")
            sh([lms, "run", "--model", path, "--ids", PROMPT, "--max-new-tokens", "0", "--save-logits", lp])
            err, top1 = compare(ref, read_logits(lp))
            res[g][name] = {"rel_err": err, "top1": top1}
        print(f"  {g:16s} group {group:3d}  " + "  ".join(
            f"{k} {v['rel_err']:.4f}/{v['top1']:.2f}" for k, v in res[g].items() if isinstance(v, dict)))
    return res


def svg(out, trained):
    """Two panels: perplexity increase over the source per format; per-linear output MSE AWQ vs RTN."""
    W, H = 900, 380
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
             f'<rect width="{W}" height="{H}" fill="white"/>']
    # panel 1: ppl increase
    src = trained["source"]["ppl"]
    bars = [(k, trained[k]["ppl"] - src) for k in ["fp8", "fp8_act", "rtn", "awq"]]
    x0, y0, pw, ph = 60, 40, 260, 280
    top = max(v for _, v in bars) * 1.15 or 1
    parts.append(f'<text x="{x0}" y="24">perplexity increase over the source (ppl {src:.2f}), Brown val</text>')
    colors = {"fp8": "#2ca02c", "fp8_act": "#98df8a", "rtn": "#d62728", "awq": "#1f77b4"}
    bw = pw / len(bars)
    for i, (k, v) in enumerate(bars):
        h = ph * max(v, 0) / top
        x = x0 + i * bw + 8
        parts.append(f'<rect x="{x:.1f}" y="{y0 + ph - h:.1f}" width="{bw - 16:.1f}" height="{h:.1f}" fill="{colors[k]}"/>')
        parts.append(f'<text x="{x + (bw - 16) / 2:.1f}" y="{y0 + ph - h - 4:.1f}" text-anchor="middle">+{v:.3f}</text>')
        parts.append(f'<text x="{x + (bw - 16) / 2:.1f}" y="{y0 + ph + 16:.1f}" text-anchor="middle">{k}</text>')
    parts.append(f'<line x1="{x0}" x2="{x0 + pw}" y1="{y0 + ph}" y2="{y0 + ph}" stroke="#333"/>')
    # panel 2: per-linear MSE ratio RTN / AWQ (log scale around 1)
    lin = trained["awq_report"]["linears"]
    x1, pw2 = 400, 470
    ratios = [l["rtn_over_awq"] for l in lin]
    lo, hi = min(min(ratios), 0.9), max(max(ratios), 1.1)
    ly = lambda r: y0 + ph * (1 - (math.log(r) - math.log(lo)) / (math.log(hi) - math.log(lo)))
    parts.append(f'<text x="{x1}" y="24">per-linear output MSE, RTN / AWQ (above 1: AWQ better), calibration set</text>')
    parts.append(f'<line x1="{x1}" x2="{x1 + pw2}" y1="{ly(1):.1f}" y2="{ly(1):.1f}" stroke="#333"/>')
    for r in [lo, 1.0, hi]:
        parts.append(f'<text x="{x1 - 4}" y="{ly(r) + 4:.1f}" text-anchor="end">{r:.2f}</text>')
    bw2 = pw2 / len(lin)
    for i, l in enumerate(lin):
        r = l["rtn_over_awq"]
        ya, yb = sorted([ly(1), ly(r)])
        c = "#1f77b4" if r >= 1 else "#d62728"
        parts.append(f'<rect x="{x1 + i * bw2 + 1:.1f}" y="{ya:.1f}" width="{bw2 - 2:.1f}" height="{max(yb - ya, 0.5):.1f}" fill="{c}">'
                     f'<title>{l["name"]}: RTN {l["mse_rtn"]:.4g} AWQ {l["mse_awq"]:.4g}</title></rect>')
    s = trained["awq_report"]["summary"]
    parts.append(f'<text x="{x1}" y="{y0 + ph + 16}">{s["linears"]} linears (layer order q k v o gate up down); '
                 f'sum RTN/AWQ {s["rtn_over_awq"]:.2f}x, AWQ better on {s["linears_awq_better"]}</text>')
    parts.append("</svg>")
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lmscope", default="build/lmscope")
    ap.add_argument("--trained", default="runs/qwen3-d4")
    ap.add_argument("--out", default="bench/quant_quality")
    ap.add_argument("--work", default="runs/quant_quality")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isdir(a.trained):
        sys.exit(f"{a.trained}: no trained model; make it with: lmscope train --arch qwen3 --depth 4 --seq-len 1024 "
                 f"--batch 1 --steps 1500 --eval-every 100 --out {a.trained}")
    os.makedirs(a.work, exist_ok=True)
    print(f"trained model {a.trained}:")
    trained = trained_report(a.lmscope, a.trained, os.path.join(a.work, "trained"))
    print("golden checkpoints (logits rel err / top-1 agreement vs source):")
    golden = golden_report(a.lmscope, root, a.work)
    with open(a.out + ".json", "w", encoding="utf-8") as f:
        json.dump({"version": VERSION, "trained_model": a.trained, "trained": trained, "golden": golden}, f, indent=1)
    svg(a.out + ".svg", trained)
    print(f"wrote {a.out}.json, {a.out}.svg")


if __name__ == "__main__":
    main()
