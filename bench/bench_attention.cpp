// Batch-1 decode attention (attention_cpu: key ranges on the pool, the AVX-512 kernel, the merge) at the
// Qwen3-0.6B shape (16 query / 8 kv heads of 128, f16 K / V), one query over S = 576 cached positions:
//   BM_DecodeAttention/T/C   T threads, C caches of 576 rows cycled: C = 1 reads from L2 / L3, C = 170
//                            (400 MB) from DRAM, as a model's 28 layers at a long context do
// Counters: seconds per cache row (4 KB of K and V) and the K / V bytes read per second. bench/cpu_notes.md v12.
// Run: build/bench/bench_attention --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "ops/ops.h"

namespace {

using namespace lmscope;

constexpr int64_t kPositions = 576, kHq = 16, kHkv = 8, kD = 128;

void BM_DecodeAttention(benchmark::State& state) {
    ThreadPool::set_global_threads(static_cast<int>(state.range(0)));
    const int64_t caches = state.range(1), rows = kPositions * kHkv * kD;
    std::mt19937 rng(1);
    std::normal_distribution<float> normal;
    std::vector<float> q(kHq * kD), out(kHq * kD), tmp(static_cast<size_t>(rows));
    for (float& x : q) x = normal(rng);
    std::vector<std::vector<uint16_t>> k(static_cast<size_t>(caches)), v(static_cast<size_t>(caches));
    for (int64_t c = 0; c < caches; ++c)
        for (auto* kv : {&k[static_cast<size_t>(c)], &v[static_cast<size_t>(c)]}) {
            for (float& x : tmp) x = normal(rng);
            kv->resize(tmp.size());
            to_f16_saturated(tmp.data(), rows, kv->data());
        }
    const AttentionShape shape{1, kPositions - 1, kHq, kHkv, kD, 0.088f};
    int64_t c = 0;
    for (auto _ : state) {
        attention_cpu(q.data(), k[static_cast<size_t>(c)].data(), v[static_cast<size_t>(c)].data(), shape, out.data());
        benchmark::DoNotOptimize(out.data());
        c = (c + 1) % caches;
    }
    const double calls = static_cast<double>(state.iterations());
    state.counters["s_per_row"] = benchmark::Counter(calls * kPositions, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    state.SetBytesProcessed(state.iterations() * kPositions * kHkv * kD * 2 * 2);
}
BENCHMARK(BM_DecodeAttention)->Args({1, 1})->Args({1, 170})->Args({2, 170})->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
