"""Measured ceilings of the GPU for bench/cuda_bench.sh: device-to-device copy bandwidth (bytes read +
written per second) and the bf16 matmul rate (torch.matmul 8192^3, random data). Median of CUDA-event
timings after warm-up. Prints one JSON object."""
import json
import torch

def timed(fn, reps=20, warm=3):
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); b.synchronize()
        ts.append(a.elapsed_time(b) / 1e3)
    ts.sort()
    return ts[len(ts) // 2]

n = 1 << 30  # 2 GiB of bf16 each way
src = torch.randn(n, device="cuda", dtype=torch.bfloat16)
dst = torch.empty_like(src)
t = timed(lambda: dst.copy_(src))
copy_bw = 2 * src.numel() * 2 / t
del src, dst
m = 8192
a = torch.randn(m, m, device="cuda", dtype=torch.bfloat16)
b = torch.randn(m, m, device="cuda", dtype=torch.bfloat16)
tm = timed(lambda: torch.matmul(a, b), reps=10)
print(json.dumps({"gpu": torch.cuda.get_device_name(0), "copy_bytes_per_s": copy_bw,
                  "bf16_matmul_flops": 2 * m ** 3 / tm, "torch": torch.__version__}))
