#!/usr/bin/env bash
# CUDA build, tests and benchmarks in ONE call of the GPU machine (issue 7; docs/cuda.md).
# The GPU machine has nvcc, cmake and ninja but none of lmscope's Debian libraries (fmt, pcre2,
# utf8proc, gtest, CLI11, nlohmann-json) and no network, so everything is built HERE and carried:
#
#   here:    tools/cuda_device_run.sh prepare      # build-cuda/ (Release, sm_90), then build-cuda/carry/:
#                                                  # stripped, gzipped lmscope + lmscope_tests + the .so files
#   device:  run(command="bash tools/cuda_device_run.sh device", carry=["build-cuda/carry"], timeout_s=540)
#
# `device` runs: GPU info, the CUDA op test and the CUDA golden/model/quantized/trace tests,
# compute-sanitizer memcheck on the op test (every 3rd case), CLI checks (run --device cuda samples
# the same tokens as the CPU for a seed; trace --device cuda + trace diff), then bench/cuda_bench.sh
# (ours per weight format vs transformers), and prints a short table last. Logs go to $OUT when set.
# BENCH_MODELS="qwen3-0.6b qwen3-8b" picks the benchmark shapes, BENCH_FORMATS="bf16 fp8 awq" the
# weight formats; SKIP_TESTS=1 / SKIP_BENCH=1 / SKIP_SANITIZER=1 / SKIP_CLI=1 skip parts; PROFILE=1
# adds per-kernel GPU times (Nsight Compute) of a 0.6B decode and an 8B prefill when those exist.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CARRY=build-cuda/carry

prepare() {
    set -e
    cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DLMSCOPE_CUDA=ON >/dev/null
    cmake --build build-cuda -j "${JOBS:-2}" --target lmscope lmscope_tests cuda_gemv_probe
    rm -rf "$CARRY" && mkdir -p "$CARRY/lib"
    # stripped and gzipped: the working tree that travels is limited to 64 MiB
    for b in lmscope lmscope_tests; do
        strip -o "$CARRY/$b" build-cuda/$b && gzip -9 -f "$CARRY/$b"
    done
    strip -o "$CARRY/cuda_gemv_probe" build-cuda/bench/cuda_gemv_probe && gzip -9 -f "$CARRY/cuda_gemv_probe"
    # non-CUDA shared libraries (the device has the CUDA runtime and cuBLAS of its own toolkit)
    for bin in build-cuda/lmscope build-cuda/lmscope_tests; do
        ldd "$bin" | awk '/=>/ {print $3}' | grep -vE 'libcuda|libcublas|libcudart|libc\.so|libm\.so|libdl|libpthread|librt|ld-linux|libgcc_s|libstdc' || true
    done | sort -u | while read -r lib; do cp -L "$lib" "$CARRY/lib/"; done
    du -sh "$CARRY"; ls "$CARRY/lib"
}

device() {
    local out=${OUT:-/tmp/lmscope_out}
    mkdir -p "$out"
    local cudalib
    cudalib=$(dirname "$(find / -name 'libcublas.so.13' -not -path '*/proc/*' 2>/dev/null | head -1)")
    # the carried libraries are for our binaries only (python/torch keep their own environment)
    local ldp="$ROOT/$CARRY/lib:/usr/local/cuda/lib64:${cudalib}:${LD_LIBRARY_PATH:-}"
    mkdir -p /tmp/lms/bin
    for b in lmscope lmscope_tests cuda_gemv_probe; do
        gunzip -c "$CARRY/$b.gz" > /tmp/lms/bin/$b && chmod +x /tmp/lms/bin/$b
        printf '#!/bin/sh\nLD_LIBRARY_PATH="%s" exec "%s" "$@"\n' "$ldp" "/tmp/lms/bin/$b" > /tmp/lms/$b
        chmod +x /tmp/lms/$b
    done
    export LMSCOPE_SOURCE_DIR="$ROOT"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
    df -h /tmp | tail -1
    local rc=0
    # checkpoints first: the AWQ quantisations run on one CPU core while the tests use the GPU
    [ "${SKIP_BENCH:-0}" != 1 ] && bash bench/cuda_bench.sh --prepare /tmp/lms/lmscope "$out"
    if [ "${SKIP_TESTS:-0}" != 1 ]; then
        echo "== CUDA tests"
        /tmp/lms/lmscope_tests --gtest_filter='*Cuda*' 2>&1 | tee "$out/cuda_tests.log" | grep -E '^\s+(cuda|[0-9]+ cases)|FAILED|OK \]|PASSED|SKIPPED|Failure|error|tolerance|threw|lacks' | head -150
        [ "${PIPESTATUS[0]}" = 0 ] || rc=1
        if [ "${SKIP_SANITIZER:-0}" != 1 ] && command -v compute-sanitizer >/dev/null; then
            echo "== compute-sanitizer memcheck (op test, every ${SANITIZER_STRIDE:-3}th case)"
            LD_LIBRARY_PATH="$ldp" LMSCOPE_CUDA_TEST_STRIDE=${SANITIZER_STRIDE:-3} timeout "${SANITIZER_TIMEOUT:-200}" compute-sanitizer --tool memcheck \
                --leak-check no /tmp/lms/bin/lmscope_tests --gtest_filter='CudaOps.*' > "$out/memcheck.log" 2>&1
            echo "memcheck exit $?"; grep -E "ERROR SUMMARY|cases|Invalid" "$out/memcheck.log" | head -10
        fi
    fi
    if [ "${SKIP_CLI:-0}" != 1 ]; then
        echo "== CLI: run --device cuda samples as the CPU (same seed, same draws)"
        local g=tests/golden/qwen3_gqa args cpu gpu
        for args in "--temperature 0.8 --seed 7" "--temperature 1.0 --top-k 20 --top-p 0.9 --seed 3" "--temperature 0"; do
            cpu=$(/tmp/lms/lmscope run --model $g --ids 1,5,9,13,17 --max-new-tokens 32 $args 2>/dev/null)
            gpu=$(/tmp/lms/lmscope run --model $g --ids 1,5,9,13,17 --max-new-tokens 32 $args --device cuda 2>"$out/run_cuda.log")
            if [ -n "$cpu" ] && [ "$cpu" = "$gpu" ]; then echo "same 32 tokens: $args"; else echo "DIFFERENT ($args): cpu [$cpu] cuda [$gpu]"; tail -2 "$out/run_cuda.log"; rc=1; fi
        done
        echo "== CLI: trace --device cuda, trace diff against the CPU trace"
        local ids=3,1,4,1,5,9,2,6,5,3,5
        /tmp/lms/lmscope trace --model tests/golden/qwen3_gqa_bf16 --ids $ids --format json --out "$out/trace_cpu.json" >/dev/null 2>&1
        /tmp/lms/lmscope trace --model tests/golden/qwen3_gqa_bf16 --ids $ids --format json --out "$out/trace_cuda_exact.json" --device cuda --exact >/dev/null 2>&1
        /tmp/lms/lmscope trace --model tests/golden/qwen3_gqa_bf16 --ids $ids --format json --out "$out/trace_cuda.json" --device cuda >/dev/null 2>&1
        /tmp/lms/lmscope trace --model tests/golden/qwen3_gqa_bf16 --ids $ids --format term --device cuda --filter 'model.layers.1.mlp.*' 2>&1 | tail -4
        echo "-- cpu vs cuda --exact"; /tmp/lms/lmscope trace diff "$out/trace_cpu.json" "$out/trace_cuda_exact.json" --threshold 1e-4 2>&1 | head -12
        echo "-- cpu vs cuda (bf16 GEMMs)"; /tmp/lms/lmscope trace diff "$out/trace_cpu.json" "$out/trace_cuda.json" 2>&1 | head -14
    fi
    if [ "${PROFILE:-0}" = 1 ] && command -v ncu >/dev/null; then  # per-kernel GPU time (bench/cuda_profile.py)
        local m06=/tmp/lmscope_bench_qwen3-0.6b m8=/tmp/lmscope_bench_qwen3-8b
        if [ -f $m06/config.json ]; then
            for pf in ${PROFILE_L2:-0}; do
                echo "== profile: qwen3-0.6b bf16, prefill 512 + 8 decode steps, LMSCOPE_CUDA_L2_PREFETCH_MB=$pf"
                export LMSCOPE_CUDA_L2_PREFETCH_MB=$pf
                timeout 300 python3 bench/cuda_profile.py /tmp/lms/lmscope -- bench --device cuda --model $m06 \
                    --prompt-len 512 --gen-len 8 --repeat 1 > "$out/profile_06b_l2$pf.txt" 2>&1; head -24 "$out/profile_06b_l2$pf.txt"
            done
            unset LMSCOPE_CUDA_L2_PREFETCH_MB
        fi
        # PROFILE_KERNELS="regex ...": one decode-step launch of each, with Nsight Compute's sections
        for k in ${PROFILE_KERNELS:-}; do
            [ -f $m06/config.json ] || break
            ncu --clock-control none --cache-control none -k "regex:$k" --launch-skip 300 --launch-count 1 \
                --section LaunchStats --section Occupancy --section SpeedOfLight --section WarpStateStats \
                --section SchedulerStats --section MemoryWorkloadAnalysis --section SourceCounters \
                /tmp/lms/lmscope bench --device cuda --model $m06 --prompt-len 512 --gen-len 8 --repeat 1 \
                > "$out/ncu_$k.txt" 2>&1
            echo "== ncu $k"; grep -E "Duration|Elapsed Cycles|SM Frequency|Registers Per|Achieved Occupancy|Warp Cycles Per Issued|Issued Warp Per|stall|Stall" "$out/ncu_$k.txt" | head -24
        done
        if [ -f $m8/config.json ] && [ "${PROFILE_8B:-1}" = 1 ]; then
            echo "== profile: qwen3-8b bf16, prefill 2048"
            timeout 300 python3 bench/cuda_profile.py /tmp/lms/lmscope -- bench --device cuda --model $m8 \
                --prompt-len 2048 --gen-len 0 --repeat 1 > "$out/profile_8b_prefill.txt" 2>&1; head -24 "$out/profile_8b_prefill.txt"
        fi
    fi
    if [ "${PROBE:-0}" = 1 ]; then  # decode GEMV vs a pure read, one kernel per graph node
        echo "== cuda_gemv_probe"; /tmp/lms/cuda_gemv_probe | tee "$out/gemv_probe.txt"
    fi
    if [ "${SKIP_BENCH:-0}" != 1 ]; then
        bash bench/cuda_bench.sh /tmp/lms/lmscope "$out"
    fi
    return $rc
}

case "${1:-}" in
    prepare) prepare ;;
    device) device ;;
    *) echo "usage: $0 prepare|device" >&2; exit 2 ;;
esac
