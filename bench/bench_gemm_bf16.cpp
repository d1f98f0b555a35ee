// Prefill linears of Qwen3-0.6B (512 tokens) with f32 activations against bf16 activations (ops.h,
// set_bf16_activation_mode), for BF16 weights and AWQ int4 (group 128, with the tiled copy as loaded),
// on 1 and 2 threads: the f32 GEMM (gemm.cpp) against the vdpbf16ps one (gemm_bf16.cpp), through
// linear_cpu / linear_awq_cpu, so x's rounding and the weight packing are counted.
// Shapes are lmscope's calls (q, k and v are separate linears): (out, in) = q (2048, 1024), k / v (1024, 1024),
// o (1024, 2048), gate / up (3072, 1024), down (1024, 3072). Counter: FLOP/s = 2 T out in / time.
// Run: build/bench/bench_gemm_bf16 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
//      --benchmark_enable_random_interleaving=true   (the machine is noisy: interleave the variants)
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "ops/cpu/simd.h"
#include "ops/ops.h"
#include "quant/awq.h"
#include "quant/awq_pack.h"

namespace {

using namespace lmscope;

constexpr int64_t kTokens = 512;

struct LinearShape {
    const char* name;
    int64_t out, in;
};
constexpr LinearShape kShapes[] = {{"q", 2048, 1024}, {"kv", 1024, 1024}, {"o", 1024, 2048}, {"gate_up", 3072, 1024}, {"down", 1024, 3072}};

std::vector<float> randn(int64_t n, uint32_t seed, float scale) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = d(rng);
    return v;
}

Linear bf16_linear(const LinearShape& s) {
    return Linear::dense("w", Tensor::from_f32({s.out, s.in}, randn(s.out * s.in, 1, 0.05f)).to(DType::BF16), Tensor());
}

Linear awq_linear(const LinearShape& s) {
    const int64_t g = 128;
    auto w = randn(s.out * s.in, 2, 0.05f);
    AwqQuantized qr;
    awq_pseudo_quantize(w.data(), s.out, s.in, g, AwqMath::F16, &qr);
    const AwqPacked pk = awq_pack(qr);
    return make_awq_linear("awq", pk.qweight, pk.qzeros, pk.scales, g);  // with the tiled copy, as loaded
}

void run(benchmark::State& state, const LinearShape& s, bool awq, bool bf16_act) {
    if (bf16_act && !simd::has_avx512_bf16()) state.SetLabel("no AVX512-BF16: the f32 fallback");
    ThreadPool::set_global_threads(static_cast<int>(state.range(0)));
    const Linear w = awq ? awq_linear(s) : bf16_linear(s);
    const auto x = randn(kTokens * s.in, 3, 1.0f);
    std::vector<float> y(static_cast<size_t>(kTokens * s.out));
    set_bf16_activation_mode(bf16_act);
    for (auto _ : state) {
        awq ? linear_awq_cpu(x.data(), kTokens, w, y.data()) : linear_cpu(x.data(), kTokens, w, y.data());
        benchmark::DoNotOptimize(y.data());
    }
    set_bf16_activation_mode(false);
    state.counters["FLOP/s"] = benchmark::Counter(static_cast<double>(state.iterations()) * 2.0 * kTokens * s.out * s.in,
                                                  benchmark::Counter::kIsRate);
}

}  // namespace

int main(int argc, char** argv) {
    for (const LinearShape& s : kShapes)
        for (bool awq : {false, true})
            for (bool bf16_act : {false, true}) {
                const std::string name = std::string(awq ? "awq_int4" : "bf16_w") + (bf16_act ? "/bf16_act/" : "/f32_act/") + s.name;
                benchmark::RegisterBenchmark(name.c_str(), [&s, awq, bf16_act](benchmark::State& st) { run(st, s, awq, bf16_act); })
                    ->Arg(1)
                    ->Arg(2)
                    ->ArgName("threads")
                    ->UseRealTime()
                    ->Unit(benchmark::kMillisecond);
            }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
