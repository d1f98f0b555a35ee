// The GPT (nanochat v0) against PyTorch autograd: tests/golden/gpt_tiny made by tools/golden_gpt.py
// (depth 2, n_embd 128, 1 head, vocab 512, batch 2 x 64, some targets -1). Checks and tolerances:
//   rope tables: identical to nanochat's bf16 tables (every value)
//   step-0 loss at nanochat's init (lm_head = c_proj = 0): |ours - ref| <= 1e-5 * ref
//   step-0 gradients at that init: lm_head rel error <= 1e-4; every other gradient exactly zero
//   alt init (lm_head, c_proj random): loss within 1e-5 relative, logits and EVERY parameter gradient
//     ||ours - ref|| / ||ref|| <= 1e-4 (ours f32, reference float64)
//   10 optimiser steps (AdamW + Muon, clip, schedule) on the same batch, 11 losses:
//     Newton-Schulz in f32 vs the float64 reference: max |diff| <= 2e-3 (loss goes 6.24 -> 0.17);
//     bf16-emulated Newton-Schulz vs the reference's emulation: max |diff| <= 5e-3.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "gpt/gpt.h"
#include "gpt/kernels.h"
#include "gpt/optim.h"
#include "io/safetensors.h"
#include "test_util.h"

using namespace lmscope;
using namespace lmscope::gpt;
using lmscope::testing::golden_dir;
using lmscope::testing::rel_error;

namespace {

struct Golden {
    GptConfig cfg;
    SafetensorsFile g;
    std::vector<int32_t> idx, tgt;
    int64_t B = 0, T = 0;
};

Golden load_golden() {
    const std::string dir = golden_dir("gpt_tiny");
    Golden G{GptConfig::load(dir), SafetensorsFile::open(dir + "/golden.safetensors"), {}, {}, 0, 0};
    Tensor idx = G.g.get("idx");
    G.B = idx.dim(0);
    G.T = idx.dim(1);
    for (double d : idx.to_f64_vector()) G.idx.push_back(static_cast<int32_t>(d));
    for (double d : G.g.get("targets").to_f64_vector()) G.tgt.push_back(static_cast<int32_t>(d));
    return G;
}

GptModel load_model(const Golden& G) {
    GptModel m(G.cfg);
    m.load(golden_dir("gpt_tiny") + "/model.safetensors");
    return m;
}

std::vector<double> losses_of(const Golden& G, bool bf16) {
    GptModel m = load_model(G);
    OptimConfig oc;
    oc.muon_bf16 = bf16;
    Optimizer opt(m, oc);
    std::vector<double> out;
    const int64_t steps = 10;
    for (int64_t it = 0; it <= steps; ++it) {
        m.zero_grad();
        out.push_back(m.forward(G.idx.data(), G.tgt.data(), G.B, G.T));
        if (it == steps) break;
        m.backward();
        opt.step(it, steps);
    }
    return out;
}

}  // namespace

TEST(GptGolden, RopeTablesAreNanochatBf16) {
    Golden G = load_golden();
    std::vector<float> cs, sn;
    rope_tables(cs, sn, G.T, G.cfg.head_dim, G.cfg.rope_theta);
    std::vector<float> rc = G.g.get("rope_cos").to_f32_vector(), rs = G.g.get("rope_sin").to_f32_vector();
    ASSERT_EQ(cs.size(), rc.size());
    int mismatches = 0;
    for (size_t i = 0; i < cs.size(); ++i) mismatches += (cs[i] != rc[i]) + (sn[i] != rs[i]);
    EXPECT_EQ(mismatches, 0);
}

TEST(GptGolden, StepZeroLossAndGradientsAtNanochatInit) {
    Golden G = load_golden();
    GptModel m = load_model(G);
    m.zero_grad();
    const double loss = m.forward(G.idx.data(), G.tgt.data(), G.B, G.T);
    const double ref = G.g.get("loss").at_f64(0);
    EXPECT_NEAR(loss, ref, 1e-5 * ref);
    EXPECT_NEAR(loss, std::log(512.0), 1e-5);  // zero lm_head: uniform logits
    m.backward();
    for (const ParamInfo& p : m.params()) {
        std::vector<float> gr(m.grad(p.name), m.grad(p.name) + p.numel);
        if (p.name == "lm_head.weight") {
            const double e = rel_error(gr, G.g.get("grad.lm_head.weight").to_f64_vector());
            EXPECT_LE(e, 1e-4);
            fmt::print("grad lm_head.weight rel err {:.3g}\n", e);
        } else {
            for (float x : gr) ASSERT_EQ(x, 0.0f) << p.name << ": PyTorch's gradient is exactly zero here";
        }
    }
}

TEST(GptGolden, AltInitLossLogitsAndEveryGradient) {
    Golden G = load_golden();
    GptModel m = load_model(G);
    for (const ParamInfo& p : m.params())
        if (p.zero_init) {
            std::vector<float> w = G.g.get("alt." + p.name).to_f32_vector();
            ASSERT_EQ(int64_t(w.size()), p.numel);
            std::memcpy(m.param(p.name), w.data(), sizeof(float) * p.numel);
        }
    m.zero_grad();
    const double loss = m.forward(G.idx.data(), G.tgt.data(), G.B, G.T);
    const double ref = G.g.get("alt_loss").at_f64(0);
    EXPECT_NEAR(loss, ref, 1e-5 * ref);
    std::vector<float> logits(m.logits(), m.logits() + G.B * G.T * G.cfg.vocab_size);
    EXPECT_LE(rel_error(logits, G.g.get("alt_logits").to_f64_vector()), 1e-5);
    m.backward();
    double worst = 0;
    for (const ParamInfo& p : m.params()) {
        std::vector<float> gr(m.grad(p.name), m.grad(p.name) + p.numel);
        const double e = rel_error(gr, G.g.get("alt_grad." + p.name).to_f64_vector());
        EXPECT_LE(e, 1e-4) << p.name;
        worst = std::max(worst, e);
    }
    fmt::print("alt init: loss {:.9f} (ref {:.9f}), worst gradient rel err {:.3g}\n", loss, ref, worst);
}

TEST(GptGolden, TenStepTrajectoryMatchesPyTorch) {
    Golden G = load_golden();
    for (bool bf16 : {false, true}) {
        const std::vector<double> ours = losses_of(G, bf16);
        const std::vector<double> ref = G.g.get(bf16 ? "traj_loss_bf16ns" : "traj_loss_f64").to_f64_vector();
        ASSERT_EQ(ours.size(), ref.size());
        double worst = 0;
        for (size_t i = 0; i < ours.size(); ++i) worst = std::max(worst, std::abs(ours[i] - ref[i]));
        fmt::print("trajectory ({}): ours {:.6f} .. {:.6f}, max |diff| {:.3g}\n", bf16 ? "bf16 NS" : "f32 NS vs f64",
                   ours.front(), ours.back(), worst);
        EXPECT_LE(worst, bf16 ? 5e-3 : 2e-3);
    }
}
