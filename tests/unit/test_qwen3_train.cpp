// The trainable Qwen3 (src/qwen3train, `lmscope train --arch qwen3`):
//  - each new layer's backward (RMSNorm with weight, q/k norm = RMSNorm over head_dim rows sharing one
//    weight, SwiGLU, HF rotate-half RoPE, gemm_cpu Linear, cross-entropy) against central finite
//    differences of a float64 reference forward written here; L = sum(out * R) with a fixed random R;
//    tolerance ||ours - fd|| / ||fd|| <= 1e-4 (f32 arithmetic vs float64 differences with h = 1e-5);
//  - the whole model's backward along each parameter tensor's own gradient direction against f32
//    central differences of the loss (a wiring check, tolerance 2e-2);
//  - the training model's logits == DecoderModel's logits on the checkpoint it saved (rel <= 1e-5),
//    tied and untied, GQA, head_dim * heads != hidden, batch of 2;
//  - `lmscope train --arch qwen3`: the loss goes down, the folder is a HF checkpoint that the other
//    commands read, and --resume continues exactly (bit-identical losses and weights).
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <regex>
#include <vector>

#include "core/error.h"
#include "gpt/kernels.h"
#include "io/atomic_file.h"
#include "model/config.h"
#include "model/decoder.h"
#include "model/rope_table.h"
#include "qwen3train/config.h"
#include "qwen3train/kernels.h"
#include "qwen3train/model.h"
#include "grad_check.h"
#include "test_util.h"

using namespace lmscope;
using namespace lmscope::qwen3train;
using lmscope::testing::make_temp_dir;
using lmscope::testing::rel_error;
using lmscope::testing::run_cli;
namespace fs = std::filesystem;

namespace {

constexpr double kTol = 1e-4;
constexpr double kEps = 1e-6;
using lmscope::testing::dotv;
using lmscope::testing::fd;
using lmscope::testing::randn;
using lmscope::testing::to_f;
using lmscope::testing::Vec;

// ---- float64 references ----
Vec rmsnorm_ref(const Vec& x, const Vec& w, int64_t N, int64_t C) {
    Vec y(x.size());
    for (int64_t n = 0; n < N; ++n) {
        double ss = 0;
        for (int64_t i = 0; i < C; ++i) ss += x[n * C + i] * x[n * C + i];
        const double r = 1.0 / std::sqrt(ss / C + kEps);
        for (int64_t i = 0; i < C; ++i) y[n * C + i] = w[i] * (x[n * C + i] * r);
    }
    return y;
}
Vec swiglu_ref(const Vec& g, const Vec& u) {
    Vec y(g.size());
    for (size_t i = 0; i < g.size(); ++i) y[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
    return y;
}
Vec rope_ref(const Vec& x, const std::vector<float>& cs, const std::vector<float>& sn, int64_t N, int64_t T, int64_t H,
             int64_t HD) {
    // transformers: q * cos + rotate_half(q) * sin, rotate_half(x) = cat(-x2, x1)
    Vec y(x.size());
    const int64_t d = HD / 2;
    for (int64_t n = 0; n < N; ++n)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t j = 0; j < HD; ++j) {
                const int64_t i = j % d;
                const double c = cs[(n % T) * d + i], s = sn[(n % T) * d + i];
                const double* row = x.data() + (n * H + h) * HD;
                const double rot = j < d ? -row[j + d] : row[j - d];
                y[(n * H + h) * HD + j] = row[j] * c + rot * s;
            }
    return y;
}
Vec linear_ref(const Vec& x, const Vec& w, int64_t N, int64_t IC, int64_t OC) {
    Vec y(N * OC, 0.0);
    for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < OC; ++o)
            for (int64_t i = 0; i < IC; ++i) y[n * OC + o] += x[n * IC + i] * w[o * IC + i];
    return y;
}
double ce_ref(const Vec& z, const std::vector<int32_t>& tg, int64_t N, int64_t V) {
    double tot = 0;
    int cnt = 0;
    for (int64_t n = 0; n < N; ++n) {
        if (tg[n] < 0) continue;
        double mx = -1e300;
        for (int64_t i = 0; i < V; ++i) mx = std::max(mx, z[n * V + i]);
        double s = 0;
        for (int64_t i = 0; i < V; ++i) s += std::exp(z[n * V + i] - mx);
        tot += mx + std::log(s) - z[n * V + tg[n]];
        ++cnt;
    }
    return tot / cnt;
}

void check_rmsnorm(int64_t N, int64_t C, uint32_t seed) {
    const Vec x = randn(N * C, seed), w = randn(C, seed + 1, 0.5, 1.0), R = randn(N * C, seed + 2);
    std::vector<float> xf = to_f(x), wf = to_f(w), y(N * C), xh(N * C), rs(N), dx(N * C), dw(C, 0.0f);
    rmsnorm_forward(y.data(), xh.data(), rs.data(), xf.data(), wf.data(), N, C, static_cast<float>(kEps));
    EXPECT_LE(rel_error(y, rmsnorm_ref(x, w, N, C)), 1e-6);
    std::vector<float> Rf = to_f(R);
    rmsnorm_backward(dx.data(), dw.data(), Rf.data(), xh.data(), rs.data(), wf.data(), N, C, false);
    EXPECT_LE(rel_error(dx, fd([&](const Vec& v) { return dotv(rmsnorm_ref(v, w, N, C), R); }, x)), kTol);
    EXPECT_LE(rel_error(dw, fd([&](const Vec& v) { return dotv(rmsnorm_ref(x, v, N, C), R); }, w)), kTol);
    // accumulate: dx += (and dw keeps accumulating)
    std::vector<float> dx2(N * C, 1.0f), dw2(C, 0.0f);
    rmsnorm_backward(dx2.data(), dw2.data(), Rf.data(), xh.data(), rs.data(), wf.data(), N, C, true);
    for (int64_t i = 0; i < N * C; ++i) ASSERT_FLOAT_EQ(dx2[i], dx[i] + 1.0f);
    // in place (dinp == dout), as the model runs q/k norm
    std::vector<float> io = Rf, dw3(C, 0.0f);
    rmsnorm_backward(io.data(), dw3.data(), io.data(), xh.data(), rs.data(), wf.data(), N, C, false);
    EXPECT_EQ(io, dx);
    EXPECT_EQ(dw3, dw);
}

std::vector<std::string> losses_in(const std::string& log) {
    std::vector<std::string> out;
    std::regex re(R"re("loss":([-0-9.e+]+))re");
    for (std::sregex_iterator it(log.begin(), log.end(), re), end; it != end; ++it) out.push_back((*it)[1]);
    return out;
}

// random weights everywhere (norm weights around 1, projections not zero) so every path carries signal
void randomize(Qwen3TrainModel& m, uint32_t seed) {
    std::mt19937 g(seed);
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (const ParamInfo& p : m.params()) {
        float* w = m.param(p.name);
        if (p.shape.size() == 1) {
            for (int64_t i = 0; i < p.numel; ++i) w[i] = 1.0f + 0.3f * d(g);
        } else {
            const float s = p.name.find("embed") != std::string::npos ? 0.5f : 1.0f / std::sqrt(float(p.shape[1]));
            for (int64_t i = 0; i < p.numel; ++i) w[i] = s * d(g);
        }
    }
}

Qwen3Config small_config(bool tie) {
    Qwen3Config c;
    c.n_layer = 2;
    c.hidden = 48;
    c.n_head = 4;
    c.n_kv_head = 2;
    c.head_dim = 16;  // q_dim 64 != hidden 48
    c.intermediate = 80;
    c.vocab_size = 97;
    c.sequence_len = 24;
    c.tie = tie;
    c.bos_token_id = 1;
    c.eos_token_id = 1;
    return c;
}


struct Env {
    std::string dir = make_temp_dir("qwen3train");
    Env() { setenv("LMSCOPE_CACHE_DIR", (dir + "/cache").c_str(), 1); }
    ~Env() { fs::remove_all(dir); }
};

const std::string kTiny =
    "--arch qwen3 --depth 2 --hidden 32 --head-dim 8 --seq-len 32 --batch 2 --vocab-size 320 --eval-tokens 256 "
    "--log-every 1";

}  // namespace

// ---- ops ------------------------------------------------------------------------------------------------

TEST(Qwen3TrainOps, RmsNormWithWeight) { check_rmsnorm(7, 13, 11); }

TEST(Qwen3TrainOps, QkNormSharedWeightOverHeadDim) {
    // (tokens 5) x (heads 3) rows of head_dim 8, one weight of 8 shared by every head
    check_rmsnorm(5 * 3, 8, 21);
}

TEST(Qwen3TrainOps, SwiGlu) {
    const int64_t n = 53;
    const Vec g = randn(n, 31, 2.0), u = randn(n, 32), R = randn(n, 33);
    std::vector<float> gf = to_f(g), uf = to_f(u), y(n), dg(n), du(n), Rf = to_f(R);
    swiglu_forward(y.data(), gf.data(), uf.data(), n);
    EXPECT_LE(rel_error(y, swiglu_ref(g, u)), 1e-6);
    swiglu_backward(dg.data(), du.data(), Rf.data(), gf.data(), uf.data(), n);
    EXPECT_LE(rel_error(dg, fd([&](const Vec& v) { return dotv(swiglu_ref(v, u), R); }, g)), kTol);
    EXPECT_LE(rel_error(du, fd([&](const Vec& v) { return dotv(swiglu_ref(g, v), R); }, u)), kTol);
}

TEST(Qwen3TrainOps, HfRope) {
    const int64_t B = 2, T = 5, H = 3, HD = 8, N = B * T;
    for (double theta : {10000.0, 1000000.0}) {
        RopeConfig rc;
        rc.theta = theta;
        const std::vector<float> inv = rope_inv_freq(rc, HD);
        std::vector<float> cs(T * HD / 2), sn(T * HD / 2);
        rope_cos_sin(inv, 0, T, cs.data(), sn.data());
        const Vec x = randn(N * H * HD, 41), R = randn(N * H * HD, 42);
        std::vector<float> xf = to_f(x), y(x.size()), Rf = to_f(R), dx(x.size());
        rope_forward(y.data(), xf.data(), cs.data(), sn.data(), N, T, H, HD);
        EXPECT_LE(rel_error(y, rope_ref(x, cs, sn, N, T, H, HD)), 1e-6);
        rope_backward(dx.data(), Rf.data(), cs.data(), sn.data(), N, T, H, HD);
        EXPECT_LE(rel_error(dx, fd([&](const Vec& v) { return dotv(rope_ref(v, cs, sn, N, T, H, HD), R); }, x)), kTol);
    }
}

TEST(Qwen3TrainOps, LinearOnGemmCpuOddShape) {
    const int64_t N = 37, IC = 29, OC = 45;
    const Vec x = randn(N * IC, 51), w = randn(OC * IC, 52), R = randn(N * OC, 53);
    std::vector<float> xf = to_f(x), wf = to_f(w), y(N * OC), Rf = to_f(R), dx(N * IC), dw(OC * IC, 0.0f);
    gpt::matmul_forward(y.data(), xf.data(), wf.data(), N, IC, OC);
    EXPECT_LE(rel_error(y, linear_ref(x, w, N, IC, OC)), 1e-6);
    gpt::matmul_backward(dx.data(), dw.data(), Rf.data(), xf.data(), wf.data(), N, IC, OC, false);
    EXPECT_LE(rel_error(dx, fd([&](const Vec& v) { return dotv(linear_ref(v, w, N, IC, OC), R); }, x)), kTol);
    EXPECT_LE(rel_error(dw, fd([&](const Vec& v) { return dotv(linear_ref(x, v, N, IC, OC), R); }, w)), kTol);
}

TEST(Qwen3TrainOps, CrossEntropy) {
    const int64_t N = 6, V = 11;
    const Vec z = randn(N * V, 61, 2.0);
    const std::vector<int32_t> tg = {3, -1, 0, 10, 5, -1};
    std::vector<float> zf = to_f(z), losses(N);
    const int64_t cnt = crossentropy_forward(zf.data(), losses.data(), tg.data(), N, V);
    ASSERT_EQ(cnt, 4);
    double mean = 0;
    for (float l : losses) mean += l;
    EXPECT_NEAR(mean / cnt, ce_ref(z, tg, N, V), 1e-5);
    crossentropy_backward(zf.data(), tg.data(), N, V, 1.0f / cnt);
    EXPECT_LE(rel_error(zf, fd([&](const Vec& v) { return ce_ref(v, tg, N, V); }, z)), kTol);
}

// ---- the model --------------------------------------------------------------------------------------------

TEST(Qwen3TrainModel, LayoutUsesHfNamesAndTies) {
    const Qwen3Config c = small_config(true);
    Qwen3TrainModel m(c);
    EXPECT_EQ(m.num_params(), c.num_params());
    EXPECT_EQ(m.head_name(), "model.embed_tokens.weight");
    EXPECT_NO_THROW(m.info("model.layers.1.self_attn.q_norm.weight"));
    EXPECT_THROW(m.info("lm_head.weight"), Error);
    Qwen3TrainModel u(small_config(false));
    EXPECT_EQ(u.head_name(), "lm_head.weight");
    EXPECT_EQ(u.info("lm_head.weight").shape, (Shape{97, 48}));
    EXPECT_EQ(u.info("model.layers.0.self_attn.q_proj.weight").shape, (Shape{64, 48}));
    EXPECT_EQ(u.info("model.layers.0.self_attn.o_proj.weight").shape, (Shape{48, 64}));
    EXPECT_TRUE(u.info("model.layers.0.mlp.down_proj.weight").matrix);
    EXPECT_FALSE(u.info("model.layers.0.post_attention_layernorm.weight").matrix);
    // default sizing from depth
    const Qwen3Config d = Qwen3Config::from_depth(4, 8192, 1024, {});
    EXPECT_EQ(d.hidden, 256);
    EXPECT_EQ(d.n_head, 4);
    EXPECT_EQ(d.n_kv_head, 2);
    EXPECT_EQ(d.head_dim, 64);
    EXPECT_EQ(d.intermediate, 768);
    EXPECT_FALSE(d.tie);
    Qwen3Config::Overrides t;
    t.tie = 1;
    EXPECT_TRUE(Qwen3Config::from_depth(4, 8192, 1024, t).tie);
}

TEST(Qwen3TrainModel, BackwardMatchesFiniteDifferencesPerTensor) {
    for (bool tie : {true, false}) {
        Qwen3Config c = small_config(tie);
        c.n_layer = 2;
        Qwen3TrainModel m(c);
        randomize(m, tie ? 7 : 8);
        const int64_t B = 2, T = 9;
        std::vector<int32_t> ids(B * T), tg(B * T);
        std::mt19937 g(3);
        for (auto& v : ids) v = int32_t(g() % c.vocab_size);
        for (auto& v : tg) v = int32_t(g() % c.vocab_size);
        tg[4] = -1;
        m.zero_grad();
        m.forward(ids.data(), tg.data(), B, T);
        m.backward();
        const std::vector<float> grads = m.grads();
        for (const ParamInfo& p : m.params()) {
            // direction: this tensor's own gradient, normalised; d/dh L(w + h d) at 0 must be |g_p|
            double gn = 0;
            for (int64_t i = 0; i < p.numel; ++i) gn += double(grads[p.offset + i]) * grads[p.offset + i];
            gn = std::sqrt(gn);
            ASSERT_GT(gn, 0.0) << p.name;
            float* w = m.param(p.name);
            const std::vector<float> w0(w, w + p.numel);
            auto loss_at = [&](double h) {
                for (int64_t i = 0; i < p.numel; ++i)
                    w[i] = static_cast<float>(w0[i] + h * grads[p.offset + i] / gn);
                return double(m.forward(ids.data(), tg.data(), B, T));
            };
            const double h = 1e-2;
            const double num = (loss_at(h) - loss_at(-h)) / (2 * h);
            std::copy(w0.begin(), w0.end(), w);
            EXPECT_NEAR(num / gn, 1.0, 2e-2) << p.name << (tie ? " (tied)" : " (untied)") << ": fd " << num
                                              << " vs |grad| " << gn;
        }
    }
}

TEST(Qwen3TrainModel, LogitsEqualDecoderModelOnSavedCheckpoint) {
    const std::string dir = make_temp_dir("qwen3_logits");
    for (bool tie : {true, false}) {
        const Qwen3Config c = small_config(tie);
        Qwen3TrainModel m(c);
        randomize(m, tie ? 17 : 18);
        const std::string out = dir + (tie ? "/tied" : "/untied");
        fs::create_directories(out);
        m.save(out);
        // the config is a Qwen3ForCausalLM that ModelConfig reads back with the same sizes
        const ModelConfig mc = ModelConfig::load(out);
        EXPECT_EQ(mc.architecture, "Qwen3ForCausalLM");
        EXPECT_TRUE(mc.qk_norm);
        EXPECT_EQ(mc.tie_word_embeddings, tie);
        EXPECT_EQ(mc.head_dim, 16);
        EXPECT_EQ(mc.num_kv_heads, 2);

        const int64_t B = 2, T = 19, V = c.vocab_size;
        std::vector<int32_t> ids(B * T);
        std::mt19937 g(tie ? 5 : 6);
        for (auto& v : ids) v = int32_t(g() % V);
        m.forward(ids.data(), nullptr, B, T);
        const std::vector<float> ours(m.logits(), m.logits() + B * T * V);

        DecoderModel dm = DecoderModel::load(out);
        for (int64_t b = 0; b < B; ++b) {
            KVCache cache = dm.new_cache(T, DType::F32);
            std::vector<float> ref(T * V);
            dm.forward(ids.data() + b * T, T, cache, ref.data(), true);
            const std::vector<float> row(ours.begin() + b * T * V, ours.begin() + (b + 1) * T * V);
            EXPECT_LE(rel_error(row, Vec(ref.begin(), ref.end())), 1e-5) << (tie ? "tied" : "untied") << " batch " << b;
        }
        // and load() reads back exactly what save() wrote
        Qwen3TrainModel m2(Qwen3Config::load(out));
        m2.load(out);
        EXPECT_EQ(m2.data(), m.data());
    }
    fs::remove_all(dir);
}

// ---- lmscope train --arch qwen3 -----------------------------------------------------------------------------

TEST(Qwen3TrainCli, LossGoesDownAndOtherCommandsReadTheCheckpoint) {
    Env env;
    lmscope::testing::write_file(env.dir + "/text.txt", lmscope::testing::small_text());
    const std::string data = " --data " + env.dir + "/text.txt ";
    auto r = run_cli("train " + kTiny + data + "--steps 30 --out " + env.dir + "/m");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("Qwen3 depth 2 (hidden 32, 4 heads x 8, 2 kv heads"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("o_proj.weight is still zero (zero-initialised)"), std::string::npos) << r.output;
    const std::vector<std::string> l = losses_in(read_file(env.dir + "/m/log.jsonl"));
    ASSERT_EQ(l.size(), 30u);
    EXPECT_LT(std::stod(l.back()), std::stod(l.front()) - 2.0) << l.front() << " -> " << l.back();
    for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "optimizer.safetensors"})
        EXPECT_TRUE(fs::exists(env.dir + "/m/" + f)) << f;
    EXPECT_FALSE(fs::exists(env.dir + "/m/gpt_config.json"));
    const ModelConfig mc = ModelConfig::load(env.dir + "/m");
    EXPECT_EQ(mc.bos_token_id.value_or(-1), mc.eos_token_ids.at(0));

    auto run = run_cli("run --model " + env.dir + "/m --prompt \"the river\" --max-new-tokens 4");
    EXPECT_EQ(run.exit_code, 0) << run.output;
    auto ins = run_cli("inspect " + env.dir + "/m");
    EXPECT_EQ(ins.exit_code, 0) << ins.output;
    EXPECT_NE(ins.output.find("model.layers.1.self_attn.q_norm.weight"), std::string::npos) << ins.output;
    auto ev = run_cli("eval --model " + env.dir + "/m" + data + "--json");
    EXPECT_EQ(ev.exit_code, 0) << ev.output;
    EXPECT_NE(ev.output.find("\"bpb\":"), std::string::npos) << ev.output;
    auto q = run_cli("quantize --fp8 " + env.dir + "/m " + env.dir + "/m8");
    EXPECT_EQ(q.exit_code, 0) << q.output;
    auto r8 = run_cli("run --model " + env.dir + "/m8 --prompt \"the river\" --max-new-tokens 2");
    EXPECT_EQ(r8.exit_code, 0) << r8.output;
}

TEST(Qwen3TrainCli, ResumeContinuesExactly) {
    Env env;
    lmscope::testing::write_file(env.dir + "/text.txt", lmscope::testing::small_text());
    const std::string data = " --data " + env.dir + "/text.txt ";
    for (const char* tie : {" --tie", ""}) {
        const std::string a = env.dir + "/a" + (tie[0] ? "t" : "u"), b = env.dir + "/b" + (tie[0] ? "t" : "u");
        auto ra = run_cli("train " + kTiny + tie + data + "--steps 6 --out " + a);
        ASSERT_EQ(ra.exit_code, 0) << ra.output;
        auto rb = run_cli("train " + kTiny + tie + data + "--steps 6 --stop-at 3 --out " + b);
        ASSERT_EQ(rb.exit_code, 0) << rb.output;
        auto rc = run_cli("train --resume " + b + " --eval-tokens 256 --log-every 1");
        ASSERT_EQ(rc.exit_code, 0) << rc.output;
        const std::vector<std::string> la = losses_in(read_file(a + "/log.jsonl"));
        const std::vector<std::string> lb = losses_in(read_file(b + "/log.jsonl"));
        ASSERT_EQ(la.size(), 6u);
        EXPECT_EQ(la, lb) << tie;
        EXPECT_EQ(read_file(a + "/model.safetensors"), read_file(b + "/model.safetensors")) << tie;
        EXPECT_NE(la.front(), la.back());
        if (!tie[0]) {
            EXPECT_NE(ra.output.find("because lm_head is zero-initialised"), std::string::npos) << ra.output;
        }
    }
    // refused, nothing overwritten: another depth, another arch, sizes on resume
    const std::string before = read_file(env.dir + "/bt/model.safetensors");
    auto d = run_cli("train --resume " + env.dir + "/bt --depth 3");
    EXPECT_EQ(d.exit_code, 1);
    EXPECT_NE(d.output.find("the checkpoint has depth 2, --depth says 3"), std::string::npos) << d.output;
    auto g = run_cli("train --resume " + env.dir + "/bt --arch gpt");
    EXPECT_EQ(g.exit_code, 1);
    EXPECT_NE(g.output.find("the checkpoint is a qwen3 model, --arch says gpt"), std::string::npos) << g.output;
    auto s = run_cli("train --resume " + env.dir + "/bt --hidden 64");
    EXPECT_EQ(s.exit_code, 1);
    EXPECT_EQ(read_file(env.dir + "/bt/model.safetensors"), before);
}

TEST(Qwen3TrainCli, BadSizesAreUsageErrors) {
    Env env;
    lmscope::testing::write_file(env.dir + "/text.txt", lmscope::testing::small_text());
    const std::string data = " --data " + env.dir + "/text.txt --steps 1 --out " + env.dir + "/o";
    auto kv = run_cli("train --arch qwen3 --depth 2 --heads 4 --kv-heads 3" + data);
    EXPECT_NE(kv.exit_code, 0);
    EXPECT_NE(kv.output.find("not a multiple of kv heads 3"), std::string::npos) << kv.output;
    auto gh = run_cli("train --arch gpt --hidden 64" + data);
    EXPECT_EQ(gh.exit_code, 2);
    EXPECT_NE(gh.output.find("need --arch qwen3"), std::string::npos) << gh.output;
    auto bad = run_cli("train --arch llama" + data);
    EXPECT_EQ(bad.exit_code, 2);
    EXPECT_FALSE(fs::exists(env.dir + "/o"));
}
