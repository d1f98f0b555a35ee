#!/usr/bin/env bash
# CUDA build, tests and benchmarks in ONE call of the GPU machine (issue 7; docs/cuda.md).
# The GPU machine has nvcc, cmake and ninja but none of lmscope's Debian libraries (fmt, pcre2,
# utf8proc, gtest, CLI11, nlohmann-json) and no network, so everything is built HERE and carried:
#
#   here:    tools/cuda_device_run.sh prepare      # build-cuda/ (Release, sm_90), then build-cuda/carry/:
#                                                  # stripped lmscope + lmscope_tests + the .so files they need
#   device:  run(command="bash tools/cuda_device_run.sh device", carry=["build-cuda/carry"], timeout_s=540)
#
# `device` runs: GPU info, the CUDA op test and the CUDA golden/model tests, compute-sanitizer
# memcheck on the op test (every 3rd case), then bench/cuda_bench.sh (ours vs transformers), and
# prints a short table last. Logs go to $OUT when set. BENCH_MODELS="qwen3-0.6b qwen3-8b" picks the
# benchmark shapes; SKIP_TESTS=1 / SKIP_BENCH=1 / SKIP_SANITIZER=1 skip parts.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CARRY=build-cuda/carry

prepare() {
    set -e
    cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DLMSCOPE_CUDA=ON >/dev/null
    cmake --build build-cuda -j "${JOBS:-2}" --target lmscope lmscope_tests
    rm -rf "$CARRY" && mkdir -p "$CARRY/lib"
    strip -o "$CARRY/lmscope" build-cuda/lmscope
    strip -o "$CARRY/lmscope_tests" build-cuda/lmscope_tests
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
    mkdir -p /tmp/lms
    for b in lmscope lmscope_tests; do
        printf '#!/bin/sh\nLD_LIBRARY_PATH="%s" exec "%s" "$@"\n' "$ldp" "$ROOT/$CARRY/$b" > /tmp/lms/$b
        chmod +x /tmp/lms/$b
    done
    export LMSCOPE_SOURCE_DIR="$ROOT"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
    local rc=0
    if [ "${SKIP_TESTS:-0}" != 1 ]; then
        echo "== CUDA tests"
        /tmp/lms/lmscope_tests --gtest_filter='*Cuda*' 2>&1 | tee "$out/cuda_tests.log" | grep -E '^\s+(cuda|[0-9]+ cases)|FAILED|OK \]|PASSED|SKIPPED|Failure|error' | head -80
        [ "${PIPESTATUS[0]}" = 0 ] || rc=1
        if [ "${SKIP_SANITIZER:-0}" != 1 ] && command -v compute-sanitizer >/dev/null; then
            echo "== compute-sanitizer memcheck (op test, every 3rd case)"
            LD_LIBRARY_PATH="$ldp" LMSCOPE_CUDA_TEST_STRIDE=3 timeout "${SANITIZER_TIMEOUT:-200}" compute-sanitizer --tool memcheck \
                --leak-check no "$CARRY/lmscope_tests" --gtest_filter='CudaOps.*' > "$out/memcheck.log" 2>&1
            echo "memcheck exit $?"; grep -E "ERROR SUMMARY|cases|Invalid" "$out/memcheck.log" | head -10
        fi
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
