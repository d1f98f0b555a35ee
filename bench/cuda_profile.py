#!/usr/bin/env python3
"""Where the GPU time of one lmscope run goes, per kernel (Nsight Compute, clocks left alone).

    python3 bench/cuda_profile.py LMSCOPE_BINARY -- bench --device cuda --model M --prompt-len 512 --gen-len 4

Runs the command under `ncu --metrics gpu__time_duration.sum` (every kernel, CUDA-graph nodes one by
one; ncu serialises kernels, so the launch gaps of a real run are not in these figures: compare the
total with the run's own time) and prints each kernel's count, mean and total time, largest first.
Issue 7's notes (bench/cuda_notes.md) use it to split a decode step and a prefill into their parts.
"""
import csv
import io
import subprocess
import sys
from collections import defaultdict


def main() -> int:
    if "--" not in sys.argv or len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    split = sys.argv.index("--")
    binary, args = sys.argv[1], sys.argv[split + 1:]
    cmd = ["ncu", "--clock-control", "none", "--cache-control", "none", "--metrics", "gpu__time_duration.sum",
           "--csv", "--print-units", "base", "--print-kernel-base", "demangled", binary] + args
    p = subprocess.run(cmd, capture_output=True, text=True)
    text = p.stdout
    start = text.find('"ID"')
    if p.returncode != 0 or start < 0:
        print(f"ncu failed (exit {p.returncode}): {p.stderr[-2000:]}{text[-1000:]}", file=sys.stderr)
        return 1
    per = defaultdict(lambda: [0, 0.0])
    for row in csv.DictReader(io.StringIO(text[start:])):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        name = row["Kernel Name"]
        # templates make names long: keep the function and its first template arguments
        short = name if len(name) < 110 else name[:107] + "..."
        ns = float(row["Metric Value"].replace(",", ""))
        per[short][0] += 1
        per[short][1] += ns
    total = sum(v[1] for v in per.values())
    print(f"{'kernel':<110} {'count':>6} {'mean us':>9} {'total ms':>9} {'share':>6}")
    for name, (n, ns) in sorted(per.items(), key=lambda kv: -kv[1][1]):
        print(f"{name:<110} {n:>6} {ns / n / 1e3:>9.2f} {ns / 1e6:>9.3f} {100 * ns / total:>5.1f}%")
    print(f"{'all kernels':<110} {sum(v[0] for v in per.values()):>6} {'':>9} {total / 1e6:>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
