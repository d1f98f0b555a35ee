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

    KVCache cache = model.new_cache(T);
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

// Decoding token by token through the KV cache gives the logits of a full recomputation.
TEST_P(Golden, KvCacheMatchesFullRecompute) {
    const std::string dir = golden_dir(GetParam());
    DecoderModel model = DecoderModel::load(dir);
    SafetensorsFile g = SafetensorsFile::open(dir + "/golden.safetensors");
    std::vector<int32_t> ids = golden_ids(g);
    const int64_t T = static_cast<int64_t>(ids.size()), V = model.config().vocab_size;
    std::vector<float> full(static_cast<size_t>(T * V));
    KVCache c1 = model.new_cache(T);
    model.forward(ids.data(), T, c1, full.data(), true);

    // prefill a prefix of 5 (4 tokens exercises the blocked GEMM path), then one token at a time
    KVCache c2 = model.new_cache(T);
    const int64_t P = 5;
    std::vector<float> inc(static_cast<size_t>(T * V));
    model.forward(ids.data(), P, c2, inc.data(), true);
    for (int64_t t = P; t < T; ++t) model.forward(ids.data() + t, 1, c2, inc.data() + t * V, false);
    std::vector<double> fd(full.begin(), full.end());
    EXPECT_LE(rel_error(inc, fd), 1e-5);
    EXPECT_EQ(c2.len, T);
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, Golden,
                         ::testing::Values("qwen3_gqa", "qwen3_gqa_bf16", "qwen3_tied", "qwen2_bias",
                                           "llama3_scaled"));
