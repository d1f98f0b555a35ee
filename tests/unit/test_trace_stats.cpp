// Trace statistics: compute_stats against values computed here independently (plain double loops),
// the name filter, the recorder's causal attention path, and the trace against transformers' hidden
// states (tests/golden/<case>/golden.safetensors, float64): mean/std/min/max of model.layers.{i}
// within 1e-4 relative of the statistics of hidden.{i+1}. Tracing must not change the logits.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "core/error.h"
#include "io/safetensors.h"
#include "model/decoder.h"
#include "trace/recorder.h"
#include "trace/stats.h"
#include "test_util.h"

using namespace lmscope;
using lmscope::testing::golden_dir;

namespace {

struct Ref {
    double mean, std, min, max, absmax, zeros;
    int64_t nan, inf;
};

// Independent reference: naive sums in long double over the finite values.
Ref reference_stats(const std::vector<double>& v) {
    Ref r{0, 0, INFINITY, -INFINITY, 0, 0, 0, 0};
    long double s = 0;
    int64_t n = 0, z = 0;
    for (double x : v) {
        if (std::isnan(x)) { ++r.nan; continue; }
        if (std::isinf(x)) { ++r.inf; continue; }
        if (x == 0) ++z;
        s += x;
        ++n;
        r.min = std::min(r.min, x);
        r.max = std::max(r.max, x);
        r.absmax = std::max(r.absmax, std::fabs(x));
    }
    r.mean = static_cast<double>(s / n);
    long double ss = 0;
    for (double x : v)
        if (std::isfinite(x)) ss += (x - static_cast<long double>(r.mean)) * (x - static_cast<long double>(r.mean));
    r.std = n > 1 ? static_cast<double>(std::sqrt(ss / (n - 1))) : NAN;
    r.zeros = static_cast<double>(z) / static_cast<double>(v.size());
    return r;
}

void expect_close(double a, double b, double rel, const std::string& what) {
    EXPECT_LE(std::fabs(a - b), rel * std::max(1.0, std::fabs(b))) << what << ": " << a << " vs " << b;
}

}  // namespace

TEST(TraceStats, MatchesIndependentComputation) {
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.3f, 2.0f);
    for (int64_t n : {int64_t{2}, int64_t{17}, int64_t{1000}, int64_t{300000}}) {  // the last one is threaded
        std::vector<float> v(static_cast<size_t>(n));
        for (float& x : v) x = nd(rng);
        v[0] = 0.0f;
        v[1] = -0.0f;
        if (n > 10) {
            v[5] = std::numeric_limits<float>::quiet_NaN();
            v[6] = std::numeric_limits<float>::infinity();
            v[7] = -std::numeric_limits<float>::infinity();
        }
        const TensorStats s = compute_stats(v.data(), n, {n});
        const Ref r = reference_stats(std::vector<double>(v.begin(), v.end()));
        expect_close(s.mean, r.mean, 1e-12, "mean");
        expect_close(s.std, r.std, 1e-12, "std");
        EXPECT_EQ(s.min, r.min);
        EXPECT_EQ(s.max, r.max);
        EXPECT_EQ(s.absmax, r.absmax);
        EXPECT_DOUBLE_EQ(s.zeros, r.zeros);
        EXPECT_EQ(s.nan, r.nan);
        EXPECT_EQ(s.inf, r.inf);
        EXPECT_EQ(s.numel, n);
        EXPECT_EQ(s.finite, n - r.nan - r.inf);
        EXPECT_EQ(s.dtype, "float32");
        EXPECT_EQ(s.device, "cpu");
    }
}

TEST(TraceStats, EdgeCasesLikeTorch) {
    const float one = 3.5f;
    TensorStats s = compute_stats(&one, 1, {1});
    EXPECT_EQ(s.mean, 3.5);
    EXPECT_TRUE(std::isnan(s.std));  // torch.std of one element is nan
    EXPECT_EQ(s.min, 3.5);
    std::vector<float> zeros(10, 0.0f);
    s = compute_stats(zeros.data(), 10, {2, 5});
    EXPECT_TRUE(s.all_zero());
    EXPECT_EQ(s.std, 0.0);
    std::vector<float> nans(4, std::numeric_limits<float>::quiet_NaN());
    s = compute_stats(nans.data(), 4, {4});
    EXPECT_EQ(s.nan, 4);
    EXPECT_TRUE(std::isnan(s.mean));
    std::vector<int32_t> ids = {10, 20, 30};
    s = compute_stats(ids.data(), 3, {1, 3});
    EXPECT_EQ(s.dtype, "int32");
    EXPECT_DOUBLE_EQ(s.mean, 20.0);
    EXPECT_DOUBLE_EQ(s.std, 10.0);
    EXPECT_EQ(shape_tuple({1, 3}), "(1, 3)");
    EXPECT_EQ(shape_tuple({4}), "(4,)");
}

TEST(TraceStats, NameFilter) {
    EXPECT_TRUE(glob_match("model.layers.*.self_attn.q_proj", "model.layers.12.self_attn.q_proj"));
    EXPECT_FALSE(glob_match("model.layers.?.mlp.*", "model.layers.12.mlp.act"));
    NameFilter f({"model.layers.1", "scores", "re:^logits$"});
    EXPECT_TRUE(f.matches("model.layers.1"));
    EXPECT_TRUE(f.matches("model.layers.1.mlp.act"));
    EXPECT_FALSE(f.matches("model.layers.10.mlp.act"));
    EXPECT_TRUE(f.matches("model.layers.7.self_attn.scores"));
    EXPECT_TRUE(f.matches("logits"));
    EXPECT_FALSE(f.matches("model.norm"));
    NameFilter ex({"!*.mlp.*"});
    EXPECT_TRUE(ex.matches("model.norm"));
    EXPECT_FALSE(ex.matches("model.layers.0.mlp.act"));
    EXPECT_THROW(NameFilter({"re:("}), UsageError);
    TraceRecorder rec({{"model.norm"}, {}, 1 << 20});
    EXPECT_TRUE(rec.wants("model.norm"));
    EXPECT_FALSE(rec.wants("logits"));
}

// Scores / probabilities arrive as (B, H, T, S) with masked entries that must not count.
TEST(TraceStats, CausalAttentionRecords) {
    TraceRecorder rec;
    const int64_t H = 2, T = 3;
    // probs: row t has t+1 valid entries; garbage (-inf) in the masked part must be ignored
    std::vector<float> p(static_cast<size_t>(H * T * T), -INFINITY);
    for (int64_t h = 0; h < H; ++h)
        for (int64_t t = 0; t < T; ++t)
            for (int64_t j = 0; j <= t; ++j) p[static_cast<size_t>((h * T + t) * T + j)] = 1.0f / static_cast<float>(t + 1);
    rec.observe("transformer.h.0.attn.probs", p.data(), {1, H, T, T});
    const TraceRecord* r = rec.find("transformer.h.0.attn.probs", Phase::Forward, 0);
    ASSERT_NE(r, nullptr);
    EXPECT_TRUE(r->causal);
    EXPECT_EQ(r->stats.numel, H * T * (T + 1) / 2);
    EXPECT_EQ(r->stats.inf, 0);
    EXPECT_EQ(r->stats.shape, (Shape{1, H, T, T}));
    // mean of probabilities = rows / entries
    EXPECT_NEAR(r->stats.mean, static_cast<double>(H * T) / static_cast<double>(H * T * (T + 1) / 2), 1e-7);
}

// The trace sees the same residual stream transformers computed (float64 reference).
TEST(TraceStats, LayerStatsMatchTransformersHiddenStates) {
    for (const std::string name : {"qwen3_gqa", "qwen2_bias", "llama3_scaled"}) {
        const std::string dir = golden_dir(name);
        DecoderModel model = DecoderModel::load(dir);
        SafetensorsFile g = SafetensorsFile::open(dir + "/golden.safetensors");
        std::vector<int32_t> ids;
        for (double d : g.get("input_ids").to_f64_vector()) ids.push_back(static_cast<int32_t>(d));
        const int64_t T = static_cast<int64_t>(ids.size()), V = model.config().vocab_size, L = model.config().num_layers;
        TraceRecorder rec;
        KVCache cache = model.new_cache(T, DType::F32);  // as `lmscope trace` does
        std::vector<float> logits(static_cast<size_t>(T * V));
        model.forward(ids.data(), T, cache, logits.data(), true, &rec);
        for (int64_t i = 1; i <= L; ++i) {
            // hidden.{i} is layer i-1's output, except the last, which transformers stores after the final norm
            const std::string ours = i == L ? "model.norm" : fmt::format("model.layers.{}", i - 1);
            const TraceRecord* r = rec.find(ours, Phase::Forward, 0);
            ASSERT_NE(r, nullptr) << ours;
            const std::vector<double> ref = g.get(fmt::format("hidden.{}", i)).to_f64_vector();
            const TensorStats s = compute_stats(ref.data(), static_cast<int64_t>(ref.size()), {});
            const std::string what = fmt::format("{} {}", name, ours);
            EXPECT_LE(std::fabs(r->stats.std - s.std), 1e-4 * s.std) << what << " std";
            EXPECT_LE(std::fabs(r->stats.min - s.min), 1e-4 * std::fabs(s.min)) << what << " min";
            EXPECT_LE(std::fabs(r->stats.max - s.max), 1e-4 * std::fabs(s.max)) << what << " max";
            // the mean is near 0, so it is compared relative to the tensor's spread (std)
            EXPECT_LE(std::fabs(r->stats.mean - s.mean), 1e-4 * std::max(std::fabs(s.mean), s.std)) << what << " mean";
        }
        const TraceRecord* lg = rec.find("logits", Phase::Forward, 0);
        ASSERT_NE(lg, nullptr);
        const std::vector<double> ref = g.get("logits").to_f64_vector();
        const TensorStats s = compute_stats(ref.data(), static_cast<int64_t>(ref.size()), {});
        EXPECT_LE(std::fabs(lg->stats.std - s.std), 1e-4 * s.std) << name << " logits std";
        EXPECT_LE(std::fabs(lg->stats.max - s.max), 1e-4 * std::fabs(s.max)) << name << " logits max";
    }
}

// Observing (including the attention score/probability branch) must not change a single bit.
TEST(TraceStats, TracingDoesNotChangeLogits) {
    for (const std::string name : {"qwen3_gqa", "qwen3_gqa_bf16", "qwen2_bias"}) {
        DecoderModel model = DecoderModel::load(golden_dir(name));
        const std::vector<int32_t> ids = {1, 7, 3, 9, 11, 2, 5, 8, 13, 4, 6};
        const int64_t T = static_cast<int64_t>(ids.size()), V = model.config().vocab_size;
        std::vector<float> plain(static_cast<size_t>(T * V)), traced(plain.size());
        KVCache c1 = model.new_cache(T), c2 = model.new_cache(T);
        model.forward(ids.data(), T, c1, plain.data(), true);
        TraceRecorder rec({{}, {"*"}, 1 << 20});  // everything, full values kept too
        model.forward(ids.data(), T, c2, traced.data(), true, &rec);
        EXPECT_EQ(std::memcmp(plain.data(), traced.data(), plain.size() * sizeof(float)), 0) << name;
        const TraceRecord* sc = rec.find("model.layers.0.self_attn.scores", Phase::Forward, 0);
        ASSERT_NE(sc, nullptr) << name;
        EXPECT_EQ(sc->stats.numel, model.config().num_heads * T * (T + 1) / 2);
        const TraceRecord* pr = rec.find("model.layers.1.self_attn.attn_probs", Phase::Forward, 0);
        ASSERT_NE(pr, nullptr) << name;
        EXPECT_NEAR(pr->stats.mean, static_cast<double>(T) / static_cast<double>(T * (T + 1) / 2), 1e-6);
        ASSERT_NE(rec.find("logits", Phase::Forward, 0), nullptr);
        EXPECT_EQ(rec.find("logits", Phase::Forward, 0)->values.size(), plain.size());
    }
}
