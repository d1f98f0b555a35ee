"""Table of bench/cuda_bench.sh results (JSON lines): ours per weight format, transformers (bf16), and
fractions of the floors. Columns: x = lmscope / transformers bf16 (same shape, same measure); vs bf16 =
lmscope this format / lmscope bf16; bytes = bf16 decode-step bytes / this format's (the speed-up a
purely bandwidth-bound decode would get); floor and % of floor (bytes / copy bandwidth for decode,
FLOPs / matmul rate for prefill)."""
import json
import sys

# the first file gives the peaks and lmscope rows; further files may add transformers rows (an earlier run
# on the same GPU model) for shapes the first one lacks
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for extra in sys.argv[2:]:
    have = {r["shape"] for r in rows if r.get("who") == "transformers"}
    rows += [r for r in (json.loads(l) for l in open(extra) if l.strip())
             if r.get("who") == "transformers" and r["shape"] not in have]
peaks = next(r for r in rows if "copy_bytes_per_s" in r)
bw, mm = peaks["copy_bytes_per_s"], peaks["bf16_matmul_flops"]
print(f"\nGPU {peaks['gpu']}: copy {bw / 1e12:.2f} TB/s, bf16 matmul {mm / 1e12:.0f} TFLOP/s (measured)")
print(f"{'shape':<11} {'format':<6} {'measure':<20} {'lmscope':>10} {'transf.':>9} {'x':>6} {'vs bf16':>8} "
      f"{'bytes':>6} {'floor':>9} {'%floor':>7}")


def measures(r, args):
    """(name, tok/s, floor tok/s, step bytes or None) of one lmscope result."""
    P, G, B = r["prompt_len"], r["gen_len"], r["batch"]
    out = []
    if G > 0:
        ctx = P + G / 2  # mean cache length read per step
        step = r["step_weight_bytes"] + B * ctx * r["kv_bytes_per_position"]
        tag = " no PDL" if args.endswith("nopdl") else " L2pf" if args.endswith(" l2") else ""
        out.append((f"decode b={B} P={P}{tag}", r["decode_tok_s"], bw / step * B, step, f"decode_b{B}_tok_s"))
    if B == 1 and not args.endswith(("pdl", " l2")):
        out.append((f"prefill P={P} b=1", r["prefill_tok_s"], P / (r["prefill_flops"] / mm), None, f"prefill{P}_tok_s"))
    return out


for shape in dict.fromkeys(r["shape"] for r in rows if "shape" in r):
    hf = next((r["r"] for r in rows if r.get("shape") == shape and r.get("who") == "transformers"), {})
    base = {}  # measure -> (tok/s, step bytes) of bf16
    for fmt in dict.fromkeys(r.get("format", "bf16") for r in rows if r.get("shape") == shape and r.get("who") == "lmscope"):
        ours = {r["args"]: r["r"] for r in rows
                if r.get("shape") == shape and r.get("who") == "lmscope" and r.get("format", "bf16") == fmt}
        for args, r in ours.items():
            for name, v, floor, step, hf_key in measures(r, args):
                if fmt == "bf16":
                    base[name] = (v, step)
                ref = hf.get(hf_key)
                b = base.get(name)
                vs = v / b[0] if b and fmt != "bf16" else 0
                by = b[1] / step if b and step and fmt != "bf16" else 0
                print(f"{shape:<11} {fmt:<6} {name:<20} {v:>10.1f} {(ref or 0):>9.1f} {(v / ref if ref else 0):>6.1f} "
                      f"{vs:>8.2f} {by:>6.2f} {floor:>9.0f} {100 * v / floor:>6.1f}%")
