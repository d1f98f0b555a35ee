"""Table of bench/cuda_bench.sh results (JSON lines): ours, transformers, and fractions of the floors."""
import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peaks = next(r for r in rows if "copy_bytes_per_s" in r)
bw, mm = peaks["copy_bytes_per_s"], peaks["bf16_matmul_flops"]
print(f"\nGPU {peaks['gpu']}: copy {bw / 1e12:.2f} TB/s, bf16 matmul {mm / 1e12:.0f} TFLOP/s (measured)")
print(f"{'shape':<11} {'measure':<22} {'lmscope':>10} {'transf.':>9} {'x':>6} {'floor':>9} {'%floor':>7}")
for shape in dict.fromkeys(r["shape"] for r in rows if "shape" in r):
    ours = {r["args"]: r["r"] for r in rows if r.get("shape") == shape and r.get("who") == "lmscope"}
    hf = next((r["r"] for r in rows if r.get("shape") == shape and r.get("who") == "transformers"), {})
    any_r = next(iter(ours.values()), None)
    if not any_r:
        continue
    wb, kvp = any_r["step_weight_bytes"], any_r["kv_bytes_per_position"]
    for args, r in ours.items():
        P, G, B = r["prompt_len"], r["gen_len"], r["batch"]
        if G > 0:
            ctx = P + G / 2  # mean cache length read per step
            floor = bw / (wb + B * ctx * kvp) * B  # tokens/s if every byte is read once per step
            ref = hf.get(f"decode_b{B}_tok_s")
            tag = " PDL" if args.endswith("pdl") else ""
            print(f"{shape:<11} {f'decode b={B} P={P}{tag}':<22} {r['decode_tok_s']:>10.1f} "
                  f"{(ref or 0):>9.1f} {(r['decode_tok_s'] / ref if ref else 0):>6.1f} {floor:>9.0f} "
                  f"{100 * r['decode_tok_s'] / floor:>6.1f}%")
        if B == 1 and not args.endswith("pdl"):
            floor = P / (r["prefill_flops"] / mm)
            ref = hf.get(f"prefill{P}_tok_s")
            print(f"{shape:<11} {f'prefill P={P} b=1':<22} {r['prefill_tok_s']:>10.0f} "
                  f"{(ref or 0):>9.0f} {(r['prefill_tok_s'] / ref if ref else 0):>6.1f} {floor:>9.0f} "
                  f"{100 * r['prefill_tok_s'] / floor:>6.1f}%")
