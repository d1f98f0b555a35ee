// Cost of tracing: the decoder forward with no observer, with a recorder whose filter wants nothing
// (names are formatted and matched, nothing computed), with every tensor recorded (statistics only),
// and with attention scores/probabilities materialised too; plus compute_stats throughput.
// Model: Qwen3-0.6B's layer shapes (hidden 1024, 16/8 heads, head_dim 128, MLP 3072) with 4 layers and
// a 32768 vocabulary, random bf16 weights written once to a temp folder; prompt of 128 tokens.
//   build/bench/bench_trace [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <filesystem>
#include <memory>
#include <random>

#include "model/decoder.h"
#include "model/presets.h"
#include "model/random_init.h"
#include "trace/recorder.h"
#include "trace/stats.h"

using namespace lmscope;

namespace {

constexpr int64_t kTokens = 128;

DecoderModel& bench_model() {
    static std::unique_ptr<DecoderModel> m;
    if (!m) {
        const std::string dir = (std::filesystem::temp_directory_path() / "lmscope-bench-trace-model").string();
        if (!std::filesystem::exists(dir + "/config.json")) {
            nlohmann::json cfg = preset_config("qwen3-0.6b");
            cfg["num_hidden_layers"] = 4;
            cfg["max_window_layers"] = 4;
            cfg["vocab_size"] = 32768;
            RandomInitOptions opt;
            opt.progress = false;
            opt.seed = 1;
            write_random_checkpoint(cfg, dir, opt);
        }
        m = std::make_unique<DecoderModel>(DecoderModel::load(dir));
    }
    return *m;
}

void run_forward(benchmark::State& state, TensorObserver* obs) {
    DecoderModel& model = bench_model();
    std::vector<int32_t> ids(kTokens);
    for (int64_t i = 0; i < kTokens; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7919) % 32768);
    std::vector<float> logits(static_cast<size_t>(kTokens * model.config().vocab_size));
    for (auto _ : state) {
        KVCache cache = model.new_cache(kTokens);
        model.forward(ids.data(), kTokens, cache, logits.data(), true, obs);
        benchmark::DoNotOptimize(logits.data());
    }
    state.SetItemsProcessed(state.iterations() * kTokens);
}

void BM_ForwardNoObserver(benchmark::State& state) { run_forward(state, nullptr); }

void BM_ForwardRecorderWantsNothing(benchmark::State& state) {
    TraceRecorder rec({{"no.such.tensor"}, {}, 1 << 20});
    run_forward(state, &rec);
}

void BM_ForwardRecorderAllStats(benchmark::State& state) {
    // every tensor except the attention matrices (which need the extra O(T^2) branch)
    TraceRecorder rec({{"!*.scores", "!*.attn_probs"}, {}, 1 << 20});
    run_forward(state, &rec);
    state.counters["records"] = static_cast<double>(rec.records().size());
}

void BM_ForwardRecorderAllWithScores(benchmark::State& state) {
    TraceRecorder rec;
    run_forward(state, &rec);
    state.counters["records"] = static_cast<double>(rec.records().size());
}

void BM_ComputeStats(benchmark::State& state) {
    const int64_t n = state.range(0);
    std::vector<float> v(static_cast<size_t>(n));
    std::mt19937 rng(1);
    std::normal_distribution<float> nd;
    for (float& x : v) x = nd(rng);
    for (auto _ : state) {
        TensorStats s = compute_stats(v.data(), n, {n});
        benchmark::DoNotOptimize(s);
    }
    state.SetBytesProcessed(state.iterations() * n * static_cast<int64_t>(sizeof(float)));
}

}  // namespace

BENCHMARK(BM_ForwardNoObserver)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ForwardRecorderWantsNothing)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ForwardRecorderAllStats)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ForwardRecorderAllWithScores)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ComputeStats)->Arg(1 << 16)->Arg(1 << 20)->Arg(1 << 24)->Unit(benchmark::kMicrosecond)->UseRealTime();

BENCHMARK_MAIN();
