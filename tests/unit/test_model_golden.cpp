// Decoder forward vs transformers (float64, eager) on tiny random checkpoints made by
// tools/gen_golden.py: Qwen3 (head_dim*heads != hidden, GQA; tied; bf16 weights), Qwen2 (q/k/v bias),
// Llama 3 (llama3 rope scaling, prompt longer than original_max_position_embeddings, attention bias).
// Tolerance: ||ours - ref|| / ||ref|| <= 1e-4 for logits and every layer's hidden state
// (ours is float32 arithmetic; the reference is float64).
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <map>

#include "io/safetensors.h"
#include "model/decoder.h"
#include "ops/ops.h"
#include "test_util.h"

using namespace lmscope;
using lmscope::testing::golden_dir;
using lmscope::testing::rel_error;

namespace {

constexpr double kTol = 1e-4;

// Collects the residual stream after each layer, to compare with transformers' hidden_states.
class HiddenCollector : public TensorObserver {
public:
    bool wants(const std::string& n) const override {
        if (n == "model.embed_tokens" || n == "model.norm") return true;
        const std::string p = "model.layers.";
        return n.rfind(p, 0) == 0 && n.find('.', p.size()) == std::string::npos;
    }
    void observe(const std::string& name, const float* data, const Shape& shape) override {
        seen[name] = std::vector<float>(data, data + shape_numel(shape));
    }
    std::map<std::string, std::vector<float>> seen;
};

class Golden : public ::testing::TestWithParam<std::string> {};

std::vector<int32_t> golden_ids(const SafetensorsFile& g) {
    std::vector<int32_t> ids;
    for (double d : g.get("input_ids").to_f64_vector()) ids.push_back(static_cast<int32_t>(d));
    return ids;
}

void check_case(const std::string& name) {
    const std::string dir = golden_dir(name);
    DecoderModel model = DecoderModel::load(dir);
    SafetensorsFile g = SafetensorsFile::open(dir + "/golden.safetensors");
    ASSERT_EQ(g.metadata().at("generator"), "tools/gen_golden.py v1");
    std::vector<int32_t> ids = golden_ids(g);
    const int64_t T = static_cast<int64_t>(ids.size()), V = model.config().vocab_size;

    KVCache cache = model.new_cache(T, DType::F32);  // f32 K/V, as transformers in f32
    std::vector<float> logits(static_cast<size_t>(T * V));
    HiddenCollector hid;
    model.forward(ids.data(), T, cache, logits.data(), true, &hid);

    const double e = rel_error(logits, g.get("logits").to_f64_vector());
    EXPECT_LE(e, kTol) << name << " logits";
    // hidden.0 = embeddings, hidden.l+1 = output of layer l (the last one is after the final norm)
    const int64_t L = model.config().num_layers;
    for (int64_t i = 0; i <= L; ++i) {
        std::string ours = i == 0 ? "model.embed_tokens" : (i == L ? "model.norm" : fmt::format("model.layers.{}", i - 1));
        ASSERT_TRUE(hid.seen.count(ours)) << ours;
        double eh = rel_error(hid.seen[ours], g.get(fmt::format("hidden.{}", i)).to_f64_vector());
        EXPECT_LE(eh, kTol) << name << " hidden." << i << " (" << ours << ")";
    }
    fmt::print("  {}: T={} logits rel err {:.3g}\n", name, T, e);
}

}  // namespace

TEST_P(Golden, LogitsMatchTransformersFast) {
    set_reference_mode(false);
    check_case(GetParam());
}

TEST_P(Golden, LogitsMatchTransformersReference) {
    set_reference_mode(true);
    check_case(GetParam());
    set_reference_mode(false);
}

namespace {

// Logits of every position: the first P tokens prefilled in one call, the rest decoded one at a time.
std::vector<float> prefill_then_decode(DecoderModel& model, const std::vector<int32_t>& ids, int64_t P, DType kv) {
    const int64_t T = static_cast<int64_t>(ids.size()), V = model.config().vocab_size;
    KVCache c = model.new_cache(T, kv);
    std::vector<float> lg(static_cast<size_t>(T * V));
    model.forward(ids.data(), P, c, lg.data(), true);
    for (int64_t t = P; t < T; ++t) model.forward(ids.data() + t, 1, c, lg.data() + t * V, false);
    EXPECT_EQ(c.len, T);
    return lg;
}

std::vector<int32_t> golden_ids_of(const std::string& name) {
    return golden_ids(SafetensorsFile::open(golden_dir(name) + "/golden.safetensors"));
}

}  // namespace

// Decoding token by token through the KV cache gives the logits of a full recomputation. With the f16
// cache the prefill GEMM and the decode GEMV round a key differently at times, and one f16 ulp is 2^-11
// relative: hence the looser bound.
TEST_P(Golden, KvCacheMatchesFullRecompute) {
    DecoderModel model = DecoderModel::load(golden_dir(GetParam()));
    const std::vector<int32_t> ids = golden_ids_of(GetParam());
    for (DType kv : {DType::F32, DType::F16}) {
        const std::vector<float> full = prefill_then_decode(model, ids, static_cast<int64_t>(ids.size()), kv);
        // a prefix of 5 (4 tokens exercises the blocked GEMM path), then one token at a time
        const std::vector<float> inc = prefill_then_decode(model, ids, 5, kv);
        EXPECT_LE(rel_error(inc, std::vector<double>(full.begin(), full.end())), kv == DType::F32 ? 1e-5 : 3e-4)
            << dtype_name(kv);
    }
}

// LMSCOPE_KV_CACHE overrides the model's default; anything but f16 / f32 is a one-line error naming it.
TEST(KvCacheDtype, EnvOverrideAndBadValue) {
    DecoderModel model = DecoderModel::load(golden_dir("qwen3_gqa"));  // f32: f32 K/V by default
    EXPECT_EQ(model.default_kv_dtype(), DType::F32);
    setenv("LMSCOPE_KV_CACHE", "f16", 1);
    EXPECT_EQ(model.new_cache(1).dtype, DType::F16);
    setenv("LMSCOPE_KV_CACHE", "bf16", 1);
    try {
        (void)model.default_kv_dtype();
        ADD_FAILURE() << "LMSCOPE_KV_CACHE=bf16 accepted";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("LMSCOPE_KV_CACHE=bf16: expected f16 or f32"), std::string::npos) << e.what();
    }
    unsetenv("LMSCOPE_KV_CACHE");
    EXPECT_EQ(model.default_kv_dtype(), DType::F32);
}

// The default f16 KV cache (issue 8: half the bytes a decode step reads) stays within 2e-3 relative of
// the f32 cache's logits, fast and reference ops both (the same size as its distance to transformers
// in f32; printed below).
TEST_P(Golden, F16KvCacheCloseToF32) {
    DecoderModel model = DecoderModel::load(golden_dir(GetParam()));
    const std::vector<int32_t> ids = golden_ids_of(GetParam());
    // the default follows the model: f32 K/V for f32 checkpoints, f16 for 16-bit ones
    EXPECT_EQ(model.new_cache(1).dtype, GetParam().find("bf16") != std::string::npos ? DType::F16 : DType::F32);
    for (bool ref : {false, true}) {
        set_reference_mode(ref);
        // a prefix of 9 (the blocked attention from 8 tokens), then decode: both attention paths read the cache
        const std::vector<float> lf = prefill_then_decode(model, ids, 9, DType::F32);
        const std::vector<float> lh = prefill_then_decode(model, ids, 9, DType::F16);
        const double e = rel_error(lh, std::vector<double>(lf.begin(), lf.end()));
        EXPECT_LE(e, 2e-3) << (ref ? "reference" : "fast");
        fmt::print("  {} ({}): f16 vs f32 KV cache logits rel err {:.3g}\n", GetParam(), ref ? "ref" : "fast", e);
    }
    set_reference_mode(false);
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, Golden,
                         ::testing::Values("qwen3_gqa", "qwen3_gqa_bf16", "qwen3_tied", "qwen2_bias",
                                           "llama3_scaled"));
