// The machine's two ceilings, measured the way lmscope's kernels would meet them:
//   BM_ReadBandwidth  bytes/s streaming a 1 GiB buffer (sum of floats, AVX-512/AVX2 loads) with N threads
//   BM_FmaPeak        f32 FLOP/s of independent FMA chains in registers with N threads
//   BM_Bf16DotPeak    the same with vdpbf16ps (bf16 pairs into f32), where the CPU has AVX512-BF16
//   BM_Gemm           lmscope's blocked GEMM (the prefill shape of Qwen3-0.6B's MLP: 512 x 3072 x 1024)
// Run: build/bench/bench_machine --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <cstring>
#include <thread>
#include <vector>

#include "core/tensor.h"
#include "core/thread_pool.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/simd.h"

namespace {

using lmscope::ThreadPool;

__attribute__((target("avx512f"))) float sum_avx512(const float* p, int64_t n) {
    __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps(), c = _mm512_setzero_ps(), d = _mm512_setzero_ps();
    for (int64_t i = 0; i + 64 <= n; i += 64) {
        a = _mm512_add_ps(a, _mm512_load_ps(p + i));
        b = _mm512_add_ps(b, _mm512_load_ps(p + i + 16));
        c = _mm512_add_ps(c, _mm512_load_ps(p + i + 32));
        d = _mm512_add_ps(d, _mm512_load_ps(p + i + 48));
    }
    alignas(64) float l[16];
    _mm512_store_ps(l, _mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
    float s = 0;
    for (float x : l) s += x;
    return s;
}

void BM_ReadBandwidth(benchmark::State& state) {
    if (!__builtin_cpu_supports("avx512f")) {
        state.SkipWithError("needs AVX-512");
        return;
    }
    const int threads = static_cast<int>(state.range(0));
    ThreadPool::set_global_threads(threads);
    const int64_t n = (int64_t(1) << 30) / 4;
    auto buf = lmscope::Tensor::empty(lmscope::DType::F32, {n});
    float* p = buf.data_mut<float>();
    ThreadPool::global().parallel_for(n, 1 << 16, [&](int64_t a, int64_t b, int) {
        for (int64_t i = a; i < b; ++i) p[i] = 1.0f;
    });
    for (auto _ : state) {
        std::vector<float> partial(static_cast<size_t>(threads), 0.0f);
        ThreadPool::global().parallel_for(n, 1 << 16, [&](int64_t a, int64_t b, int t) {
            partial[static_cast<size_t>(t)] += sum_avx512(p + a, b - a);
        });
        benchmark::DoNotOptimize(partial.data());
    }
    state.SetBytesProcessed(state.iterations() * n * 4);
}
BENCHMARK(BM_ReadBandwidth)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

// lane 0 of the sum of the 12 chains (keeps them live)
__attribute__((target("avx512f"))) float lane0_sum(const __m512 (&acc)[12]) {
    __m512 s = acc[0];
    for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, acc[i]);
    alignas(64) float l[16];
    _mm512_store_ps(l, s);
    return l[0];
}

__attribute__((target("avx512f"))) float fma_chains(int64_t iters) {
    __m512 acc[12];
    const __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-7f);
    for (auto& x : acc) x = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 12
        for (auto& x : acc) x = _mm512_fmadd_ps(x, m, a);
    return lane0_sum(acc);
}

// runs `chains` (12 independent accumulator chains, `iters` steps) on each of N threads
void run_peak(benchmark::State& state, bool supported, const char* needs, float (*chains)(int64_t), double flop_per_step) {
    if (!supported) {
        state.SkipWithError(needs);
        return;
    }
    const int threads = static_cast<int>(state.range(0));
    ThreadPool::set_global_threads(threads);
    const int64_t iters = 10'000'000;
    for (auto _ : state) {
        ThreadPool::global().parallel_for(threads, 1, [&](int64_t a, int64_t b, int) {
            for (int64_t t = a; t < b; ++t) benchmark::DoNotOptimize(chains(iters));
        });
    }
    state.counters["FLOP/s"] = benchmark::Counter(static_cast<double>(state.iterations()) * threads * iters * 12 * flop_per_step,
                                                  benchmark::Counter::kIsRate);
}

// 16 lanes x 2 flops per FMA
void BM_FmaPeak(benchmark::State& state) {
    run_peak(state, __builtin_cpu_supports("avx512f"), "needs AVX-512", fma_chains, 16 * 2);
}
BENCHMARK(BM_FmaPeak)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

// the bf16 dot-product ceiling (vdpbf16ps: 16 lanes x 2 products a lane), what a GEMM on bf16
// activations could reach; llama.cpp's BF16 matmul uses it (bench/RESULTS.md, side by side)
__attribute__((target("avx512f,avx512bf16"))) float dpbf16_chains(int64_t iters) {
    __m512 acc[12];
    const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x33d633d6);  // 1.0, ~1e-7
    for (auto& x : acc) x = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 12
        for (auto& x : acc) x = _mm512_dpbf16_ps(x, a, b);
    return lane0_sum(acc);
}

// 16 lanes x 2 products x 2 flops per vdpbf16ps
void BM_Bf16DotPeak(benchmark::State& state) {
    run_peak(state, __builtin_cpu_supports("avx512bf16"), "needs AVX512-BF16", dpbf16_chains, 16 * 4);
}
BENCHMARK(BM_Bf16DotPeak)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_Gemm(benchmark::State& state) {
    const int threads = static_cast<int>(state.range(0));
    ThreadPool::set_global_threads(threads);
    const int64_t M = 512, N = 3072, K = 1024;
    std::vector<float> a(static_cast<size_t>(M * K), 0.5f), c(static_cast<size_t>(M * N));
    auto w = lmscope::Tensor::zeros(lmscope::DType::BF16, {N, K});
    for (int64_t i = 0; i < N * K; ++i) w.data_mut<uint16_t>()[i] = lmscope::f32_to_bf16(0.01f * static_cast<float>(i % 7));
    lmscope::GemmArgs g;
    g.M = M; g.N = N; g.K = K;
    g.a = a.data(); g.lda = K;
    g.b = w.raw(); g.b_dtype = lmscope::DType::BF16; g.ldb = K; g.b_trans = true;
    g.c = c.data(); g.ldc = N;
    for (auto _ : state) lmscope::gemm_cpu(g);
    state.counters["FLOP/s"] = benchmark::Counter(static_cast<double>(state.iterations()) * 2.0 * M * N * K,
                                                  benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Gemm)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
