// Table-driven op test: every fast CPU op against its scalar reference, on odd shapes, for each
// weight dtype and each ISA level this CPU has, with fresh random inputs and poisoned outputs
// (NaN-filled, so an element the op forgets to write fails the comparison).
// Tolerances (max |fast - ref| / (1e-6 + max |ref|)): f32 arithmetic with f32 or narrower stored
// weights: 2e-5 (all conversions are exact; only summation order differs). That includes block FP8
// (codes decode exactly) and the AWQ int4 GEMM path ((q - z) * s is exact in f32). The AWQ GEMV factors
// the zero point out of each group (s * (sum x q - z * sum x)); the two sums are up to ~15x the
// result, so their f32 rounding is allowed 5e-5 (observed below 2e-5).
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>

#include "ops/cpu/gemm.h"
#include "ops/cpu/simd.h"
#include "ops/ops.h"
#include "quant/awq.h"
#include "quant/awq_pack.h"
#include "quant/fp8.h"

using namespace lmscope;

namespace {

constexpr double kTol = 2e-5;
constexpr double kTolAwqGemv = 5e-5;

std::vector<float> randn(int64_t n, std::mt19937& rng, float scale = 1.0f) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = d(rng);
    return v;
}

Tensor tensor_of(const std::vector<float>& v, Shape shape, DType dt) {
    return Tensor::from_f32(std::move(shape), v).to(dt);
}

std::vector<float> poisoned(int64_t n) {
    return std::vector<float>(static_cast<size_t>(n), std::numeric_limits<float>::quiet_NaN());
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
    double md = 0, mr = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        if (std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
        md = std::max(md, std::abs(double(a[i]) - b[i]));
        mr = std::max(mr, std::abs(double(b[i])));
    }
    return md / (1e-6 + mr);
}

// y equals want element by element, NaN where want is NaN.
void expect_same_values(const std::vector<float>& y, const std::vector<float>& want) {
    ASSERT_EQ(y.size(), want.size());
    for (size_t i = 0; i < y.size(); ++i) {
        ASSERT_EQ(std::isnan(y[i]), std::isnan(want[i])) << i;
        if (!std::isnan(want[i])) {
            ASSERT_EQ(y[i], want[i]) << i;
        }
    }
}

// Block-FP8 linear (out, in) from random weights; some codes replaced so that every E4M3 code except
// the NaNs (0x7f, 0xff; see ops/cpu/fp8_rows.h) occurs, subnormals included.
Linear fp8_linear(int64_t out, int64_t in, Fp8BlockSize b, bool bias, std::mt19937& rng) {
    auto w = randn(out * in, rng, 0.1f);
    const Shape ss = fp8_scale_shape({out, in}, b);
    Tensor codes = Tensor::empty(DType::F8_E4M3, {out, in});
    std::vector<float> scales(static_cast<size_t>(ss[0] * ss[1]));
    fp8_block_quantize_ref(w.data(), out, in, b, codes.data_mut<uint8_t>(), scales.data());
    uint8_t* c = codes.data_mut<uint8_t>();
    for (int64_t i = 0, code = 0; i < out * in; i += 3, code = (code + 1) % 256)
        c[i] = static_cast<uint8_t>((code & 0x7f) == 0x7f ? code - 1 : code);
    Linear l = Linear::dense("fp8", codes, bias ? tensor_of(randn(out, rng), {out}, DType::F32) : Tensor());
    l.format = LinearFormat::Fp8Block;
    l.scale = Tensor::from_f32(ss, scales);
    l.block_out = b.out;
    l.block_in = b.in;
    return l;
}

// AWQ int4 linear (out, in) in the AutoAWQ gemm layout; scales F16 or F32, with or without the CPU tile copy.
Linear awq_linear(int64_t out, int64_t in, int64_t g, bool bias, bool f32_scales, bool tiles, std::mt19937& rng) {
    auto w = randn(out * in, rng, 0.05f);
    AwqQuantized qr;
    awq_pseudo_quantize(w.data(), out, in, g, AwqMath::F16, &qr);
    const AwqPacked pk = awq_pack(qr);
    Linear l;
    l.name = "awq";
    l.format = LinearFormat::AwqInt4;
    l.weight = pk.qweight;
    l.qzeros = pk.qzeros;
    l.scale = f32_scales ? pk.scales.to(DType::F32) : pk.scales;
    if (tiles) l.qweight_tiles = awq_tile_qweight(pk.qweight);
    if (bias) l.bias = tensor_of(randn(out, rng), {out}, DType::F32);
    l.group_size = g;
    l.in_features = in;
    l.out_features = out;
    return l;
}

class OpsVsRef : public ::testing::TestWithParam<simd::Isa> {
protected:
    void SetUp() override {
        if (!simd::isa_supported(GetParam())) GTEST_SKIP() << simd::isa_name(GetParam()) << " not on this CPU";
        saved_ = simd::active_isa();
        simd::force_isa(GetParam());
    }
    void TearDown() override { simd::force_isa(saved_); }
    simd::Isa saved_ = simd::Isa::Portable;
    std::mt19937 rng_{1234};
};

}  // namespace

TEST_P(OpsVsRef, Linear) {
    for (DType dt : {DType::F32, DType::BF16, DType::F16})
        for (int64_t T : {1, 2, 3, 4, 5, 7, 9})
            for (auto [out, in] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {7, 33}, {33, 127}, {129, 7}, {64, 256}, {17, 4097}}) {
                if (in * out > 200000 && T > 5) continue;
                auto x = randn(T * in, rng_);
                Linear w = Linear::dense("w", tensor_of(randn(out * in, rng_, 0.1f), {out, in}, dt),
                                         tensor_of(randn(out, rng_), {out}, DType::F32));
                auto y = poisoned(T * out), yr = poisoned(T * out);
                linear_cpu(x.data(), T, w, y.data());
                linear_ref(x.data(), T, w, yr.data());
                ASSERT_LE(max_rel_diff(y, yr), kTol) << dtype_name(dt) << " T=" << T << " out=" << out << " in=" << in;
            }
}

TEST_P(OpsVsRef, LinearFp8) {
    struct Case { int64_t out, in; Fp8BlockSize b; };
    for (Case c : {Case{1, 1, {128, 128}}, Case{7, 33, {128, 128}}, Case{33, 127, {16, 24}}, Case{129, 300, {128, 128}},
                   Case{64, 256, {32, 64}}, Case{17, 1000, {128, 128}}, Case{5, 4097, {128, 128}}})
        for (int64_t T : {1, 2, 3, 4, 5, 13}) {
            Linear w = fp8_linear(c.out, c.in, c.b, c.out % 2 == 1, rng_);
            auto x = randn(T * c.in, rng_);
            if (T == 2) x[static_cast<size_t>(c.in)] = 3e5f;  // token 1: |x| >= 64, another pre-scale (fp8_rows_avx512.cpp)
            for (bool act : {false, true}) {
                if (act && T % 2 == 0) continue;
                set_fp8_activation_mode(act);
                auto y = poisoned(T * c.out), yr = poisoned(T * c.out);
                linear_fp8_cpu(x.data(), T, w, y.data());
                linear_fp8_ref(x.data(), T, w, yr.data());
                set_fp8_activation_mode(false);
                ASSERT_LE(max_rel_diff(y, yr), kTol) << "T=" << T << " out=" << c.out << " in=" << c.in << " block "
                                                     << c.b.out << "x" << c.b.in << " act=" << act;
            }
        }
}

// A non-finite input takes the F16C decode at the AVX-512 level; every level must give the reference's
// non-finite pattern and its finite values.
TEST_P(OpsVsRef, LinearFp8NonFiniteInput) {
    Linear w = fp8_linear(9, 200, {128, 128}, false, rng_);
    for (float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
        auto x = randn(200, rng_);
        x[150] = bad;  // second block only
        std::vector<float> y(9), yr(9);
        linear_fp8_cpu(x.data(), 1, w, y.data());
        linear_fp8_ref(x.data(), 1, w, yr.data());
        expect_same_values(y, yr);  // +-inf, NaN
    }
}

TEST_P(OpsVsRef, LinearAwq) {
    struct Case { int64_t out, in, g; };
    for (Case c : {Case{8, 32, 32}, Case{24, 96, 32}, Case{136, 256, 64}, Case{200, 384, 128}, Case{264, 128, 128},
                   Case{1032, 256, 128}})
        for (int64_t T : {1, 2, 3, 4, 5, 13})
            for (int variant = 0; variant < 4; ++variant) {
                const bool f32_scales = variant & 1, tiles = variant & 2;
                if (T * c.out * c.in > 3000000 && variant != 2) continue;
                Linear w = awq_linear(c.out, c.in, c.g, c.out % 3 == 0, f32_scales, tiles, rng_);
                auto x = randn(T * c.in, rng_);
                auto y = poisoned(T * c.out), yr = poisoned(T * c.out);
                linear_awq_cpu(x.data(), T, w, y.data());
                linear_awq_ref(x.data(), T, w, yr.data());
                ASSERT_LE(max_rel_diff(y, yr), T < 4 ? kTolAwqGemv : kTol)
                    << "T=" << T << " out=" << c.out << " in=" << c.in << " g=" << c.g << " f32 scales " << f32_scales
                    << " tiles " << tiles;
            }
}

// Linears of every format on one input in one call (q/k/v, gate/up in the decoder): each output as its
// own linear_ref, decode (one parallel_for for all) and prefill (separate calls).
TEST_P(OpsVsRef, LinearSharedInput) {
    const int64_t in = 256;
    const Linear ws[4] = {Linear::dense("d", tensor_of(randn(33 * in, rng_, 0.1f), {33, in}, DType::BF16),
                                        tensor_of(randn(33, rng_), {33}, DType::F32)),
                          fp8_linear(40, in, {128, 128}, true, rng_), awq_linear(136, in, 64, true, false, true, rng_),
                          awq_linear(24, in, 32, false, true, false, rng_)};
    for (int64_t T : {1, 2, 3, 5}) {
        for (int n : {2, 4}) {
            auto x = randn(T * in, rng_);
            std::vector<std::vector<float>> y, yr;
            const Linear* wp[4];
            float* yp[4];
            for (int i = 0; i < n; ++i) {
                y.push_back(poisoned(T * ws[i].out()));
                yr.push_back(poisoned(T * ws[i].out()));
                wp[i] = &ws[i];
            }
            for (int i = 0; i < n; ++i) yp[i] = y[static_cast<size_t>(i)].data();
            linear_shared_input_cpu(x.data(), T, wp, yp, n);
            linear_ref(x.data(), T, ws[0], yr[0].data());
            linear_fp8_ref(x.data(), T, ws[1], yr[1].data());
            if (n == 4) {
                linear_awq_ref(x.data(), T, ws[2], yr[2].data());
                linear_awq_ref(x.data(), T, ws[3], yr[3].data());
            }
            for (int i = 0; i < n; ++i)
                ASSERT_LE(max_rel_diff(y[static_cast<size_t>(i)], yr[static_cast<size_t>(i)]),
                          i >= 2 && T < 4 ? kTolAwqGemv : kTol)
                    << "T=" << T << " linear " << i << " of " << n;
        }
    }
}

// A non-finite input cannot be quantised for the integer GEMV: it takes the f32 GEMV, the same output as
// without the tiled copy (whose non-finite pattern is its own: the zero point is factored out per group).
TEST_P(OpsVsRef, LinearAwqNonFiniteInput) {
    std::mt19937 r1(7), r2(7);
    const Linear wt = awq_linear(40, 256, 64, false, false, true, r1), wg = awq_linear(40, 256, 64, false, false, false, r2);
    for (float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
        auto x = randn(256, rng_);
        x[200] = bad;
        std::vector<float> y(40), yg(40);
        linear_awq_cpu(x.data(), 1, wt, y.data());
        linear_awq_cpu(x.data(), 1, wg, yg.data());
        expect_same_values(y, yg);
    }
}

TEST_P(OpsVsRef, RmsNorm) {
    for (int64_t C : {1, 7, 33, 128, 4097})
        for (int64_t R : {1, 3, 17})
            for (bool weighted : {true, false}) {
                auto x = randn(R * C, rng_, 3.0f);
                Tensor wt = weighted ? tensor_of(randn(C, rng_), {C}, DType::BF16) : Tensor();
                auto y = poisoned(R * C), yr = poisoned(R * C);
                rms_norm_cpu(x.data(), R, C, wt, 1e-6f, y.data());
                rms_norm_ref(x.data(), R, C, wt, 1e-6f, yr.data());
                ASSERT_LE(max_rel_diff(y, yr), kTol) << "C=" << C << " R=" << R;
            }
}

TEST_P(OpsVsRef, Rope) {
    for (int64_t D : {2, 16, 128})
        for (int64_t T : {1, 5}) {
            const int64_t H = 3;
            auto x = randn(T * H * D, rng_);
            auto c = randn(T * D / 2, rng_), s = randn(T * D / 2, rng_);
            auto a = x, b = x;
            rope_cpu(a.data(), T, H, D, c.data(), s.data());
            rope_ref(b.data(), T, H, D, c.data(), s.data());
            ASSERT_LE(max_rel_diff(a, b), kTol) << "D=" << D;
        }
}

TEST_P(OpsVsRef, Attention) {
    struct Case { int64_t T, pos0, Hq, Hkv, D; };
    for (Case c : {Case{1, 0, 1, 1, 8}, Case{7, 0, 4, 2, 16}, Case{1, 130, 6, 2, 32}, Case{5, 61, 2, 1, 128},
                   Case{33, 100, 3, 3, 7}, Case{129, 0, 2, 1, 64},
                   // T >= 8: the blocked path (48-query blocks, 128-key chunks) at its edges
                   Case{8, 0, 2, 1, 128}, Case{48, 0, 4, 2, 128}, Case{50, 300, 4, 2, 33}, Case{97, 31, 2, 2, 16},
                   // decode (T < 8) at the AVX-512 kernel's edges: Qwen3's 16 / 8 heads of 128 over 2 chunks and
                   // a tail, two head blocks with a partial one (20 heads), groups of 3 (a pair and one), D 48
                   Case{1, 600, 16, 8, 128}, Case{2, 77, 20, 4, 64}, Case{1, 40, 6, 2, 48}, Case{3, 0, 18, 6, 112}}) {
        const int64_t S = c.pos0 + c.T;
        auto q = randn(c.T * c.Hq * c.D, rng_), k = randn(S * c.Hkv * c.D, rng_), v = randn(S * c.Hkv * c.D, rng_);
        AttentionShape as{c.T, c.pos0, c.Hq, c.Hkv, c.D, 1.0f / std::sqrt(static_cast<float>(c.D))};
        auto o = poisoned(c.T * c.Hq * c.D), orf = poisoned(c.T * c.Hq * c.D);
        attention_cpu(q.data(), k.data(), v.data(), as, o.data());
        attention_ref(q.data(), k.data(), v.data(), as, orf.data());
        ASSERT_LE(max_rel_diff(o, orf), kTol) << "T=" << c.T << " pos0=" << c.pos0 << " D=" << c.D;
        // a 16-bit cache: the same keys and values stored as f16, both paths reading them
        std::vector<uint16_t> k16(k.size()), v16(v.size());
        to_f16_saturated(k.data(), static_cast<int64_t>(k.size()), k16.data());
        to_f16_saturated(v.data(), static_cast<int64_t>(v.size()), v16.data());
        auto o16 = poisoned(c.T * c.Hq * c.D), orf16 = poisoned(c.T * c.Hq * c.D);
        attention_cpu(q.data(), k16.data(), v16.data(), as, o16.data());
        attention_ref(q.data(), k16.data(), v16.data(), as, orf16.data());
        ASSERT_LE(max_rel_diff(o16, orf16), kTol) << "f16 T=" << c.T << " pos0=" << c.pos0 << " D=" << c.D;
        // and f16 rounding of K and V (relative 2^-11 each) moves the output by well under 1e-2
        ASSERT_LE(max_rel_diff(orf16, orf), 1e-2) << "f16 vs f32 T=" << c.T << " pos0=" << c.pos0;
    }
}

TEST_P(OpsVsRef, ToF16Saturated) {
    auto x = randn(1037, rng_, 3.0f);
    x[3] = 1e6f, x[4] = -1e6f, x[5] = 65519.0f, x[6] = 65520.0f, x[7] = 1e-7f, x[8] = -0.0f;
    x[9] = std::numeric_limits<float>::infinity(), x[10] = std::numeric_limits<float>::quiet_NaN();
    std::vector<uint16_t> h(x.size());
    to_f16_saturated(x.data(), static_cast<int64_t>(x.size()), h.data());
    for (size_t i = 0; i < x.size(); ++i) {
        if (i == 10) {
            ASSERT_TRUE(std::isnan(f16_to_f32(h[i])));
            continue;
        }
        ASSERT_EQ(h[i], f32_to_f16(std::clamp(x[i], -65504.0f, 65504.0f))) << i << " " << x[i];
    }
    ASSERT_EQ(f16_to_f32(h[3]), 65504.0f);
    ASSERT_EQ(f16_to_f32(h[6]), 65504.0f);
    ASSERT_EQ(f16_to_f32(h[9]), 65504.0f);
}

TEST_P(OpsVsRef, SiluMulAndEmbedding) {
    for (int64_t n : {1, 7, 4097, 70001}) {  // (from 65536: split across threads)
        auto g = randn(n, rng_, 4.0f), u = randn(n, rng_);
        auto y = poisoned(n), yr = poisoned(n);
        silu_mul_cpu(g.data(), u.data(), n, y.data());
        silu_mul_ref(g.data(), u.data(), n, yr.data());
        ASSERT_LE(max_rel_diff(y, yr), kTol);
        // logit soft-cap at 15 (nanochat's): values well past the cap saturate, in place too
        auto z = randn(n, rng_, 30.0f);
        auto c = poisoned(n), cr = poisoned(n);
        softcap_cpu(z.data(), n, 15.0f, c.data());
        softcap_ref(z.data(), n, 15.0f, cr.data());
        ASSERT_LE(max_rel_diff(c, cr), kTol);
        softcap_cpu(z.data(), n, 15.0f, z.data());
        ASSERT_EQ(z, c);
    }
    for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
        Tensor table = tensor_of(randn(11 * 37, rng_), {11, 37}, dt);
        std::vector<int32_t> ids = {0, 10, 3, 3, 7};
        auto y = poisoned(5 * 37), yr = poisoned(5 * 37);
        embedding_cpu(ids.data(), 5, table, y.data());
        embedding_ref(ids.data(), 5, table, yr.data());
        ASSERT_EQ(max_rel_diff(y, yr), 0.0);
    }
}

TEST_P(OpsVsRef, Gemm) {
    struct Case { int64_t M, N, K; };
    for (Case c : {Case{1, 1, 1}, Case{7, 33, 5}, Case{13, 31, 257}, Case{12, 32, 256}, Case{25, 65, 300},
                   Case{129, 7, 33}, Case{3, 130, 513}})
        for (int trans = 0; trans < 4; ++trans)
            for (DType dt : {DType::F32, DType::BF16}) {
                const bool at = trans & 1, bt = trans & 2;
                auto a = randn(c.M * c.K, rng_);
                Tensor b = tensor_of(randn(c.K * c.N, rng_), {c.K * c.N}, dt);
                auto bias = randn(c.N, rng_);
                for (bool acc : {false, true}) {
                    auto y = randn(c.M * c.N, rng_), yr = y;
                    if (!acc) std::fill(y.begin(), y.end(), std::numeric_limits<float>::quiet_NaN());
                    GemmArgs g;
                    g.M = c.M; g.N = c.N; g.K = c.K;
                    g.a = a.data(); g.lda = at ? c.M : c.K; g.a_trans = at;
                    g.b = b.raw(); g.b_dtype = dt; g.ldb = bt ? c.K : c.N; g.b_trans = bt;
                    g.ldc = c.N; g.accumulate = acc; g.bias = acc ? nullptr : bias.data();
                    g.c = y.data();
                    gemm_cpu(g);
                    g.c = yr.data();
                    gemm_ref(g);
                    ASSERT_LE(max_rel_diff(y, yr), kTol) << "M=" << c.M << " N=" << c.N << " K=" << c.K
                                                         << " trans=" << trans << " acc=" << acc;
                }
            }
}

// The pre-packed GEMM used by the blocked attention: packed B (both storage orders), used from a row
// offset, overwrite and accumulate.
TEST_P(OpsVsRef, GemmPackedPanels) {
    struct Case { int64_t M, N, K, k0; };
    for (Case c : {Case{1, 1, 1, 0}, Case{13, 33, 7, 0}, Case{48, 128, 128, 0}, Case{25, 70, 40, 9}})
        for (bool trans : {false, true})
            for (bool acc : {false, true}) {
                const int64_t Kall = c.K + c.k0, NR = gemm_panel_width();
                auto a = randn(c.M * c.K, rng_), b = randn(Kall * c.N, rng_);
                std::vector<float> bp(static_cast<size_t>((c.N + NR - 1) / NR * Kall * NR));
                gemm_pack_panels(b.data(), trans ? Kall : c.N, trans, Kall, c.N, bp.data());
                auto y = randn(c.M * c.N, rng_), yr = y;
                if (!acc) std::fill(y.begin(), y.end(), std::numeric_limits<float>::quiet_NaN());
                gemm_packed(a.data(), c.K, bp.data() + c.k0 * NR, Kall * NR, c.M, c.N, c.K, y.data(), c.N, acc);
                GemmArgs g;
                g.M = c.M; g.N = c.N; g.K = c.K;
                g.a = a.data(); g.lda = c.K;
                g.b = trans ? b.data() + c.k0 : b.data() + c.k0 * c.N;
                g.b_dtype = DType::F32; g.ldb = trans ? Kall : c.N; g.b_trans = trans;
                g.c = yr.data(); g.ldc = c.N; g.accumulate = acc;
                gemm_ref(g);
                ASSERT_LE(max_rel_diff(y, yr), kTol) << "M=" << c.M << " N=" << c.N << " K=" << c.K << " trans=" << trans;
            }
}

INSTANTIATE_TEST_SUITE_P(Isa, OpsVsRef, ::testing::Values(simd::Isa::Portable, simd::Isa::Avx2, simd::Isa::Avx512),
                         [](const auto& p) { return std::string(simd::isa_name(p.param)); });

// LMSCOPE_ISA caps the dispatch level of a fresh process: this binary re-runs itself with each level
// and the child checks what it got (and that the op results still match the reference there).
TEST(IsaEnv, CapsTheDispatchLevel) {
    char exe[PATH_MAX];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    ASSERT_GT(n, 0);
    exe[n] = 0;
    for (simd::Isa isa : {simd::Isa::Portable, simd::Isa::Avx2, simd::Isa::Avx512}) {
        if (!simd::isa_supported(isa)) continue;
        const std::string name = simd::isa_name(isa);
        const std::string cmd = "LMSCOPE_ISA=" + name + " LMSCOPE_ISA_EXPECT=" + name + " '" + exe +
                                "' --gtest_filter='IsaEnvChild.*:Isa/OpsVsRef.Linear*/" + name + "' > /dev/null 2>&1";
        EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    }
}

TEST(IsaEnvChild, GotTheCappedLevel) {
    const char* expect = std::getenv("LMSCOPE_ISA_EXPECT");
    if (!expect) GTEST_SKIP() << "run by IsaEnv.CapsTheDispatchLevel";
    EXPECT_STREQ(simd::isa_name(simd::active_isa()), expect);
}

// The reference itself against float64 math on a case small enough to do by hand.
TEST(OpsRef, LinearAndRmsNormByHand) {
    Linear w = Linear::dense("w", Tensor::from_f32({2, 3}, {1, 2, 3, -1, 0.5f, 0.25f}), Tensor::from_f32({2}, {0.5f, -1}));
    std::vector<float> x = {1, -2, 4}, y(2);
    linear_ref(x.data(), 1, w, y.data());
    EXPECT_FLOAT_EQ(y[0], 1 - 4 + 12 + 0.5f);
    EXPECT_FLOAT_EQ(y[1], -1 - 1 + 1 - 1);
    std::vector<float> n(3);
    rms_norm_ref(x.data(), 1, 3, Tensor::from_f32({3}, {2, 1, 0.5f}), 0.0f, n.data());
    const double r = std::sqrt((1 + 4 + 16) / 3.0);
    EXPECT_NEAR(n[0], 2 * 1 / r, 1e-6);
    EXPECT_NEAR(n[1], -2 / r, 1e-6);
    EXPECT_NEAR(n[2], 0.5 * 4 / r, 1e-6);
}
