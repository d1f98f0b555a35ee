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
#include <xmmintrin.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>

#include "ops/cpu/fp8_rows.h"
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

// The same linear with the 4-row copy of its codes (ops/cpu/fp8_rows.h), as load_weights makes it.
Linear with_rows4(Linear l) {
    l.fp8_rows4 = Tensor::empty(l.weight.dtype(), l.weight.shape());
    fp8cpu::to_rows4(l.weight.data<uint8_t>(), l.out(), l.in(), l.fp8_rows4.data_mut<uint8_t>());
    return l;
}

// AWQ int4 linear (out, in) in the AutoAWQ gemm layout; scales F16 or F32, with or without the CPU tile copy.
Linear awq_linear(int64_t out, int64_t in, int64_t g, bool bias, bool f32_scales, bool tiles, std::mt19937& rng) {
    auto w = randn(out * in, rng, 0.05f);
    AwqQuantized qr;
    awq_pseudo_quantize(w.data(), out, in, g, AwqMath::F16, &qr);
    const AwqPacked pk = awq_pack(qr);
    return make_awq_linear("awq", pk.qweight, pk.qzeros, f32_scales ? pk.scales.to(DType::F32) : pk.scales, g,
                           bias ? tensor_of(randn(out, rng), {out}, DType::F32) : Tensor(), tiles);
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
    // the 4-row layout where in and block_in are multiples of 64: whole groups, tail rows, a last block
    // shorter than block_in, 1 to 3 tokens
    for (Case c : {Case{1, 1, {128, 128}}, Case{7, 33, {128, 128}}, Case{33, 127, {16, 24}},
                   Case{129, 300, {128, 128}}, Case{64, 256, {32, 64}}, Case{17, 1000, {128, 128}},
                   Case{5, 4097, {128, 128}}, Case{130, 512, {128, 128}}, Case{71, 192, {16, 64}},
                   Case{3, 128, {128, 128}}, Case{20, 192, {128, 128}}, Case{9, 64, {128, 128}}})
        for (int64_t T : {1, 2, 3, 4, 5, 13}) {
            Linear w = fp8_linear(c.out, c.in, c.b, c.out % 2 == 1, rng_);
            if (fp8cpu::rows4_fits(c.in, c.b.in) && T != 5) w = with_rows4(std::move(w));
            auto x = randn(T * c.in, rng_);
            if (T == 2) x[static_cast<size_t>(c.in)] = 3e5f;  // token 1: |x| >= 64, another pre-scale (fp8_rows_avx512.cpp)
            for (bool act : {false, true}) {
                if (act && T % 2 == 0) continue;
                set_fp8_activation_mode(act);
                auto y = poisoned(T * c.out), yr = poisoned(T * c.out);
                linear_fp8_cpu(x.data(), T, w, y.data());
                linear_fp8_ref(x.data(), T, w, yr.data());
                set_fp8_activation_mode(false);
                ASSERT_LE(max_rel_diff(y, yr), kTol)
                    << "T=" << T << " out=" << c.out << " in=" << c.in << " block " << c.b.out << "x"
                    << c.b.in << " act=" << act << " rows4 " << w.fp8_rows4.defined();
            }
        }
}

// A non-finite input takes the F16C decode at the AVX-512 level; every level must give the reference's
// non-finite pattern and its finite values.
TEST_P(OpsVsRef, LinearFp8NonFiniteInput) {
    // row-major codes, and the 4-row layout (whole groups and a tail row)
    for (const Linear& w : {fp8_linear(9, 200, {128, 128}, false, rng_),
                            with_rows4(fp8_linear(9, 256, {128, 128}, false, rng_))})
        for (float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
            auto x = randn(w.in(), rng_);
            x[150] = bad;  // second block only
            std::vector<float> y(9), yr(9);
            linear_fp8_cpu(x.data(), 1, w, y.data());
            linear_fp8_ref(x.data(), 1, w, yr.data());
            expect_same_values(y, yr);  // +-inf, NaN
        }
}

// MXCSR.DAZ set: the AVX-512 level takes the F16C decode (fp8_rows_avx512.cpp), on both layouts.
TEST_P(OpsVsRef, LinearFp8UnderDaz) {
    const unsigned csr = _mm_getcsr();
    for (const Linear& w : {fp8_linear(9, 200, {128, 128}, false, rng_),
                            with_rows4(fp8_linear(9, 256, {128, 128}, false, rng_))}) {
        auto x = randn(w.in(), rng_);
        auto y = poisoned(9), yr = poisoned(9);
        _mm_setcsr(csr | 0x40);  // the caller's x preparation picks the decode; the pool's threads follow it
        linear_fp8_cpu(x.data(), 1, w, y.data());
        _mm_setcsr(csr);
        linear_fp8_ref(x.data(), 1, w, yr.data());
        ASSERT_LE(max_rel_diff(y, yr), kTol) << "rows4 " << w.fp8_rows4.defined();
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

// ---------------------------------------------------------------- bf16 activations
// The bf16 GEMM (gemm_bf16.cpp) and the linears in bf16 activation mode, at each of its levels: the f32
// kernels on the rounded x (portable, AVX2, AVX-512 without AVX512-BF16) and the vdpbf16ps kernel.
// Tolerances: against the reference on x rounded to bf16, kTol: B is exact in bf16, so every product is
// exact in f32 and only the f32 summation order differs (as for the f32 GEMM). Against the unrounded f32
// product, per element 2^-8 * sum_k |a_k b_k| (bf16 keeps 8 significant bits: |x - bf16(x)| <= 2^-8 |x|)
// plus the kTol slack; and a dropped k-pair (the zero-padded last one of an odd K, say) moves the result
// by more than 100 kTol on these shapes, which the test checks too.

namespace {

struct Bf16Level {
    simd::Isa isa;
    bool native;  // the vdpbf16ps kernel (only at the AVX-512 level)
};
void PrintTo(const Bf16Level& l, std::ostream* os) { *os << simd::isa_name(l.isa) << (l.native ? "+bf16" : ""); }

class Bf16ActVsRef : public ::testing::TestWithParam<Bf16Level> {
protected:
    void SetUp() override {
        const Bf16Level l = GetParam();
        if (!simd::isa_supported(l.isa) || (l.native && !simd::avx512_bf16_supported()))
            GTEST_SKIP() << simd::isa_name(l.isa) << (l.native ? "+bf16" : "") << " not on this CPU";
        simd::force_isa(l.isa);
        if (simd::avx512_bf16_supported()) simd::force_avx512_bf16(l.native);
        ASSERT_EQ(simd::has_avx512_bf16(), l.native);
    }
    void TearDown() override {
        set_bf16_activation_mode(false);
        simd::force_isa(saved_);
        if (simd::avx512_bf16_supported()) simd::force_avx512_bf16(true);
    }
    simd::Isa saved_ = simd::active_isa();
    std::mt19937 rng_{4321};
};

// B of the loader cases: (K, N) small integers (AWQ's q - z) and per-group column scales.
struct CodesB {
    std::vector<float> codes, scales;  // (K, N), (ceil(K / g), N)
    int64_t N, g;
};
void codes_row(const void* p, int64_t k, int64_t n0, int64_t count, float* out) {
    const auto& b = *static_cast<const CodesB*>(p);
    std::copy_n(b.codes.begin() + k * b.N + n0, count, out);
}
void codes_scale(const void* p, int64_t gi, int64_t n0, int64_t count, float* out) {
    const auto& b = *static_cast<const CodesB*>(p);
    std::copy_n(b.scales.begin() + gi * b.N + n0, count, out);
}

}  // namespace

TEST_P(Bf16ActVsRef, Gemm) {
    struct Case { int64_t M, K, N; };
    for (Case c : {Case{4, 1, 7}, Case{4, 127, 1}, Case{5, 129, 31}, Case{13, 257, 33}, Case{12, 512, 32},
                   Case{33, 1000, 100}, Case{24, 1030, 64}, Case{129, 127, 33}, Case{129, 1000, 31}})
        for (int kind = 0; kind < 4; ++kind) {  // BF16 (N, K) as a Linear; BF16 (K, N); codes + scales, g 32 / 128
            auto a = randn(c.M * c.K, rng_);
            std::vector<float> ar(a.size());
            bf16_round_activations(a.data(), c.M * c.K, ar.data());
            const bool trans = kind == 0, codes = kind >= 2;
            const Tensor b = tensor_of(randn(c.K * c.N, rng_), {c.K * c.N}, DType::BF16);
            CodesB cb{{}, {}, c.N, kind == 2 ? 32 : 128};
            if (codes) {
                std::uniform_int_distribution<int> q(-15, 15);
                std::uniform_real_distribution<float> s(0.01f, 0.1f);
                for (int64_t i = 0; i < c.K * c.N; ++i) cb.codes.push_back(static_cast<float>(q(rng_)));
                for (int64_t i = 0; i < (c.K + cb.g - 1) / cb.g * c.N; ++i) cb.scales.push_back(s(rng_));
            }
            auto b_at = [&](int64_t k, int64_t n) -> double {
                if (codes) return double(cb.codes[k * c.N + n]) * cb.scales[(k / cb.g) * c.N + n];
                return bf16_to_f32(b.data<uint16_t>()[trans ? n * c.K + k : k * c.N + n]);
            };
            auto bias = randn(c.N, rng_);
            for (bool acc : {false, true}) {
                GemmArgs g;
                g.M = c.M; g.N = c.N; g.K = c.K;
                g.a = a.data(); g.lda = c.K;
                if (codes) {
                    g.b_loader = codes_row; g.b_loader_ctx = &cb; g.b_group = cb.g; g.b_scale = codes_scale;
                } else {
                    g.b = b.raw(); g.b_dtype = DType::BF16; g.ldb = trans ? c.K : c.N; g.b_trans = trans;
                }
                g.ldc = c.N; g.accumulate = acc; g.bias = acc ? nullptr : bias.data();
                const auto c0 = randn(c.M * c.N, rng_);
                auto y = acc ? c0 : poisoned(c.M * c.N), yr = c0, yf = c0;
                g.c = y.data();
                gemm_bf16_cpu(g);
                g.c = yf.data();
                gemm_ref(g);  // the unrounded f32 product
                g.a = ar.data();
                g.c = yr.data();
                gemm_ref(g);  // the product on x rounded to bf16
                const std::string what = "M=" + std::to_string(c.M) + " K=" + std::to_string(c.K) + " N=" +
                                         std::to_string(c.N) + " kind=" + std::to_string(kind) + " acc=" + std::to_string(acc);
                ASSERT_LE(max_rel_diff(y, yr), kTol) << what;
                double ymax = 0;
                for (float v : yf) ymax = std::max(ymax, std::abs(double(v)));
                for (int64_t m = 0; m < c.M; ++m)
                    for (int64_t n = 0; n < c.N; ++n) {
                        double sum_abs = 0;
                        for (int64_t k = 0; k < c.K; ++k) sum_abs += std::abs(a[m * c.K + k] * b_at(k, n));
                        const size_t i = static_cast<size_t>(m * c.N + n);
                        ASSERT_LE(std::abs(double(y[i]) - yf[i]), std::ldexp(sum_abs, -8) + kTol * ymax) << what << " m=" << m << " n=" << n;
                    }
                ASSERT_GT(max_rel_diff(y, yf), 1e-5) << what << ": x was not rounded";
                if (acc) continue;
                // the check's power: the last k (in the zero-padded pair when K is odd) left out
                std::vector<float> ad = ar, yd = c0;
                for (int64_t m = 0; m < c.M; ++m) ad[static_cast<size_t>(m * c.K + c.K - 1)] = 0.0f;
                g.a = ad.data();
                g.c = yd.data();
                gemm_ref(g);
                ASSERT_GT(max_rel_diff(yd, yr), 100 * kTol) << what;
            }
        }
}

// x through a B = identity: every path computes with the same rounded x, bit for bit (random bit patterns,
// denormals and ties included; overflow to inf is left to Bf16Round.Rule, as inf * 0 would make NaN here).
TEST_P(Bf16ActVsRef, SameRoundingOnEveryPath) {
    const int64_t M = 5, K = 64;
    std::vector<float> a(static_cast<size_t>(M * K)), want(a.size());
    std::uniform_int_distribution<uint32_t> bits(0, 0x7effffffu);
    for (size_t i = 0; i < a.size(); ++i) {
        const uint32_t u = (i % 3 == 0 ? bits(rng_) : (bits(rng_) & 0x807fffffu) | 0x3f000000u) ^ (i % 2 ? 0x80000000u : 0u);
        std::memcpy(&a[i], &u, 4);
    }
    a[0] = 1.0f + std::ldexp(1.0f, -8);      // tie: down to even
    a[1] = 1.0f + 3 * std::ldexp(1.0f, -8);  // tie (one ulp is 2^-7 here): up to even
    a[2] = 1e-39f;                           // denormal: zero
    a[3] = -std::ldexp(1.0f, -126);          // the smallest normal stays
    bf16_round_activations(a.data(), M * K, want.data());
    EXPECT_EQ(want[0], 1.0f);
    EXPECT_EQ(want[1], 1.0f + std::ldexp(1.0f, -6));
    EXPECT_EQ(want[2], 0.0f);
    EXPECT_EQ(want[3], a[3]);
    std::vector<uint16_t> eye(static_cast<size_t>(K * K), 0);
    for (int64_t k = 0; k < K; ++k) eye[static_cast<size_t>(k * K + k)] = f32_to_bf16(1.0f);
    auto y = poisoned(M * K);
    GemmArgs g;
    g.M = M; g.N = K; g.K = K;
    g.a = a.data(); g.lda = K;
    g.b = eye.data(); g.b_dtype = DType::BF16; g.ldb = K; g.b_trans = true;
    g.c = y.data(); g.ldc = K;
    gemm_bf16_cpu(g);
    for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], want[i]) << i << " x=" << a[i];
}

TEST_P(Bf16ActVsRef, Linear) {
    for (int64_t T : {1, 3, 4, 5, 13, 33})
        for (auto [out, in] : std::vector<std::pair<int64_t, int64_t>>{{1, 127}, {31, 129}, {33, 257}, {100, 1000}})
            for (DType dt : {DType::BF16, DType::F16, DType::F32}) {
                auto x = randn(T * in, rng_);
                Linear w = Linear::dense("w", tensor_of(randn(out * in, rng_, 0.1f), {out, in}, dt),
                                         tensor_of(randn(out, rng_), {out}, DType::F32));
                auto y = poisoned(T * out), yr = poisoned(T * out), y_off = poisoned(T * out);
                linear_cpu(x.data(), T, w, y_off.data());
                set_bf16_activation_mode(true);
                linear_cpu(x.data(), T, w, y.data());
                linear_ref(x.data(), T, w, yr.data());
                set_bf16_activation_mode(false);
                const std::string what = std::string(dtype_name(dt)) + " T=" + std::to_string(T) + " out=" +
                                         std::to_string(out) + " in=" + std::to_string(in);
                ASSERT_LE(max_rel_diff(y, yr), kTol) << what;
                if (dt == DType::BF16 && T >= kBf16ActivationMinTokens) {
                    ASSERT_GT(max_rel_diff(y, y_off), 1e-5) << what << ": x was not rounded";
                    ASSERT_LT(max_rel_diff(y, y_off), 2e-2) << what;
                } else {  // decode and F16 / F32 weights: untouched
                    expect_same_values(y, y_off);
                }
            }
}

TEST_P(Bf16ActVsRef, LinearAwq) {
    struct Case { int64_t out, in, g; };
    for (Case c : {Case{8, 32, 32}, Case{24, 96, 32}, Case{136, 256, 64}, Case{200, 384, 128}, Case{40, 1024, 128},
                   Case{1032, 256, 128}})
        for (int64_t T : {3, 4, 5, 13, 33})
            for (int variant = 0; variant < 4; ++variant) {
                const bool f32_scales = variant & 1, tiles = variant & 2;
                if (T * c.out * c.in > 3000000 && variant != 2) continue;
                Linear w = awq_linear(c.out, c.in, c.g, c.out % 3 == 0, f32_scales, tiles, rng_);
                auto x = randn(T * c.in, rng_);
                auto y = poisoned(T * c.out), yr = poisoned(T * c.out), y_off = poisoned(T * c.out);
                linear_awq_cpu(x.data(), T, w, y_off.data());
                set_bf16_activation_mode(true);
                linear_awq_cpu(x.data(), T, w, y.data());
                linear_awq_ref(x.data(), T, w, yr.data());
                set_bf16_activation_mode(false);
                const std::string what = "T=" + std::to_string(T) + " out=" + std::to_string(c.out) + " in=" +
                                         std::to_string(c.in) + " g=" + std::to_string(c.g) + " variant " + std::to_string(variant);
                if (T < kBf16ActivationMinTokens) {  // decode: untouched
                    expect_same_values(y, y_off);
                    continue;
                }
                ASSERT_LE(max_rel_diff(y, yr), kTol) << what;
                ASSERT_GT(max_rel_diff(y, y_off), 1e-5) << what << ": x was not rounded";
                ASSERT_LT(max_rel_diff(y, y_off), 2e-2) << what;
            }
}

INSTANTIATE_TEST_SUITE_P(Level, Bf16ActVsRef,
                         ::testing::Values(Bf16Level{simd::Isa::Portable, false}, Bf16Level{simd::Isa::Avx2, false},
                                           Bf16Level{simd::Isa::Avx512, false}, Bf16Level{simd::Isa::Avx512, true}),
                         [](const auto& p) { return std::string(simd::isa_name(p.param.isa)) + (p.param.native ? "_bf16" : ""); });

// The rounding rule itself (vcvtne2ps2bf16's): nearest even, denormals to a signed zero, NaN quiet,
// overflow to inf; on normal numbers the same as the checkpoint writer's f32_to_bf16.
TEST(Bf16Round, Rule) {
    const float inf = std::numeric_limits<float>::infinity();
    std::vector<float> x = {1.0f + std::ldexp(1.0f, -8), 1.0f + 3 * std::ldexp(1.0f, -8), -1e-39f, 1e-45f, -0.0f,
                            std::numeric_limits<float>::max(), -inf, std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::signaling_NaN(), 3.3895314e38f};
    std::vector<float> r(x.size());
    bf16_round_activations(x.data(), static_cast<int64_t>(x.size()), r.data());
    EXPECT_EQ(r[0], 1.0f);
    EXPECT_EQ(r[1], 1.0f + std::ldexp(1.0f, -6));
    EXPECT_EQ(r[2], 0.0f);
    EXPECT_TRUE(std::signbit(r[2]));
    EXPECT_EQ(r[3], 0.0f);
    EXPECT_TRUE(std::signbit(r[4]));
    EXPECT_EQ(r[5], inf);
    EXPECT_EQ(r[6], -inf);
    EXPECT_TRUE(std::isnan(r[7]));
    EXPECT_TRUE(std::isnan(r[8]));
    EXPECT_EQ(r[9], 3.3895314e38f);  // the largest bf16
    std::mt19937 rng(5);
    std::uniform_int_distribution<uint32_t> bits(0x00800000u, 0x7f7fffffu);
    for (int i = 0; i < 100000; ++i) {
        const uint32_t u = bits(rng) | (i % 2 ? 0x80000000u : 0u);
        float f, g;
        std::memcpy(&f, &u, 4);
        bf16_round_activations(&f, 1, &g);
        ASSERT_EQ(g, bf16_to_f32(f32_to_bf16(f))) << u;
    }
}

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
    // the vdpbf16ps kernels follow the cap: only at the AVX-512 level
    EXPECT_EQ(simd::has_avx512_bf16(), std::string(expect) == "avx512" && simd::avx512_bf16_supported());
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
