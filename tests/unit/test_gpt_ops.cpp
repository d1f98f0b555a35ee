// Each GPT layer's backward (src/gpt/kernels.h, f32) against central finite differences of a float64
// reference forward written here, on small odd shapes. The scalar probed is L = sum(out * R) with a
// fixed random R. Tolerance: ||ours - fd|| / ||fd|| <= 1e-4 (f32 arithmetic vs float64 differences
// with h = 1e-5). The GEMM is checked against a double triple loop (<= 1e-6 relative).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <random>
#include <vector>

#include "gpt/gpt.h"
#include "gpt/kernels.h"
#include "grad_check.h"
#include "test_util.h"

using namespace lmscope::gpt;
using lmscope::testing::rel_error;

namespace {

constexpr double kTol = 1e-4;
using lmscope::testing::dotv;
using lmscope::testing::fd;
using lmscope::testing::randn;
using lmscope::testing::to_f;
using lmscope::testing::Vec;

// ---- float64 references ----
Vec rmsnorm_ref(const Vec& x, int64_t N, int64_t C) {
    Vec y(x.size());
    for (int64_t n = 0; n < N; ++n) {
        double ss = 0;
        for (int64_t i = 0; i < C; ++i) ss += x[n * C + i] * x[n * C + i];
        const double r = 1.0 / std::sqrt(ss / C + FLT_EPSILON);
        for (int64_t i = 0; i < C; ++i) y[n * C + i] = x[n * C + i] * r;
    }
    return y;
}
Vec matmul_ref(const Vec& x, const Vec& w, int64_t N, int64_t IC, int64_t OC) {
    Vec y(N * OC, 0.0);
    for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < OC; ++o)
            for (int64_t i = 0; i < IC; ++i) y[n * OC + o] += x[n * IC + i] * w[o * IC + i];
    return y;
}
Vec rope_ref(const Vec& x, const std::vector<float>& cs, const std::vector<float>& sn, int64_t N, int64_t T, int64_t H,
             int64_t HD) {
    Vec y(x.size());
    const int64_t d = HD / 2;
    for (int64_t n = 0; n < N; ++n)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t i = 0; i < d; ++i) {
                const double c = cs[(n % T) * d + i], s = sn[(n % T) * d + i];
                const double x1 = x[(n * H + h) * HD + i], x2 = x[(n * H + h) * HD + i + d];
                y[(n * H + h) * HD + i] = x1 * c + x2 * s;
                y[(n * H + h) * HD + i + d] = -x1 * s + x2 * c;
            }
    return y;
}
Vec attention_ref(const Vec& q, const Vec& k, const Vec& v, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HD) {
    Vec out(B * T * NH * HD, 0.0);
    const double scale = 1.0 / std::sqrt(double(HD));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < NH; ++h) {
            const int64_t kh = h / (NH / NKV);
            for (int64_t t = 0; t < T; ++t) {
                Vec s(t + 1);
                double mx = -1e300;
                for (int64_t t2 = 0; t2 <= t; ++t2) {
                    double d = 0;
                    for (int64_t i = 0; i < HD; ++i)
                        d += q[((b * T + t) * NH + h) * HD + i] * k[((b * T + t2) * NKV + kh) * HD + i];
                    s[t2] = d * scale;
                    mx = std::max(mx, s[t2]);
                }
                double sum = 0;
                for (auto& x : s) sum += (x = std::exp(x - mx));
                for (int64_t t2 = 0; t2 <= t; ++t2)
                    for (int64_t i = 0; i < HD; ++i)
                        out[((b * T + t) * NH + h) * HD + i] += s[t2] / sum * v[((b * T + t2) * NKV + kh) * HD + i];
            }
        }
    return out;
}
double softcap_ce_ref(const Vec& z, const std::vector<int32_t>& tg, int64_t N, int64_t V, double cap) {
    double tot = 0;
    int cnt = 0;
    for (int64_t n = 0; n < N; ++n) {
        if (tg[n] < 0) continue;
        Vec c(V);
        double mx = -1e300;
        for (int64_t i = 0; i < V; ++i) mx = std::max(mx, c[i] = cap * std::tanh(z[n * V + i] / cap));
        double s = 0;
        for (double x : c) s += std::exp(x - mx);
        tot += mx + std::log(s) - c[tg[n]];
        ++cnt;
    }
    return tot / cnt;
}

}  // namespace

TEST(GptOps, GemmMatchesDoubleLoop) {
    for (auto [M, Nc, K] : {std::tuple<int64_t, int64_t, int64_t>{13, 37, 19}, {100, 40, 300}, {6, 16, 1}, {1, 1, 7}}) {
        Vec a = randn(M * K, 1), b = randn(K * Nc, 2), c0 = randn(M * Nc, 3);
        // plain and transposed-A views, overwrite and accumulate
        for (int trans = 0; trans < 2; ++trans)
            for (int acc = 0; acc < 2; ++acc) {
                std::vector<float> af = to_f(a), bf = to_f(b), cf = to_f(c0);
                const int64_t a_rs = trans ? 1 : K, a_cs = trans ? M : 1;
                gemm(cf.data(), Nc, af.data(), a_rs, a_cs, bf.data(), Nc, M, Nc, K, acc != 0);
                Vec ref(M * Nc);
                for (int64_t i = 0; i < M; ++i)
                    for (int64_t j = 0; j < Nc; ++j) {
                        double s = acc ? c0[i * Nc + j] : 0.0;
                        for (int64_t k = 0; k < K; ++k) s += double(af[i * a_rs + k * a_cs]) * bf[k * Nc + j];
                        ref[i * Nc + j] = s;
                    }
                EXPECT_LE(rel_error(cf, ref), 1e-6) << M << "x" << Nc << "x" << K << " trans " << trans << " acc " << acc;
            }
    }
}

TEST(GptOps, RmsnormBackward) {
    const int64_t N = 5, C = 7;
    Vec x = randn(N * C, 11), R = randn(N * C, 12);
    std::vector<float> xf = to_f(x), y(N * C), rstd(N), dx(N * C);
    rmsnorm_forward(y.data(), rstd.data(), xf.data(), N, C, FLT_EPSILON);
    EXPECT_LE(rel_error(y, rmsnorm_ref(x, N, C)), 1e-6);
    rmsnorm_backward(dx.data(), to_f(R).data(), y.data(), rstd.data(), N, C, false);
    EXPECT_LE(rel_error(dx, fd([&](const Vec& v) { return dotv(rmsnorm_ref(v, N, C), R); }, x)), kTol);
}

TEST(GptOps, MatmulBackward) {
    const int64_t N = 5, IC = 7, OC = 9;
    Vec x = randn(N * IC, 21), w = randn(OC * IC, 22), R = randn(N * OC, 23);
    std::vector<float> xf = to_f(x), wf = to_f(w), y(N * OC), dx(N * IC), dw(OC * IC, 0.0f);
    matmul_forward(y.data(), xf.data(), wf.data(), N, IC, OC);
    EXPECT_LE(rel_error(y, matmul_ref(x, w, N, IC, OC)), 1e-6);
    matmul_backward(dx.data(), dw.data(), to_f(R).data(), xf.data(), wf.data(), N, IC, OC, false);
    EXPECT_LE(rel_error(dx, fd([&](const Vec& v) { return dotv(matmul_ref(v, w, N, IC, OC), R); }, x)), kTol);
    EXPECT_LE(rel_error(dw, fd([&](const Vec& v) { return dotv(matmul_ref(x, v, N, IC, OC), R); }, w)), kTol);
}

TEST(GptOps, RopeBackwardAndTables) {
    const int64_t B = 2, T = 3, H = 2, HD = 6, N = B * T;
    std::vector<float> cs, sn;
    rope_tables(cs, sn, T, HD, 10000.0);
    // position 0 is the identity; tables hold bf16 values
    EXPECT_EQ(cs[0], 1.0f);
    EXPECT_EQ(sn[0], 0.0f);
    EXPECT_NEAR(cs[1 * 3 + 0], std::cos(1.0), 4e-3);
    Vec x = randn(N * H * HD, 31), R = randn(N * H * HD, 32);
    std::vector<float> y(x.size()), dx(x.size());
    rope_forward(y.data(), to_f(x).data(), cs.data(), sn.data(), N, T, H, HD);
    EXPECT_LE(rel_error(y, rope_ref(x, cs, sn, N, T, H, HD)), 1e-6);
    rope_backward(dx.data(), to_f(R).data(), cs.data(), sn.data(), N, T, H, HD);
    EXPECT_LE(rel_error(dx, fd([&](const Vec& v) { return dotv(rope_ref(v, cs, sn, N, T, H, HD), R); }, x)), kTol);
}

TEST(GptOps, AttentionBackwardGqa) {
    const int64_t B = 2, T = 5, NH = 4, NKV = 2, HD = 6;
    const float scale = 1.0f / std::sqrt(float(HD));
    Vec q = randn(B * T * NH * HD, 41), k = randn(B * T * NKV * HD, 42), v = randn(B * T * NKV * HD, 43);
    Vec R = randn(B * T * NH * HD, 44);
    std::vector<float> out(q.size()), att(B * NH * T * T), dq(q.size()), dk(k.size()), dv(v.size()),
        datt(att.size());
    std::vector<float> qf = to_f(q), kf = to_f(k), vf = to_f(v);
    attention_forward(out.data(), att.data(), qf.data(), kf.data(), vf.data(), B, T, NH, NKV, HD, scale);
    EXPECT_LE(rel_error(out, attention_ref(q, k, v, B, T, NH, NKV, HD)), 1e-6);
    attention_backward(dq.data(), dk.data(), dv.data(), datt.data(), to_f(R).data(), att.data(), qf.data(), kf.data(),
                       vf.data(), B, T, NH, NKV, HD, scale);
    EXPECT_LE(rel_error(dq, fd([&](const Vec& z) { return dotv(attention_ref(z, k, v, B, T, NH, NKV, HD), R); }, q)), kTol);
    EXPECT_LE(rel_error(dk, fd([&](const Vec& z) { return dotv(attention_ref(q, z, v, B, T, NH, NKV, HD), R); }, k)), kTol);
    EXPECT_LE(rel_error(dv, fd([&](const Vec& z) { return dotv(attention_ref(q, k, z, B, T, NH, NKV, HD), R); }, v)), kTol);
}

TEST(GptOps, Relu2Backward) {
    const int64_t n = 11;
    Vec x = randn(n, 51), R = randn(n, 52);
    for (auto& e : x)
        if (std::abs(e) < 0.05) e = 0.3;  // keep away from the kink
    std::vector<float> y(n), dx(n);
    relu2_forward(y.data(), to_f(x).data(), n);
    relu2_backward(dx.data(), to_f(R).data(), to_f(x).data(), n);
    auto ref = [&](const Vec& v) {
        double s = 0;
        for (int64_t i = 0; i < n; ++i) s += (v[i] > 0 ? v[i] * v[i] : 0.0) * R[i];
        return s;
    };
    EXPECT_LE(rel_error(dx, fd(ref, x)), kTol);
}

TEST(GptOps, SoftcapCrossEntropyBackwardIgnoresMinusOne) {
    const int64_t N = 5, V = 11;
    for (float cap : {15.0f, 2.0f}) {
        Vec z = randn(N * V, 61, 3.0);
        std::vector<int32_t> tg = {3, -1, 0, 10, 7};
        std::vector<float> zf = to_f(z), losses(N);
        const int64_t count = softcap_crossentropy_forward(zf.data(), losses.data(), tg.data(), N, V, cap);
        ASSERT_EQ(count, 4);
        EXPECT_EQ(losses[1], 0.0f);
        double mean = 0;
        for (float l : losses) mean += l;
        mean /= count;
        EXPECT_NEAR(mean, softcap_ce_ref(z, tg, N, V, cap), 1e-5);
        softcap_crossentropy_backward(zf.data(), tg.data(), N, V, cap, 1.0f / float(count));
        for (int64_t i = 0; i < V; ++i) EXPECT_EQ(zf[1 * V + i], 0.0f);
        EXPECT_LE(rel_error(zf, fd([&](const Vec& v) { return softcap_ce_ref(v, tg, N, V, cap); }, z)), kTol);
    }
}

TEST(GptOps, EncoderBackwardAccumulatesRepeatedIds) {
    const int64_t N = 6, C = 3, V = 4;
    std::vector<int32_t> ids = {1, 3, 1, 0, 1, 3};
    Vec R = randn(N * C, 71);
    std::vector<float> dwte(V * C, 0.0f);
    encoder_backward(dwte.data(), to_f(R).data(), ids.data(), N, C);
    Vec ref(V * C, 0.0);
    for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < C; ++i) ref[ids[n] * C + i] += R[n * C + i];
    EXPECT_LE(rel_error(dwte, ref), 1e-7);
    for (int64_t i = 0; i < C; ++i) EXPECT_EQ(dwte[2 * C + i], 0.0f);  // id 2 never seen
}

// Whole model, GQA (4 query heads on 2 kv heads), every parameter nonzero: backward vs central
// differences of the f32 forward itself (h = 1e-2, so a looser 2e-2 tolerance on sampled entries).
TEST(GptOps, ModelBackwardGqaMatchesFiniteDifferences) {
    GptConfig cfg;
    cfg.n_layer = 2;
    cfg.n_embd = 16;
    cfg.n_head = 4;
    cfg.n_kv_head = 2;
    cfg.head_dim = 8;
    cfg.vocab_size = 13;
    cfg.sequence_len = 8;
    GptModel m(cfg);
    m.init_nanochat(7);
    std::mt19937 g(5);
    std::normal_distribution<float> nd(0.0f, 0.2f);
    for (const ParamInfo& p : m.params())
        if (p.zero_init)
            for (int64_t i = 0; i < p.numel; ++i) m.data()[p.offset + i] = nd(g);
    const int64_t B = 2, T = 5;
    std::vector<int32_t> ids = {1, 5, 7, 2, 12, 0, 3, 3, 9, 11}, tg = {5, 7, 2, 12, -1, 3, 3, 9, 11, 4};
    m.zero_grad();
    m.forward(ids.data(), tg.data(), B, T);
    m.backward();
    for (const ParamInfo& p : m.params()) {
        std::vector<double> ours, ref;
        for (int64_t s = 0; s < 6; ++s) {
            const int64_t i = p.offset + (s * 7919) % p.numel;
            float& w = m.data()[i];
            const float w0 = w, h = 1e-2f;
            w = w0 + h;
            const double lp = m.forward(ids.data(), tg.data(), B, T);
            w = w0 - h;
            const double lm = m.forward(ids.data(), tg.data(), B, T);
            w = w0;
            ref.push_back((lp - lm) / (2.0 * h));
            ours.push_back(m.grads()[i]);
        }
        EXPECT_LE(rel_error(ours, ref), 2e-2) << p.name;
    }
}

// The trace hook: every documented name arrives with its shape; scores only when asked for.
TEST(GptOps, ObserverSeesStableNames) {
    struct Names : lmscope::TensorObserver {
        bool scores = false;
        std::map<std::string, lmscope::Shape> seen;
        bool wants(const std::string& n) const override { return scores || n.find("scores") == std::string::npos; }
        void observe(const std::string& n, const float*, const lmscope::Shape& s) override { seen[n] = s; }
    } obs;
    GptConfig cfg;
    cfg.n_layer = 1;
    cfg.n_embd = 16;
    cfg.n_head = 2;
    cfg.n_kv_head = 1;
    cfg.head_dim = 8;
    cfg.vocab_size = 11;
    cfg.sequence_len = 4;
    GptModel m(cfg);
    m.init_nanochat(1);
    std::vector<int32_t> ids = {1, 2, 3}, tg = {2, 3, 4};
    m.forward(ids.data(), tg.data(), 1, 3, &obs);
    m.backward(&obs);
    for (const char* n : {"transformer.wte", "transformer.wte_norm", "transformer.h.0.attn_norm", "transformer.h.0.attn.c_q",
                          "transformer.h.0.attn.k_rope", "transformer.h.0.attn.q_norm", "transformer.h.0.attn.attn_out",
                          "transformer.h.0.attn.c_proj", "transformer.h.0.attn_residual", "transformer.h.0.mlp_norm",
                          "transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.relu2", "transformer.h.0.mlp.c_proj",
                          "transformer.h.0", "transformer.norm_f", "lm_head", "logits", "loss",
                          "grad.transformer.h.0.attn.c_q.weight", "grad.lm_head.weight", "grad.transformer.wte.weight",
                          "grad.transformer.h.0"})
        EXPECT_TRUE(obs.seen.count(n)) << n;
    EXPECT_EQ(obs.seen["transformer.h.0.attn.c_k"], (lmscope::Shape{1, 3, 1, 8}));
    EXPECT_EQ(obs.seen["loss"], (lmscope::Shape{1}));
    EXPECT_FALSE(obs.seen.count("transformer.h.0.attn.scores"));
    obs.scores = true;
    m.forward(ids.data(), tg.data(), 1, 3, &obs);
    EXPECT_EQ(obs.seen["transformer.h.0.attn.scores"], (lmscope::Shape{1, 2, 3, 3}));
}
