// How far is one decode GEMV kernel from what one kernel per linear can do? (issue 7, bench/cuda_notes.md)
//
//   cuda_gemv_probe [reps [format [shape]]]   format: bf16, fp8, awq or all; shape: a substring of
//                                           the shape names (for a profiler run of one kernel)
//
// For the decode linears of the Qwen3-0.6B and -8B shapes (bf16, batch 1), each kernel is captured
// `reps` times back to back in one CUDA graph, over enough copies of the weight that none is still in
// L2 when it comes round again, and the graph is timed with events (median of 5 launches after a
// warm-up): time per kernel, including the gap between graph nodes. Beside lmscope's GEMV
// (linear_gemv_cuda with PDL, as the decoder runs it, RMSNorm staged; "plain": x as is; "no-pdl"):
//   stream      a pure read of the same bytes (one wave, 16-byte loads, nothing but an XOR per load)
//   stream+pdl  the same, launched as programmatic dependent launches (each kernel's loads may start
//               while the previous kernel drains)
//   empty       an empty kernel of one block per SM: the node-to-node floor (and empty+pdl)
// then the same shapes in FP8-block and AWQ int4 (g = 128) against a PDL stream of their bytes,
// and the 0.6B layer chain (qkv, o, gate_up, down, 28 times, with PDL) as the decoder issues it: through
// the shared-memory GEMV (gemv_smem.cuh) as the decoder's default, the row GEMV with
// LMSCOPE_CUDA_GEMV_SMEM=0.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/errors.h"
#include "ops/cuda/ops_cuda.h"

using namespace lmscope;
using namespace lmscope::cuda;

namespace {

__global__ void empty_kernel(bool pdl) {
    if (pdl) {
        asm volatile("griddepcontrol.launch_dependents;");
        asm volatile("griddepcontrol.wait;" ::: "memory");
    }
}

// every 16-byte vector of p once; out written only when the XOR hits a value it never takes in practice
__global__ void stream_kernel(const uint4* p, int64_t n, unsigned* out, bool pdl) {
    if (pdl) asm volatile("griddepcontrol.launch_dependents;");
    unsigned acc = 0;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    for (; i + 3 * stride < n; i += 4 * stride) {
        uint4 v[4];
#pragma unroll
        for (int u = 0; u < 4; ++u)
            asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                         : "=r"(v[u].x), "=r"(v[u].y), "=r"(v[u].z), "=r"(v[u].w)
                         : "l"(p + i + u * stride));
#pragma unroll
        for (int u = 0; u < 4; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    for (; i < n; i += stride) acc ^= p[i].x ^ p[i].w;
    if (pdl) asm volatile("griddepcontrol.wait;" ::: "memory");
    if (acc == 0x9e3779b9u) out[blockIdx.x] = acc;
}

// microseconds per captured call: median of 5 graph launches of `reps` calls of body(i)
double time_graph(cudaStream_t st, int reps, const std::function<void(int)>& body) {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < reps; ++i) body(i);
    CUDA_CHECK(cudaStreamEndCapture(st, &g));
    CUDA_CHECK(cudaGraphInstantiate(&ge, g, 0));
    cudaEvent_t a, b;
    CUDA_CHECK(cudaEventCreate(&a));
    CUDA_CHECK(cudaEventCreate(&b));
    CUDA_CHECK(cudaGraphLaunch(ge, st));  // warm-up
    std::vector<double> t;
    for (int k = 0; k < 5; ++k) {
        CUDA_CHECK(cudaEventRecord(a, st));
        CUDA_CHECK(cudaGraphLaunch(ge, st));
        CUDA_CHECK(cudaEventRecord(b, st));
        CUDA_CHECK(cudaEventSynchronize(b));
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(1e3 * ms / reps);
    }
    std::sort(t.begin(), t.end());
    CUDA_CHECK(cudaGraphExecDestroy(ge));
    CUDA_CHECK(cudaGraphDestroy(g));
    CUDA_CHECK(cudaEventDestroy(a));
    CUDA_CHECK(cudaEventDestroy(b));
    return t[2];
}

struct ProbeShape {
    const char* name;
    int64_t out, in;
};

}  // namespace

int main(int argc, char** argv) {
    const int reps = argc > 1 ? std::atoi(argv[1]) : 200;
    const std::string only_format = argc > 2 ? argv[2] : "all", only_shape = argc > 3 ? argv[3] : "";
    const auto wanted = [&](const char* format, const char* shape) {
        return (only_format == "all" || only_format == format) && std::string(shape).find(only_shape) != std::string::npos;
    };
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    const int sms = prop.multiProcessorCount;
    std::printf("%s, %d SMs, L2 %d MiB; %d calls per graph, median of 5\n", prop.name, sms, prop.l2CacheSize >> 20, reps);
    cudaStream_t st;
    CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    const size_t pool_bytes = size_t{1} << 30;  // cycled through: far more than L2
    DeviceBuffer pool(pool_bytes), x(64 * 1024 * 4), y(64 * 1024 * 4), nw(64 * 1024 * 4), sink(4096 * 4);
    CUDA_CHECK(cudaMemset(pool.get(), 0, pool_bytes));
    std::vector<float> ones(64 * 1024, 1.0f);
    x.upload(ones.data(), ones.size() * 4);
    nw.upload(ones.data(), ones.size() * 4);
    auto* sinkp = sink.get<unsigned>();

    const double empty = time_graph(st, reps, [&](int) { launch_kernel(empty_kernel, dim3(sms), dim3(256), 0, st, false, false); });
    const double empty_pdl = time_graph(st, reps, [&](int) { launch_kernel(empty_kernel, dim3(sms), dim3(256), 0, st, true, true); });
    std::printf("empty kernel: %.2f us per node, with PDL %.2f us\n\n", empty, empty_pdl);

    const std::vector<ProbeShape> shapes = {{"0.6B qkv", 4096, 1024},    {"0.6B o", 1024, 2048},    {"0.6B gate_up", 6144, 1024},
                                       {"0.6B down", 1024, 3072},   {"8B qkv", 6144, 4096},    {"8B o", 4096, 4096},
                                       {"8B gate_up", 24576, 4096}, {"8B down", 4096, 12288}};
    std::printf("%-14s %9s %9s %9s %9s %9s %9s %9s %9s\n", "shape", "MB", "floor us", "gemv us", "plain us", "no-pdl us", "stream us",
                "+pdl us", "gemv/+pdl");
    const double bw = 3.0e12;  // nominal H100 read rate for the floor column; the stream column is the measured one
    for (const ProbeShape& s : shapes) {
        if (!wanted("bf16", s.name)) continue;
        const size_t bytes = static_cast<size_t>(s.out * s.in) * 2;
        const int copies = static_cast<int>(std::max<size_t>(1, pool_bytes / bytes));
        DeviceLinear w;
        w.dtype = DType::BF16;
        w.in = s.in;
        w.out = s.out;
        const auto wp = [&](int i) { return pool.get<char>() + static_cast<size_t>(i % copies) * bytes; };
        const auto gemv_run = [&](GemvIn mode, bool pdl) {
            mode.pdl = pdl;
            return time_graph(st, reps, [&](int i) {
                DeviceLinear wi = w;
                wi.weight = wp(i);
                linear_gemv_cuda(x.get<float>(), 1, wi, mode, y.get<float>(), s.out, false, st);
            });
        };
        const GemvIn rms{GemvInput::RmsNorm, nw.get<float>(), 1e-6f, 0, 0, {}};
        const double gemv = gemv_run(rms, true), plain = gemv_run({}, true), nopdl = gemv_run(rms, false);
        const auto stream_run = [&](bool pdl) {
            return time_graph(st, reps, [&](int i) {
                launch_kernel(stream_kernel, dim3(sms * 4), dim3(256), 0, st, pdl, reinterpret_cast<const uint4*>(wp(i)),
                              static_cast<int64_t>(bytes / 16), sinkp, pdl);
            });
        };
        const double sm = stream_run(false), sp = stream_run(true);
        std::printf("%-14s %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f\n", s.name, bytes / 1e6, bytes / bw * 1e6, gemv, plain,
                    nopdl, sm, sp, gemv / sp);
    }

    // the quantized formats on the same shapes: FP8 codes + block scales, AWQ qw + packed scale / zero,
    // both cycled through the pool as one allocation per copy (the small FP8 scale table is shared)
    DeviceBuffer fp8_scales(4096 * 4), fp8_rows(32768 * 4);
    CUDA_CHECK(cudaMemset(fp8_scales.get(), 0, 4096 * 4));
    CUDA_CHECK(cudaMemset(fp8_rows.get(), 0, 32768 * 4));
    std::printf("\n%-8s %-14s %9s %9s %9s %9s %9s %9s\n", "format", "shape", "MB", "floor us", "gemv us", "plain us", "+pdl us",
                "gemv/+pdl");
    for (const LinearFormat fmt : {LinearFormat::Fp8Block, LinearFormat::AwqInt4}) {
        for (const ProbeShape& s : shapes) {
            if (!wanted(fmt == LinearFormat::AwqInt4 ? "awq" : "fp8", s.name)) continue;
            DeviceLinear w;
            w.format = fmt;
            w.dtype = DType::BF16;
            w.in = s.in;
            w.out = s.out;
            w.block = 128;
            const size_t bytes = static_cast<size_t>(linear_read_bytes(w));
            const size_t weight_bytes = fmt == LinearFormat::AwqInt4 ? static_cast<size_t>(s.out * s.in / 2) : bytes;
            const size_t pitch = (bytes + 255) / 256 * 256;
            const int copies = static_cast<int>(std::max<size_t>(1, pool_bytes / pitch));
            const auto set = [&](DeviceLinear& wi, int i) {
                char* base = pool.get<char>() + static_cast<size_t>(i % copies) * pitch;
                wi.weight = base;
                if (fmt == LinearFormat::AwqInt4) {
                    wi.scale = base + weight_bytes;
                } else {
                    wi.scale = fp8_scales.get<float>();
                    wi.scale_row = fp8_rows.get<int32_t>();
                }
            };
            const auto gemv_run = [&](GemvIn mode) {
                mode.pdl = true;
                return time_graph(st, reps, [&](int i) {
                    DeviceLinear wi = w;
                    set(wi, i);
                    linear_gemv_cuda(x.get<float>(), 1, wi, mode, y.get<float>(), s.out, false, st);
                });
            };
            const GemvIn rms{GemvInput::RmsNorm, nw.get<float>(), 1e-6f, 0, 0, {}};
            const double gemv = gemv_run(rms), plain = gemv_run({});
            const double sp = time_graph(st, reps, [&](int i) {
                DeviceLinear wi = w;
                set(wi, i);
                launch_kernel(stream_kernel, dim3(sms * 4), dim3(256), 0, st, true, static_cast<const uint4*>(wi.weight),
                              static_cast<int64_t>(bytes / 16), sinkp, true);
            });
            std::printf("%-8s %-14s %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f\n", fmt == LinearFormat::AwqInt4 ? "awq" : "fp8", s.name,
                        bytes / 1e6, bytes / bw * 1e6, gemv, plain, sp, gemv / sp);
        }
    }

    // the 0.6B layer's four GEMVs in decoder order, 28 layers per graph (reps / 4 rounded)
    if (!wanted("bf16", "0.6B layer chain")) return 0;
    const ProbeShape layer[4] = {shapes[0], shapes[1], shapes[2], shapes[3]};
    size_t layer_bytes = 0;
    for (const ProbeShape& s : layer) layer_bytes += static_cast<size_t>(s.out * s.in) * 2;
    const int nl = static_cast<int>(std::min<size_t>(28, pool_bytes / layer_bytes));
    // as the decoder does: the weights through shared memory unless LMSCOPE_CUDA_GEMV_SMEM=0
    const bool smem = env_switch("LMSCOPE_CUDA_GEMV_SMEM", true);
    const double chain = time_graph(st, 4 * nl, [&](int i) {
        const ProbeShape& s = layer[i % 4];
        size_t off = static_cast<size_t>(i / 4) * layer_bytes;
        for (int k = 0; k < i % 4; ++k) off += static_cast<size_t>(layer[k].out * layer[k].in) * 2;
        DeviceLinear wi;
        wi.dtype = DType::BF16;
        wi.in = s.in;
        wi.out = s.out;
        wi.weight = pool.get<char>() + off;
        GemvIn mode = i % 2 == 0 ? GemvIn{GemvInput::RmsNorm, nw.get<float>(), 1e-6f, 0, 0, {}} : GemvIn{};
        mode.pdl = true;
        mode.smem = smem;
        linear_gemv_cuda(x.get<float>(), 1, wi, mode, y.get<float>(), s.out, i % 2 == 1, st);
    });
    std::printf(
        "\n0.6B layer chain (qkv, o, gate_up, down) x %d%s: %.2f us per GEMV, %.1f us per layer (%.1f us of "
        "bytes at 3 TB/s)\n",
        nl, smem ? ", weights through shared memory" : ", row GEMV", chain, 4 * chain,
        layer_bytes / bw * 1e6);
    CUDA_CHECK(cudaStreamDestroy(st));
    return 0;
}
