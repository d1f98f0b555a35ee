// Health rules on records built here (the GPT trainer's names, before the trainer exists) and the
// rules file: zero-initialised projections at step 0 are info, the same zeros later are errors; a flat
// loss, a loss at ln(V), dead ReLU^2, logits pinned at the soft-cap, exploding scores, saturated
// softmax; overriding thresholds, disabling rules, rejecting unknown keys. Also the GPT report layout.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <fstream>

#include "core/error.h"
#include "trace/output.h"
#include "trace/report.h"
#include "trace/rules.h"
#include "test_util.h"

using namespace lmscope;

namespace {

void show(TraceRecorder& rec, const std::string& name, std::vector<float> v, Shape shape = {}) {
    if (shape.empty()) shape = {static_cast<int64_t>(v.size())};
    rec.observe(name, v.data(), shape);
}

std::vector<float> noise(size_t n, float scale, uint32_t seed = 1) {
    std::vector<float> v(n);
    uint32_t s = seed;
    for (float& x : v) {
        s = s * 1664525u + 1013904223u;
        x = scale * (static_cast<float>(s >> 8) / 16777216.0f * 2.0f - 1.0f) * 1.7f;
    }
    return v;
}

const Finding* find(const std::vector<Finding>& f, const std::string& rule, const std::string& tensor, int it = -1) {
    for (const Finding& x : f)
        if (x.rule == rule && x.tensor == tensor && (it < 0 || x.iteration == it)) return &x;
    return nullptr;
}

// A 1-block nanochat-style run of three iterations as the trainer will show it.
TraceRecorder gpt_run(bool flat_loss, bool train_cproj) {
    TraceRecorder rec;
    TraceMeta& m = rec.meta();
    m.kind = "gpt";
    m.title = "GPT depth=1";
    m.layers = 1;
    m.hidden = 8;
    m.heads = 2;
    m.kv_heads = 2;
    m.head_dim = 4;
    m.vocab_size = 65536;
    m.seq_len = 4;
    m.logit_softcap = 15;
    m.zero_init_projections = true;
    m.iterations = 3;
    const double lnv = std::log(65536.0);
    for (int it = 0; it < 3; ++it) {
        rec.set_iteration(it);
        rec.set_phase(Phase::Forward);
        show(rec, "transformer.wte", noise(32, 1.0f, 3 + it));
        show(rec, "transformer.h.0.attn.c_q", noise(32, 1.0f, 4));
        show(rec, "transformer.h.0.attn.c_k", noise(32, 1.0f, 5));
        show(rec, "transformer.h.0.attn.c_v", noise(32, 1.0f, 6));
        const bool cproj_zero = it < 2 || !train_cproj;
        show(rec, "transformer.h.0.attn.c_proj", cproj_zero ? std::vector<float>(32, 0.0f) : noise(32, 0.1f));
        std::vector<float> relu = noise(128, 1.0f, 9);
        for (float& x : relu) x = x > 0 ? x * x : 0.0f;
        show(rec, "transformer.h.0.mlp.relu2", relu);
        show(rec, "transformer.h.0.mlp.c_proj", cproj_zero ? std::vector<float>(32, 0.0f) : noise(32, 0.1f));
        show(rec, "transformer.h.0", noise(32, 1.0f, 10));
        show(rec, "lm_head", it == 0 ? std::vector<float>(64, 0.0f) : noise(64, 1.0f));
        show(rec, "logits", it == 0 ? std::vector<float>(64, 0.0f) : noise(64, 1.0f));
        const float loss = flat_loss ? 11.090358f : static_cast<float>(lnv) - static_cast<float>(it);
        show(rec, "loss", {loss}, {1});
        rec.set_phase(Phase::Backward);
        show(rec, "grad.transformer.wte.weight", it == 0 ? std::vector<float>(16, 0.0f) : noise(16, 1e-3f));
        show(rec, "grad.transformer.h.0.attn.c_q.weight", it <= 1 ? std::vector<float>(16, 0.0f) : noise(16, 1e-3f));
        show(rec, "grad.transformer.h.0.attn.c_proj.weight", it == 0 ? std::vector<float>(16, 0.0f) : noise(16, 1e-3f));
        show(rec, "grad.lm_head.weight", noise(16, 1e-3f));
    }
    return rec;
}

}  // namespace

TEST(TraceRules, ZeroInitExpectedAtFirstStepsOnly) {
    TraceRecorder rec = gpt_run(false, false);
    const auto f = evaluate_rules(rec, default_rules());
    // step 0 / 1: explained zeros are info
    const Finding* a = find(f, "all_zero", "transformer.h.0.attn.c_proj", 0);
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->severity, Severity::Info);
    EXPECT_NE(a->message.find("zero-initialised"), std::string::npos);
    ASSERT_NE(find(f, "all_zero", "transformer.h.0.mlp.c_proj", 1), nullptr);
    EXPECT_EQ(find(f, "all_zero", "transformer.h.0.mlp.c_proj", 1)->severity, Severity::Info);
    ASSERT_NE(find(f, "all_zero", "logits", 0), nullptr);
    EXPECT_EQ(find(f, "all_zero", "logits", 0)->severity, Severity::Info);
    const Finding* g = find(f, "zero_grad", "grad.transformer.wte.weight", 0);
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(g->severity, Severity::Info);
    EXPECT_EQ(g->phase, Phase::Backward);
    EXPECT_NE(g->message.find("lm_head"), std::string::npos);
    EXPECT_EQ(find(f, "zero_grad", "grad.transformer.h.0.attn.c_q.weight", 1)->severity, Severity::Info);
    // the same zeros at step 2 are bugs: c_proj never trained
    const Finding* e = find(f, "all_zero", "transformer.h.0.attn.c_proj", 2);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->severity, Severity::Error);
    // the loss went down and started at ln(V)
    EXPECT_EQ(find(f, "loss_flat", "loss"), nullptr);
    ASSERT_NE(find(f, "loss_init", "loss"), nullptr);
    EXPECT_EQ(find(f, "loss_init", "loss")->severity, Severity::Info);
    ASSERT_NE(find(f, "loss_trend", "loss"), nullptr);
    EXPECT_EQ(find(f, "loss_trend", "loss")->severity, Severity::Info);
    EXPECT_EQ(rec.losses().size(), 3u);
}

TEST(TraceRules, HealthyTrainingHasNoErrors) {
    TraceRecorder rec = gpt_run(false, true);
    const auto f = evaluate_rules(rec, default_rules());
    for (const Finding& x : f) EXPECT_NE(x.severity, Severity::Error) << x.rule << " " << x.tensor << " " << x.message;
}

TEST(TraceRules, SeedFlatLossIsAnError) {
    TraceRecorder rec = gpt_run(true, true);
    const auto f = evaluate_rules(rec, default_rules());
    const Finding* x = find(f, "loss_flat", "loss");
    ASSERT_NE(x, nullptr);
    EXPECT_EQ(x->severity, Severity::Error);
    EXPECT_NE(x->message.find("no optimiser step"), std::string::npos);
    EXPECT_NE(x->message.find("11.090358"), std::string::npos);
}

TEST(TraceRules, ActivationRules) {
    TraceRecorder rec;
    rec.meta().logit_softcap = 15;
    // dead ReLU^2: 95% zeros
    std::vector<float> relu(100, 0.0f);
    for (int i = 0; i < 5; ++i) relu[static_cast<size_t>(i)] = 1.0f;
    show(rec, "transformer.h.0.mlp.relu2", relu);
    // logits pinned at the cap
    std::vector<float> lg = noise(100, 1.0f);
    for (int i = 0; i < 30; ++i) lg[static_cast<size_t>(i)] = i % 2 ? 14.95f : -14.9f;
    show(rec, "logits", lg);
    // exploding Q, degenerate K, NaN V
    show(rec, "transformer.h.0.attn.c_q", noise(64, 500.0f));
    show(rec, "transformer.h.0.attn.c_k", std::vector<float>(64, 0.25f));
    std::vector<float> v = noise(64, 1.0f);
    v[3] = NAN;
    show(rec, "transformer.h.0.attn.c_v", v);
    show(rec, "transformer.h.0.attn.attn_out", v);
    // scores spread in the hundreds, and saturated probabilities (T=10 keys, one-hot rows)
    const int64_t T = 10;
    std::vector<float> sc(static_cast<size_t>(T * T), 0.0f), pr(sc.size(), 0.0f);
    for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j <= t; ++j) {
            sc[static_cast<size_t>(t * T + j)] = j == 0 ? 400.0f : -300.0f;
            pr[static_cast<size_t>(t * T + j)] = j == 0 ? 1.0f : 0.0f;
        }
    rec.observe_causal("transformer.h.0.attn.scores", sc.data(), {1, 1, T, T}, 0);
    rec.observe_causal("transformer.h.0.attn.probs", pr.data(), {1, 1, T, T}, 0);
    const auto f = evaluate_rules(rec, default_rules());
    ASSERT_NE(find(f, "dead_relu", "transformer.h.0.mlp.relu2"), nullptr);
    ASSERT_NE(find(f, "logit_softcap", "logits"), nullptr);
    EXPECT_NEAR(find(f, "logit_softcap", "logits")->value, 0.30, 1e-9);
    ASSERT_NE(find(f, "qkv_std", "transformer.h.0.attn.c_q"), nullptr);
    EXPECT_EQ(find(f, "qkv_std", "transformer.h.0.attn.c_q")->severity, Severity::Error);
    ASSERT_NE(find(f, "qkv_std", "transformer.h.0.attn.c_k"), nullptr);  // std 0: degenerate
    EXPECT_NE(find(f, "qkv_std", "transformer.h.0.attn.c_k")->message.find("degenerate"), std::string::npos);
    const Finding* nf = find(f, "nonfinite", "transformer.h.0.attn.c_v");
    ASSERT_NE(nf, nullptr);
    EXPECT_NE(nf->message.find("first non-finite"), std::string::npos);
    EXPECT_NE(find(f, "nonfinite", "transformer.h.0.attn.attn_out")->message.find("propagated from transformer.h.0.attn.c_v"),
              std::string::npos);
    ASSERT_NE(find(f, "scores_range", "transformer.h.0.attn.scores"), nullptr);
    EXPECT_EQ(find(f, "scores_range", "transformer.h.0.attn.scores")->value, 700.0);
    const Finding* sat = find(f, "softmax_saturation", "transformer.h.0.attn.probs");
    ASSERT_NE(sat, nullptr);  // rows with >= 8 keys: t = 7, 8, 9, all one-hot
    EXPECT_EQ(sat->value, 1.0);
}

TEST(TraceRules, RulesFileOverridesDisablesAndRejects) {
    RuleConfig c = default_rules();
    EXPECT_EQ(c.get("qkv.absmax_warn"), 10);
    apply_rules_json(c, R"({"qkv": {"absmax_warn": 1000}, "loss.flat_iterations": 5, "disable": ["dead_relu"],
                            "severity": {"qkv_absmax": "error"}})",
                     "test");
    EXPECT_EQ(c.get("qkv.absmax_warn"), 1000);
    EXPECT_EQ(c.get("loss.flat_iterations"), 5);
    EXPECT_EQ(c.get("qkv.std_low"), 0.5);  // untouched defaults stay
    EXPECT_FALSE(c.enabled("dead_relu"));
    EXPECT_THROW(apply_rules_json(c, R"({"qkv.no_such": 1})", "test"), UsageError);
    EXPECT_THROW(apply_rules_json(c, R"({"disable": ["nope"]})", "test"), UsageError);
    EXPECT_THROW(apply_rules_json(c, R"({"qkv.std_low": "x"})", "test"), UsageError);
    EXPECT_THROW(apply_rules_json(c, "{", "test"), UsageError);
    // the seed's flat loss over 3 iterations no longer fires with flat_iterations 5
    TraceRecorder rec = gpt_run(true, true);
    EXPECT_EQ(find(evaluate_rules(rec, c), "loss_flat", "loss"), nullptr);
    // --print-rules output loads back
    RuleConfig d = default_rules();
    apply_rules_json(d, rules_to_json(c), "roundtrip");
    EXPECT_EQ(d.get("qkv.absmax_warn"), 1000);
    EXPECT_FALSE(d.enabled("dead_relu"));
}

// The GPT report follows the seed: embeddings, RoPE, blocks, final norm, LM head, loss, backward.
TEST(TraceRules, GptReportSections) {
    TraceRecorder rec = gpt_run(true, false);
    const auto f = evaluate_rules(rec, default_rules());
    const std::string md = render_markdown(build_report(rec, f));
    for (const char* s : {"GPT Component Debug Trace", "Token embeddings (wte)", "Positional embeddings (RoPE)",
                          "Transformer block stack", "Block 0", "ReLU^2", "Final RMSNorm", "Language-modelling head",
                          "Loss computation", "Backward pass", "Loss per iteration", "Model scaling analysis",
                          "Health check", "loss_flat", "Iteration 3/3"})
        EXPECT_NE(md.find(s), std::string::npos) << s;
    const std::string html = render_html(build_report(rec, f), rec, f);
    EXPECT_NE(html.find("id=\"plot-loss\""), std::string::npos);
    EXPECT_NE(html.find("id=\"plot-residual\""), std::string::npos);
}
