// BF16 activation mode (ops.h, --bf16-activations) through the whole decoder: tiny checkpoints' logits
// with the mode on against the f32 run, for BF16 weights (tests/golden/qwen3_gqa_bf16, 2 layers) and an
// AWQ int4 RTN copy of qwen3_gqa (group 32), on the vdpbf16ps kernel, the f32 fallback and the reference ops.
// Tolerances (||a - b|| / ||b|| over the logits of a 24-token prompt): each implementation against the f32 run
// 2e-2: each prefill linear's x loses up to 2^-8 relative (measured 6e-3, printed), and at least 1e-4, so the
// mode did something. The implementations against each other 1e-2, not f32 summation noise: they round the
// same x alike (the op tests check each linear to f32 summation order), but rounding is a step function: an
// x within an f32 ulp of a bf16 rounding boundary lands on either side depending on the summation order that
// made it, one such flip moves the next layer's inputs by far more than an ulp, and later layers flip more
// (measured: 1e-7 to 6e-4 after layer 0 depending on the prompt, up to 2.3e-3 at the logits).
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <filesystem>
#include <random>

#include "model/decoder.h"
#include "ops/cpu/simd.h"
#include "ops/ops.h"
#include "quant/awq_quantize.h"
#include "test_util.h"

using namespace lmscope;
using lmscope::testing::golden_dir;
using lmscope::testing::make_temp_dir;
using lmscope::testing::rel_error;

namespace {

constexpr double kTolVsF32 = 2e-2, kMinVsF32 = 1e-4, kTolPaths = 1e-2;

std::vector<double> logits_of(DecoderModel& m, const std::vector<int32_t>& ids) {
    const int64_t T = static_cast<int64_t>(ids.size());
    KVCache c = m.new_cache(T, DType::F32);
    std::vector<float> lg(static_cast<size_t>(T * m.config().vocab_size));
    m.forward(ids.data(), T, c, lg.data(), true);
    return std::vector<double>(lg.begin(), lg.end());
}

std::vector<int32_t> prompt(int64_t vocab) {
    std::mt19937 rng(11);
    std::uniform_int_distribution<int32_t> d(0, static_cast<int32_t>(vocab - 1));
    std::vector<int32_t> ids(24);
    for (auto& i : ids) i = d(rng);
    return ids;
}

void check_model(const std::string& dir, const std::string& tag) {
    DecoderModel m = DecoderModel::load(dir);
    const auto ids = prompt(m.config().vocab_size);
    const auto f32 = logits_of(m, ids);
    set_bf16_activation_mode(true);
    const auto fast = logits_of(m, ids);
    std::vector<std::pair<std::string, std::vector<double>>> others;
    if (simd::avx512_bf16_supported()) {  // the same mode through the f32 kernels
        simd::force_avx512_bf16(false);
        others.emplace_back("f32 fallback", logits_of(m, ids));
        simd::force_avx512_bf16(true);
    }
    set_reference_mode(true);
    others.emplace_back("reference", logits_of(m, ids));
    set_reference_mode(false);
    set_bf16_activation_mode(false);

    const double e = rel_error(fast, f32);
    fmt::print("  {} ({}): bf16 activations vs f32 logits rel err {:.3g}\n", tag,
               simd::has_avx512_bf16() ? "vdpbf16ps" : "f32 kernels", e);
    EXPECT_LE(e, kTolVsF32) << tag;
    EXPECT_GE(e, kMinVsF32) << tag << ": the mode changed nothing";
    for (const auto& [what, lg] : others) {
        const double ev = rel_error(lg, f32), ep = rel_error(lg, fast);
        fmt::print("  {} {}: vs f32 {:.3g}, vs the fast path {:.3g}\n", tag, what, ev, ep);
        EXPECT_LE(ev, kTolVsF32) << tag << " " << what;
        EXPECT_GE(ev, kMinVsF32) << tag << " " << what;
        EXPECT_LE(ep, kTolPaths) << tag << " " << what;
    }
}

}  // namespace

TEST(Bf16ActivationModel, Bf16WeightsCloseToF32) { check_model(golden_dir("qwen3_gqa_bf16"), "qwen3_gqa_bf16"); }

TEST(Bf16ActivationModel, AwqWeightsCloseToF32) {
    const std::string dir = make_temp_dir("bf16act-awq");
    AwqOptions o;
    o.method = "rtn";
    o.group_size = 32;
    o.progress = false;
    awq_quantize_checkpoint(golden_dir("qwen3_gqa"), dir + "/awq", o);
    check_model(dir + "/awq", "qwen3_gqa awq rtn g32");
    std::filesystem::remove_all(dir);
}
