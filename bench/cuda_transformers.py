"""transformers on the same checkpoint folder, for bench/cuda_bench.sh: bf16, eager attention, dynamic
cache, greedy. Prefill = one forward of P random tokens (median of 5, CUDA events); decode = (time of
generate(N+1 new tokens) - time of generate(1 new token)) / N, batch 1 and batch B. Prints JSON."""
import json
import sys
import time

import torch
from transformers import AutoModelForCausalLM

model_dir = sys.argv[1]
gen = int(sys.argv[2]) if len(sys.argv) > 2 else 32
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 32
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, attn_implementation="eager").cuda().eval()
torch.manual_seed(0)
res = {"transformers_version": __import__("transformers").__version__}

def ev_time(fn, reps=5):
    fn()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); b.synchronize()
        ts.append(a.elapsed_time(b) / 1e3)
    ts.sort()
    return ts[len(ts) // 2]

with torch.no_grad():
    for P in (512, 2048):
        ids = torch.randint(0, 32000, (1, P), device="cuda")
        t = ev_time(lambda: model(ids))
        res[f"prefill{P}_tok_s"] = P / t

    def gen_time(B, n):
        ids = torch.randint(0, 32000, (B, 512), device="cuda")
        kw = dict(do_sample=False, max_new_tokens=n, min_new_tokens=n, pad_token_id=0)
        model.generate(ids, **kw)
        torch.cuda.synchronize(); t0 = time.perf_counter()
        model.generate(ids, **kw)
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    for B in (1, batch):
        t1 = gen_time(B, 1)
        tn = gen_time(B, gen + 1)
        res[f"decode_b{B}_tok_s"] = B * gen / (tn - t1)
print(json.dumps(res))
