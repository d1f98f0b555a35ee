// The GEMM on bf16 activations (gemm.h: gemm_bf16_cpu), for the prefill linears in bf16 activation mode.
// With AVX512-BF16, per call:
//   A (M, K) f32 -> a16 (M, K2 = ceil(K / 2)) bf16 k-pairs (vcvtne2ps2bf16, rows split across the pool;
//   an odd K gets a zero pad), then per thread, over its share of N:
//     for each 32-column panel, for each KC-deep slice of K:
//       pack B as k-pairs: bp[kp * 32 + j] = B(2 kp, n0 + j) | B(2 kp + 1, n0 + j) << 16 (bf16 bits; a zmm
//       holds 16 columns x 2 k)                                               -> 256 pairs x 32 = 32 KB, L1
//       (BF16 (out, in) rows already hold the pairs: a 32-row register transpose; AWQ: b_pack_pairs unpacks
//       the tiled codes straight into pairs; other B: two b_loader rows interleaved)
//       for each 12-row block of A: micro-kernel 12 x 32 over the slice: per k-pair 2 panel loads,
//       12 broadcasts of A's (k, k+1) pair, 24 vdpbf16ps (16 columns x 2 products each) into 24 zmm
// With b_scale (AWQ) a slice holds whole groups and a 7 x 32 kernel adds s * (each group's sums) to totals
// in registers: the weight stays exact ((q - z) in bf16) and the group scale is applied in f32.
// Tile and slice measured on the Zen 5 VM (one thread, 512 tokens, Qwen3-0.6B's shapes, B pre-packed):
// 12 x 32 at KC 512 410-445 GFLOP/s, KC 256 380-420; 8 x 48 400-425; 6 x 64 330-380; 4 x 64 290-330.
// Prefetching the next block's weight rows to L2 during the kernels was tried: no gain end to end.
// vdpbf16ps ignores MXCSR: denormal inputs count as zero, denormal results flush to zero (values below
// 1.2e-38, invisible at bf16's precision); A is rounded by the same rule on every path (bf16_round_activations).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/simd.h"
#include "ops/cpu/transpose32.h"
#include "ops/ops.h"

namespace lmscope {

namespace {

#define LMS_BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

constexpr int kNR = 32;  // panel width: 2 zmm of f32 accumulators per row
constexpr int64_t kKC = 512;  // k per slice: a 256-pair x 32-column panel is 32 KB, in L1 (48 KB) beside A's rows

LMS_BF16 inline __mmask16 tail16(int64_t n) {
    return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : static_cast<__mmask16>((1u << n) - 1);
}

// Rows [m0, m1) of A (row-major, lda) to bf16 k-pairs a16[m * k2 + kp]; lanes past K load as zero, so the
// pad of an odd K is zero.
LMS_BF16 void round_rows(const float* a, int64_t lda, int64_t K, int64_t m0, int64_t m1, uint32_t* a16, int64_t k2) {
    for (int64_t m = m0; m < m1; ++m) {
        const float* src = a + m * lda;
        uint16_t* dst = reinterpret_cast<uint16_t*>(a16 + m * k2);
        for (int64_t k = 0; k < 2 * k2; k += 32) {
            const __m512 lo = _mm512_maskz_loadu_ps(tail16(K - k), src + k);
            const __m512 hi = _mm512_maskz_loadu_ps(tail16(K - k - 16), src + k + 16);
            const int64_t left = 2 * k2 - k;  // bf16 lanes to write, the pad included
            const __mmask32 wm = left >= 32 ? ~__mmask32(0) : static_cast<__mmask32>((1u << left) - 1);
            _mm512_mask_storeu_epi16(dst + k, wm, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
    }
}

// Stored row r of B (b_trans false: row k, columns c0 ..) as f32, exact in bf16 by gemm_bf16_cpu's contract.
void load_row(const GemmArgs& g, int64_t r, int64_t c0, int64_t count, float* out) {
    if (g.b_loader)
        g.b_loader(g.b_loader_ctx, r, c0, count, out);
    else
        simd::row_to_f32(static_cast<const uint16_t*>(g.b) + r * g.ldb + c0, DType::BF16, count, out);
}

// Slice k0 .. k0+kc of the panel at column n0 as k-pairs bp[kp * 32 + j]: zero past N and past kc.
LMS_BF16 void pack_b(const GemmArgs& g, int64_t k0, int64_t kc, int64_t n0, uint32_t* bp, std::vector<uint32_t>& tmp) {
    const int64_t nr = std::min<int64_t>(kNR, g.N - n0), kc2 = (kc + 1) / 2;
    if (g.b_trans) {  // BF16 (N, K): column n's k-pairs lie side by side in stored row n
        const auto* w = static_cast<const uint16_t*>(g.b);
        if (nr == kNR && kc % 2 == 0 && g.ldb % 2 == 0) {  // (k0 is even: a multiple of the slice)
            transpose_32(w + n0 * g.ldb + k0, g.ldb / 2, kc2, bp);
            return;
        }
        tmp.assign(static_cast<size_t>(kNR * kc2), 0u);  // rows past N and an odd kc's last high half: zero
        for (int64_t j = 0; j < nr; ++j) std::memcpy(tmp.data() + j * kc2, w + (n0 + j) * g.ldb + k0, 2 * kc);
        transpose_32(tmp.data(), kc2, kc2, bp);
        return;
    }
    if (g.b_pack_pairs && g.b_pack_pairs(g.b_loader_ctx, k0, kc, n0, bp)) return;
    // B (K, N) or a loader: rows k and k + 1, 32 columns each as f32 (zero past N), their bf16 bits interleaved
    alignas(64) float r0[kNR] = {}, r1[kNR] = {};
    const __m512i hi16 = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
    for (int64_t kp = 0; kp < kc2; ++kp) {
        load_row(g, k0 + 2 * kp, n0, nr, r0);
        if (2 * kp + 1 < kc)
            load_row(g, k0 + 2 * kp + 1, n0, nr, r1);
        else
            std::fill(r1, r1 + kNR, 0.0f);
        for (int v = 0; v < 2; ++v) {
            // (the maskz form: GCC 12 warns about the undefined pass-through operand of the unmasked one)
            const __m512i lo = _mm512_maskz_srli_epi32(0xffff, _mm512_castps_si512(_mm512_load_ps(r0 + 16 * v)), 16);
            const __m512i hi = _mm512_and_si512(_mm512_castps_si512(_mm512_load_ps(r1 + 16 * v)), hi16);
            _mm512_storeu_si512(bp + kp * kNR + 16 * v, _mm512_or_si512(lo, hi));
        }
    }
}

// acc[i] += the products of A's row rows[i] with the panel over k-pairs [kp0, kp1): per pair 2 panel loads,
// MR broadcasts of the row's (k, k+1) pair, 2 MR vdpbf16ps (16 columns x 2 products each).
template <int MR>
LMS_BF16 __attribute__((always_inline)) inline void dot_pairs(__m512 (&acc)[MR][2], const uint32_t* const (&rows)[MR],
                                                             const uint32_t* bp, int64_t kp0, int64_t kp1) {
    for (int64_t kp = kp0; kp < kp1; ++kp) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp + kp * kNR);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(bp + kp * kNR + 16);
#pragma GCC unroll 12
        for (int i = 0; i < MR; ++i) {
            const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(rows[i][kp]));
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], av, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], av, b1);
        }
    }
}

// C (mr x nr at c, row stride ldc) = (first) or += t.
template <int MR>
LMS_BF16 __attribute__((always_inline)) inline void store_tile(const __m512 (&t)[MR][2], float* c, int64_t ldc, int64_t mr,
                                                              int64_t nr, bool first) {
    const __mmask16 m[2] = {tail16(nr), tail16(nr - 16)};
    for (int i = 0; i < MR && i < mr; ++i)
        for (int v = 0; v < 2; ++v) {
            float* cv = c + i * ldc + 16 * v;
            _mm512_mask_storeu_ps(cv, m[v], first ? t[i][v] : _mm512_add_ps(t[i][v], _mm512_maskz_loadu_ps(m[v], cv)));
        }
}

// Rows of an MR block of A (a16 from row a, k2 pairs apart); rows past mr repeat row mr - 1 (not stored).
template <int MR>
inline void block_rows(const uint32_t* a, int64_t k2, int64_t mr, const uint32_t* (&rows)[MR]) {
    for (int i = 0; i < MR; ++i) rows[i] = a + std::min<int64_t>(i, mr - 1) * k2;
}

// C (mr x nr) = (first) or += A's 12 rows x the panel over kc2 k-pairs: 24 zmm accumulators.
LMS_BF16 void kernel_12x32(const uint32_t* a, int64_t k2, int64_t mr, const uint32_t* bp, int64_t kc2, float* c,
                           int64_t ldc, int64_t nr, bool first) {
    const uint32_t* rows[12];
    block_rows(a, k2, mr, rows);
    __m512 acc[12][2];
    for (auto& r : acc) r[0] = r[1] = _mm512_setzero_ps();
    dot_pairs(acc, rows, bp, 0, kc2);
    store_tile(acc, c, ldc, mr, nr, first);
}

// The same with a scale per group of g2 k-pairs and column (scales[group * 32 + j]): each group's sums in
// 14 accumulators, added times the scale into 14 more, so C is written once per slice. Measured against the
// 12 x 32 kernel run group by group with C += s * acc (AWQ, group 128, gate_up shape, one thread):
// 490 against 420 GFLOP/s (without scales the 12 x 32 kernel runs at 510).
LMS_BF16 void kernel_7x32_groups(const uint32_t* a, int64_t k2, int64_t mr, const uint32_t* bp, int64_t kc2, int64_t g2,
                                 const float* scales, float* c, int64_t ldc, int64_t nr, bool first) {
    const uint32_t* rows[7];
    block_rows(a, k2, mr, rows);
    __m512 acc[7][2], tot[7][2];
    for (auto& r : tot) r[0] = r[1] = _mm512_setzero_ps();
    for (int64_t s0 = 0; s0 < kc2; s0 += g2, scales += kNR) {
        for (auto& r : acc) r[0] = r[1] = _mm512_setzero_ps();
        dot_pairs(acc, rows, bp, s0, std::min(kc2, s0 + g2));
        const __m512 s[2] = {_mm512_loadu_ps(scales), _mm512_loadu_ps(scales + 16)};
        for (int i = 0; i < 7; ++i)
            for (int v = 0; v < 2; ++v) tot[i][v] = _mm512_fmadd_ps(acc[i][v], s[v], tot[i][v]);
    }
    store_tile(tot, c, ldc, mr, nr, first);
}

// Columns [n_begin, n_end) of C (multiples of 32 but the last) from the rounded A.
void bf16_range(const GemmArgs& g, const uint32_t* a16, int64_t k2, int64_t n_begin, int64_t n_end) {
    // k per slice: kKC, or whole scale groups (g.b_group is even: pairs never straddle two groups)
    const int64_t gs = g.b_scale ? g.b_group : kKC, kc_max = std::max<int64_t>(1, kKC / gs) * gs;
    const int64_t mr_max = g.b_scale ? 7 : 12;
    thread_local std::vector<uint32_t> panel, tmp;
    thread_local std::vector<float> scales;
    panel.resize(static_cast<size_t>(kc_max / 2 * kNR));
    scales.assign(static_cast<size_t>(kc_max / gs * kNR), 0.0f);  // (columns past N stay zero)
    for (int64_t n0 = n_begin; n0 < n_end; n0 += kNR) {
        const int64_t nr = std::min<int64_t>(kNR, g.N - n0);
        for (int64_t k0 = 0; k0 < g.K; k0 += kc_max) {
            const int64_t kc = std::min(kc_max, g.K - k0), kc2 = (kc + 1) / 2;
            pack_b(g, k0, kc, n0, panel.data(), tmp);
            if (g.b_scale)
                for (int64_t s0 = 0; s0 < kc; s0 += gs) g.b_scale(g.b_loader_ctx, (k0 + s0) / gs, n0, nr, scales.data() + s0 / gs * kNR);
            const bool first = k0 == 0 && !g.accumulate;
            for (int64_t m0 = 0; m0 < g.M; m0 += mr_max) {
                const int64_t mr = std::min(mr_max, g.M - m0);
                const uint32_t* a = a16 + m0 * k2 + k0 / 2;
                float* c = g.c + m0 * g.ldc + n0;
                if (g.b_scale)
                    kernel_7x32_groups(a, k2, mr, panel.data(), kc2, gs / 2, scales.data(), c, g.ldc, nr, first);
                else
                    kernel_12x32(a, k2, mr, panel.data(), kc2, c, g.ldc, nr, first);
            }
        }
        gemm_panel_epilogue(g, n0, nr);
    }
}

// Without AVX512-BF16: the same rounding of A, then the f32 kernels (B is exact in bf16, so only f32
// summation order differs from the vdpbf16ps path).
void gemm_rounded_f32(const GemmArgs& g) {
    thread_local std::vector<float> ar;
    ar.resize(static_cast<size_t>(g.M * g.K));
    for (int64_t m = 0; m < g.M; ++m) bf16_round_activations(g.a + m * g.lda, g.K, ar.data() + m * g.K);
    GemmArgs f = g;
    f.a = ar.data();
    f.lda = g.K;
    gemm_cpu(f);
}

}  // namespace

void gemm_bf16_cpu(const GemmArgs& g) {
    LMS_CHECK(!g.a_trans && (g.b_loader ? !g.b_trans : g.b_dtype == DType::BF16));
    LMS_CHECK(!g.b_scale || (g.b_loader && g.b_group > 0 && g.b_group % 2 == 0));
    if (g.M <= 0 || g.N <= 0) return;
    if (!simd::has_avx512_bf16()) return gemm_rounded_f32(g);
    const int64_t k2 = (g.K + 1) / 2;
    thread_local std::vector<uint32_t> a16_buf;  // the caller's: the workers get its pointer (not their own)
    a16_buf.resize(static_cast<size_t>(g.M * k2));
    uint32_t* a16 = a16_buf.data();
    ThreadPool& pool = ThreadPool::global();
    pool.parallel_for(g.M, 16, [&](int64_t m0, int64_t m1, int) { round_rows(g.a, g.lda, g.K, m0, m1, a16, k2); });
    pool.parallel_for(g.N, kNR, [&](int64_t n0, int64_t n1, int) { bf16_range(g, a16, k2, n0, n1); });
}

}  // namespace lmscope
