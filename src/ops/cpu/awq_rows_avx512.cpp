// AWQ int4 rows, AVX-512 level (see awq_rows.h).
//
// GEMV: a zmm holds 16 packed int32 = 128 output columns of one input row. Nibble position p of every
// lane is masked in place (v & 0xF << 4p) and converted as an unsigned integer: q * 16^p, exact, so
// each weight costs an AND, a conversion and an FMA and no shift. Accumulator p then holds the
// columns 8j + kAwqOrder[p] (j = lane) scaled by 16^p; at a group's end the zero point is taken off,
// the 16^p undone, and an 8 x 16 transpose (24 shuffles per 128 columns and group, ~3% of the work)
// puts the columns in logical order so that the scales and y are read contiguously.
// Two zmm side by side read one 128-byte row of a kAwqTile tile (quant/awq_pack.h).
//
// The maskz forms of intrinsics are used where GCC 12 warns (-Wuninitialized) about the undefined
// pass-through operand of the unmasked ones. The small loops are fully unrolled: otherwise GCC keeps
// the accumulator arrays in memory and stores all 16 every row (5x slower).
#include <immintrin.h>

#include <algorithm>

#include "ops/cpu/awq_rows.h"
#include "quant/awq_pack.h"

#define LMS_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

namespace lmscope::awqcpu {

namespace {

constexpr __mmask16 kAll16 = 0xffff;
constexpr int kTile = 16;   // packed columns (int32) per zmm: 128 output columns (kAwqTile = 2 kTile)
constexpr int kAhead = 32;  // rows prefetched ahead (the gemm layout; the tiled one is sequential)
static_assert(kAwqTile == 2 * kTile, "tiles<2> reads one row of a tile");

inline __mmask16 lanes(int64_t n) {
    return n >= 16 ? kAll16 : n <= 0 ? __mmask16(0) : static_cast<__mmask16>((1u << n) - 1);
}

// f32 scales of logical columns [8 ja, 8 ja + 8) and [8 jb, 8 jb + 8) of tile column n0, group gi,
// as the low and high halves of one vector; rows past the tile's end read 0
LMS_AVX512 inline __m512 scale_rows(const AwqWeight& w, int64_t gi, int64_t n0, int ja, int jb, int npk) {
    const __mmask8 ma = ja < npk ? 0xff : 0, mb = jb < npk ? 0xff : 0;
    const int64_t base = gi * w.out + n0;
    if (w.sf) {
        const __m256 a = _mm256_maskz_loadu_ps(ma, w.sf + base + 8 * ja);
        const __m256 b = _mm256_maskz_loadu_ps(mb, w.sf + base + 8 * jb);
        return _mm512_maskz_insertf32x8(kAll16, _mm512_maskz_insertf32x8(kAll16, _mm512_setzero_ps(), a, 0),
                                        b, 1);
    }
    const __m128i a = _mm_maskz_loadu_epi16(ma, w.sh + base + 8 * ja);
    const __m128i b = _mm_maskz_loadu_epi16(mb, w.sh + base + 8 * jb);
    return _mm512_maskz_cvtph_ps(kAll16, _mm256_inserti128_si256(_mm256_zextsi128_si256(a), b, 1));
}

// Transposes u[c] (lane j = row j, c = logical column 0..7 in that row) into r: r[i] (i < 4) holds
// rows i and i + 4 (8 columns each, low and high 256 bits), r[4 + i] rows 8 + i and 12 + i.
LMS_AVX512 inline void transpose_8x16(const __m512 (&u)[8], __m512 (&r)[8]) {
    __m512 a[8], b[8];
#pragma GCC unroll 16
    for (int i = 0; i < 4; ++i) {
        a[2 * i] = _mm512_maskz_unpacklo_ps(kAll16, u[2 * i], u[2 * i + 1]);
        a[2 * i + 1] = _mm512_maskz_unpackhi_ps(kAll16, u[2 * i], u[2 * i + 1]);
    }
#pragma GCC unroll 16
    for (int h = 0; h < 2; ++h) {  // columns 0..3 (h = 0) and 4..7 (h = 1) of each row
        b[4 * h + 0] = _mm512_maskz_shuffle_ps(kAll16, a[4 * h + 0], a[4 * h + 2], 0x44);
        b[4 * h + 1] = _mm512_maskz_shuffle_ps(kAll16, a[4 * h + 0], a[4 * h + 2], 0xee);
        b[4 * h + 2] = _mm512_maskz_shuffle_ps(kAll16, a[4 * h + 1], a[4 * h + 3], 0x44);
        b[4 * h + 3] = _mm512_maskz_shuffle_ps(kAll16, a[4 * h + 1], a[4 * h + 3], 0xee);
    }
    // b[i] / b[4 + i], 128-bit lane L: columns 0..3 / 4..7 of row 4 L + i
    const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i hi = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
#pragma GCC unroll 16
    for (int i = 0; i < 4; ++i) {
        r[i] = _mm512_maskz_permutex2var_ps(kAll16, b[i], lo, b[4 + i]);
        r[4 + i] = _mm512_maskz_permutex2var_ps(kAll16, b[i], hi, b[4 + i]);
    }
}

// rows held by transpose output q (see transpose_8x16)
constexpr int row_a(int q) { return q < 4 ? q : 8 + (q - 4); }
constexpr int row_b(int q) { return row_a(q) + 4; }

// NT tiles of 16 packed columns starting at c0 (npk[t] valid in tile t) for one token.
template <int NT>
LMS_AVX512 void tiles(const AwqWeight& w, const float* x, const float* xg, int64_t c0, const int (&npk)[NT],
                      float* y) {
    // y in transpose order, in memory: it is touched once per group, the registers go to acc
    alignas(64) float yacc[NT][8][16] = {};
    __mmask16 m[NT];
    const int32_t* base[NT];
    int64_t rs = 0;
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) {
        m[t] = lanes(npk[t]);
        base[t] = column_base(w, c0 + kTile * t, rs);
    }
    for (int64_t gi = 0; gi < w.ng; ++gi) {
        __m512 acc[NT][8];
#pragma GCC unroll 16
        for (int t = 0; t < NT; ++t) {
#pragma GCC unroll 16
            for (auto& v : acc[t]) v = _mm512_setzero_ps();
        }
        const float* xr = x + gi * w.g;
        for (int64_t kk = 0; kk < w.g; ++kk) {
            const __m512 xb = _mm512_set1_ps(xr[kk]);
            const int64_t k = gi * w.g + kk;
            // in the gemm layout rows are pc int32 apart, too far for the hardware prefetcher
#pragma GCC unroll 16
            for (int t = 0; t < NT; ++t)
                _mm_prefetch(reinterpret_cast<const char*>(base[t] + (k + kAhead) * rs), _MM_HINT_T0);
#pragma GCC unroll 16
            for (int t = 0; t < NT; ++t) {
                const __m512i v = _mm512_maskz_loadu_epi32(m[t], base[t] + k * rs);
#pragma GCC unroll 8
                for (int p = 0; p < 8; ++p) {
                    const __m512i q =
                        _mm512_and_si512(v, _mm512_set1_epi32(static_cast<int>(0xfu << (4 * p))));
                    acc[t][p] = _mm512_fmadd_ps(_mm512_maskz_cvtepu32_ps(kAll16, q), xb, acc[t][p]);
                }
            }
        }
        const __m512 xs = _mm512_set1_ps(xg[gi]);
#pragma GCC unroll 16
        for (int t = 0; t < NT; ++t) {
            const __m512i z = _mm512_maskz_loadu_epi32(m[t], w.qz + gi * w.pc + c0 + kTile * t);
            __m512 u[8], r[8];
#pragma GCC unroll 16
            for (int p = 0; p < 8; ++p) {
                const __m512i zp = _mm512_and_si512(z, _mm512_set1_epi32(static_cast<int>(0xfu << (4 * p))));
                const __m512 d = _mm512_fnmadd_ps(_mm512_maskz_cvtepu32_ps(kAll16, zp), xs, acc[t][p]);
                u[kAwqOrder[p]] = _mm512_mul_ps(d, _mm512_set1_ps(1.0f / static_cast<float>(1u << (4 * p))));
            }
            transpose_8x16(u, r);
            const int64_t n0 = (c0 + kTile * t) * 8;
#pragma GCC unroll 16
            for (int q = 0; q < 8; ++q)
                _mm512_store_ps(yacc[t][q],
                                _mm512_fmadd_ps(r[q], scale_rows(w, gi, n0, row_a(q), row_b(q), npk[t]),
                                                _mm512_load_ps(yacc[t][q])));
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) {
        float* yt = y + (c0 + kTile * t) * 8;
#pragma GCC unroll 16
        for (int q = 0; q < 8; ++q) {
            if (row_a(q) < npk[t]) std::copy(yacc[t][q], yacc[t][q] + 8, yt + 8 * row_a(q));
            if (row_b(q) < npk[t]) std::copy(yacc[t][q] + 8, yacc[t][q] + 16, yt + 8 * row_b(q));
        }
    }
}

}  // namespace

void gemv_avx512(const AwqWeight& w, const float* x, const float* xg, int64_t p0, int64_t p1, float* y) {
    int64_t c = p0;
    for (; c + 2 * kTile <= p1; c += 2 * kTile) tiles<2>(w, x, xg, c, {kTile, kTile}, y);
    for (; c < p1; c += kTile) tiles<1>(w, x, xg, c, {static_cast<int>(std::min<int64_t>(kTile, p1 - c))}, y);
}

LMS_AVX512 void row_to_f32_avx512(const AwqWeight& w, int64_t k, int64_t n0, int64_t n, float* out) {
    const int64_t gi = k / w.g;
    const int32_t* zrow = w.qz + gi * w.pc;
    int64_t i = 0;
    // the GEMM's panels start at multiples of 16 (gemm_ref asks for single elements); c even: c, c + 1 in one
    // tile
    if (n0 % 16 == 0) {
        // 16 columns = 2 packed int32: each lane picks its int32 and shifts its nibble down
        const __m512i pick = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        const __m512i shifts = _mm512_setr_epi32(0, 16, 4, 20, 8, 24, 12, 28, 0, 16, 4, 20, 8, 24, 12, 28);
        const __m512i nib = _mm512_set1_epi32(15);
        while (n - i >= 8) {
            const int64_t c = (n0 + i) / 8, cnt = n - i >= 16 ? 16 : 8;
            const __mmask16 m = cnt == 16 ? kAll16 : __mmask16(0xff);
            const __mmask16 mw = cnt == 16 ? __mmask16(3) : __mmask16(1);
            auto unpack = [&](const int32_t* p) LMS_AVX512 {
                const __m512i v =
                    _mm512_maskz_permutexvar_epi32(kAll16, pick, _mm512_maskz_loadu_epi32(mw, p));
                return _mm512_maskz_cvtepi32_ps(
                    kAll16, _mm512_and_si512(_mm512_maskz_srlv_epi32(kAll16, v, shifts), nib));
            };
            const int64_t s0 = gi * w.out + n0 + i;
            const __m512 s = w.sf ? _mm512_maskz_loadu_ps(m, w.sf + s0)
                                  : _mm512_maskz_cvtph_ps(kAll16, _mm256_maskz_loadu_epi16(m, w.sh + s0));
            // (the prefill reads the tiled copy too, so the mmap'ed gemm layout stays cold)
            const __m512 q = unpack(packed_at(w, k, c));
            _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_sub_ps(q, unpack(zrow + c)), s));
            i += cnt;
        }
    }
    for (; i < n; ++i) out[i] = weight_at(w, k, n0 + i);
}

}  // namespace lmscope::awqcpu
