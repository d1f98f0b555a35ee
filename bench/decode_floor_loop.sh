#!/usr/bin/env bash
# Decode against the bandwidth floor (issue 8): lmscope bench on fp8h / bf16 / int4h checkpoints (made as
# bench/cpu_bench.sh makes them; CKPT=folder) at 2 and 1 threads, three rounds, with the read bandwidth
# measured right before and after each run (the VM's bandwidth moves). Usage: bash bench/decode_floor_loop.sh [build-dir]
BUILD=${1:-build}
bin=$BUILD/lmscope
CKPT=${CKPT:-/tmp/cpuhelper-bench}
bw() { $BUILD/bench/bench_machine --benchmark_filter="BM_ReadBandwidth/$1/" --benchmark_format=json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); b=[x for x in d["benchmarks"] if "bytes_per_second" in x]; print("%.1f" % (b[0]["bytes_per_second"]/1e9))'; }
for round in 1 2 3; do
  for t in 2 1; do
    bw $t >/dev/null  # discarded: the first 2-thread reading after 1-thread runs was often ~45 GB/s, the next ~83
    for m in fp8h bf16 int4h; do
      b0=$(bw $t)
      r=$($bin bench --model $CKPT/$m --prompt-len 512 --gen-len 128 --threads $t --repeat 3 --json 2>/dev/null | tail -1 | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.1f" % d["decode_tok_s"])')
      b1=$(bw $t)
      echo "$(date +%H:%M:%S) round $round t=$t $m decode $r tok/s read $b0-$b1 GB/s"
    done
  done
done
