// The CUDA decoder against transformers (float64 golden logits of tests/golden/*, made by
// tools/gen_golden.py) and against itself: prefill logits within 1e-3 relative error (exact mode: f32
// activations; fast mode, 16-bit checkpoints: bf16 activations into cuBLAS, reported and held to
// 1e-2); token-by-token decode through the GPU KV cache, batched decode of several sequences and the
// graph-chained greedy loop give the logits / tokens of a full prefill. Skips without CUDA or a GPU.
#include <gtest/gtest.h>

#include "cuda/cuda_api.h"

#ifndef LMSCOPE_HAVE_CUDA
TEST(CudaModel, GoldenLogits) { GTEST_SKIP() << "built without CUDA"; }
#else

#include <fmt/format.h>

#include "io/safetensors.h"
#include "model/decoder.h"
#include "model/sampler.h"
#include "test_util.h"

using namespace lmscope;
using lmscope::testing::golden_dir;
using lmscope::testing::rel_error;

namespace {

std::vector<int32_t> golden_ids(const SafetensorsFile& g) {
    std::vector<int32_t> ids;
    for (double d : g.get("input_ids").to_f64_vector()) ids.push_back(static_cast<int32_t>(d));
    return ids;
}

class CudaGolden : public ::testing::TestWithParam<std::string> {
protected:
    void SetUp() override {
        if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
    }
};

}  // namespace

TEST_P(CudaGolden, LogitsMatchTransformers) {
    const std::string dir = golden_dir(GetParam());
    DecoderModel host = DecoderModel::load(dir);
    SafetensorsFile g = SafetensorsFile::open(dir + "/golden.safetensors");
    const std::vector<int32_t> ids = golden_ids(g);
    const int64_t T = static_cast<int64_t>(ids.size()), V = host.config().vocab_size;
    const std::vector<double> ref = g.get("logits").to_f64_vector();
    for (bool exact : {true, false}) {
        cuda::CudaDecoder dev(host, {exact, true});
        dev.reset(1, T);
        std::vector<float> logits(static_cast<size_t>(T * V));
        dev.prefill(0, ids.data(), T, logits.data(), true);
        const double e = rel_error(logits, ref);
        fmt::print("  cuda {} {}: T={} logits rel err {:.3g}\n", GetParam(), exact ? "exact" : "fast", T, e);
        EXPECT_LE(e, exact ? 1e-3 : 1e-2) << GetParam() << (exact ? " exact" : " fast");
    }
}

// Prefill 5, then decode one token at a time (graph replays after the first step) for B = 3 copies
// of the sequence: every copy's logits match a full prefill.
TEST_P(CudaGolden, BatchedDecodeMatchesPrefill) {
    const std::string dir = golden_dir(GetParam());
    DecoderModel host = DecoderModel::load(dir);
    SafetensorsFile g = SafetensorsFile::open(dir + "/golden.safetensors");
    const std::vector<int32_t> ids = golden_ids(g);
    const int64_t T = static_cast<int64_t>(ids.size()), V = host.config().vocab_size;
    cuda::CudaDecoder dev(host, {true, true});
    dev.reset(1, T);
    std::vector<float> full(static_cast<size_t>(T * V));
    dev.prefill(0, ids.data(), T, full.data(), true);

    const int B = 3;
    const int64_t P = 5;
    dev.reset(B, T);
    std::vector<float> step(static_cast<size_t>(B * V));
    for (int b = 0; b < B; ++b) dev.prefill(b, ids.data(), P, nullptr, false);
    double worst = 0;
    for (int64_t t = P; t < T; ++t) {
        std::vector<int32_t> in(B, ids[static_cast<size_t>(t)]);
        dev.decode(in.data(), step.data());
        for (int b = 0; b < B; ++b) {
            std::vector<float> got(step.begin() + b * V, step.begin() + (b + 1) * V);
            std::vector<double> want(full.begin() + t * V, full.begin() + (t + 1) * V);
            worst = std::max(worst, rel_error(got, want));
        }
    }
    EXPECT_LE(worst, 1e-5);
    EXPECT_EQ(dev.length(2), T);

    // greedy chain on the GPU == host argmax loop
    dev.reset(1, T + 8);
    std::vector<float> last(static_cast<size_t>(V));
    dev.prefill(0, ids.data(), T, last.data(), false);
    int32_t first = argmax(last.data(), V);
    std::vector<int32_t> chain(8);
    dev.decode_greedy(&first, 8, chain.data());
    dev.reset(1, T + 8);
    dev.prefill(0, ids.data(), T, last.data(), false);
    int32_t next = first;
    for (int i = 0; i < 8; ++i) {
        dev.decode(&next, last.data());
        next = argmax(last.data(), V);
        EXPECT_EQ(next, chain[static_cast<size_t>(i)]) << "step " << i;
    }
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, CudaGolden,
                         ::testing::Values("qwen3_gqa", "qwen3_gqa_bf16", "qwen3_tied", "qwen2_bias", "llama3_scaled"));

#endif  // LMSCOPE_HAVE_CUDA
