// The fused decode step (ops/cpu/decode_step.h: q/k-norm, RoPE, the KV-cache store and SwiGLU inside the
// q/k/v and gate/up thread-pool round trips) gives bit for bit the logits of the plain path, which the
// decoder takes when an observer is attached: dense f32 / bf16, FP8-block and AWQ int4 (integer GEMV)
// checkpoints, f32 and f16 caches, 1 to 3 threads (uneven shares, heads split across threads).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <utility>

#include "core/thread_pool.h"
#include "model/decoder.h"
#include "ops/ops.h"
#include "quant/awq_pack.h"
#include "quant/awq_quantize.h"
#include "quant/fp8_quantize.h"
#include "test_util.h"

using namespace lmscope;
using lmscope::testing::golden_dir;
using lmscope::testing::make_temp_dir;

namespace {

// Attached, it sends the decoder down the plain path; it wants no tensor.
class NoTensors : public TensorObserver {
  public:
    bool wants(const std::string&) const override { return false; }
    void observe(const std::string&, const float*, const Shape&) override {}
};

// Logits of 6 decode steps after a 5-token prefill, with or without the observer.
std::vector<float> decode_logits(DecoderModel& model, DType kv, bool plain) {
    const int32_t ids[11] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5};
    const int64_t V = model.config().vocab_size;
    KVCache c = model.new_cache(11, kv);
    std::vector<float> lg(static_cast<size_t>(6 * V));
    NoTensors none;
    model.forward(ids, 5, c, lg.data(), false, plain ? &none : nullptr);
    for (int64_t t = 5; t < 11; ++t)
        model.forward(ids + t, 1, c, lg.data() + (t - 5) * V, false, plain ? &none : nullptr);
    return lg;
}

void expect_fused_equals_plain(const std::string& dir) {
    DecoderModel model = DecoderModel::load(dir);
    for (int threads : {1, 2, 3}) {
        ThreadPool::set_global_threads(threads);
        for (DType kv : {DType::F32, DType::F16}) {
            const std::vector<float> fused = decode_logits(model, kv, false),
                                     plain = decode_logits(model, kv, true);
            ASSERT_EQ(fused.size(), plain.size());
            EXPECT_EQ(std::memcmp(fused.data(), plain.data(), sizeof(float) * fused.size()), 0)
                << dir << ", " << threads << " threads, " << dtype_name(kv) << " cache";
        }
    }
    ThreadPool::set_global_threads(0);
}

// RTN int4 of every linear, lm_head included, group size `group`.
void quantize_int4h(const std::string& src, const std::string& out, int64_t group) {
    AwqOptions a;
    a.method = "rtn";
    a.group_size = group;
    a.quantize_lm_head = true;
    a.report = false;
    a.save_entries = false;
    a.progress = false;
    awq_quantize_checkpoint(src, out, a);
}

}  // namespace

TEST(DecodeStep, FusedEqualsPlainDense) {
    set_reference_mode(false);
    for (const char* name : {"qwen3_gqa", "qwen3_gqa_bf16", "qwen2_bias", "llama3_scaled"})
        expect_fused_equals_plain(golden_dir(name));
}

TEST(DecodeStep, FusedEqualsPlainQuantized) {
    set_reference_mode(false);
    const std::string dir = make_temp_dir("decode-step");
    Fp8QuantizeOptions f;
    f.include_lm_head = true;
    f.progress = false;
    fp8_quantize_checkpoint(golden_dir("qwen3_gqa"), dir + "/fp8h", f);
    expect_fused_equals_plain(dir + "/fp8h");
    for (const auto& [name, group] : {std::pair{"qwen3_gqa", 32}, std::pair{"qwen2_bias", 16}}) {
        const std::string out = dir + "/" + name + "_int4h";
        quantize_int4h(golden_dir(name), out, group);  // a multiple of 8: the integer GEMV on the tiled copy
        expect_fused_equals_plain(out);
    }
    std::filesystem::remove_all(dir);
}

// The int4 GEMV's tiles and group records, moved at load into one huge-page allocation (weights.cpp): each
// linear's are still awq_tile_qweight / awq_tile_groups of its own qweight, qzeros and scales, and the first
// (lm_head's tiles) starts the 2 MB-aligned allocation.
TEST(DecodeStep, AwqTilesInOneAllocation) {
    const std::string dir = make_temp_dir("decode-step-awq-tiles");
    quantize_int4h(golden_dir("qwen3_gqa"), dir + "/int4h", 32);
    {
        const DecoderModel model = DecoderModel::load(dir + "/int4h");
        const ModelWeights& w = model.weights();
        std::vector<const Linear*> ls{&w.lm_head};
        for (const LayerWeights& L : w.layers)
            for (const Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) ls.push_back(l);
        ASSERT_EQ(w.lm_head.format, LinearFormat::AwqInt4);
        ASSERT_TRUE(w.lm_head.qweight_tiles.defined());
        EXPECT_EQ(reinterpret_cast<uintptr_t>(w.lm_head.qweight_tiles.raw()) % (uintptr_t(2) << 20), 0u);
        for (const Linear* l : ls) {
            ASSERT_EQ(l->format, LinearFormat::AwqInt4) << l->name;
            const Tensor t = awq_tile_qweight(l->weight), g = awq_tile_groups(l->qzeros, l->scale);
            ASSERT_EQ(l->qweight_tiles.nbytes(), t.nbytes()) << l->name;
            ASSERT_EQ(l->group_tiles.nbytes(), g.nbytes()) << l->name;
            EXPECT_EQ(std::memcmp(l->qweight_tiles.raw(), t.raw(), t.nbytes()), 0) << l->name;
            EXPECT_EQ(std::memcmp(l->group_tiles.raw(), g.raw(), g.nbytes()), 0) << l->name;
        }
    }
    std::filesystem::remove_all(dir);
}
