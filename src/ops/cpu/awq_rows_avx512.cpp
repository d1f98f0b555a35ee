// AWQ int4 rows, AVX-512 level (see awq_rows.h).
//
// GEMV: a zmm holds 16 packed int32 = 128 output columns of one input row. Nibble position p of every
// lane is masked in place (v & 0xF << 4p) and converted as an unsigned integer: q * 16^p, exact, so
// each weight costs an AND, a conversion and an FMA and no shift. Accumulator p then holds the
// columns 8j + kAwqOrder[p] (j = lane) scaled by 16^p; at a group's end the zero point is taken off,
// the 16^p undone, and an 8 x 16 transpose (24 shuffles per 128 columns and group, ~3% of the work)
// puts the columns in logical order so that the scales and y are read contiguously.
// Two zmm side by side read 128 bytes of a row of the gemm layout (software prefetch kAhead rows ahead).
// This f32 GEMV runs where gemv_i16 (below) does not: no VNNI, no tiled copy, a non-finite x.
//
// gemv_i16 (awq_rows.h): on awq_tile_qweight's layout a zmm holds 8 input rows of 16 output columns, the
// 8 codes of a column in one int32 lane (row 8b + i at bits 4i). As 16-bit words the lane is (rows 0-3,
// rows 4-7); AND 0x000F000F leaves rows (0, 4), a shift by 4, 8, 12 the pairs (1, 5), (2, 6), (3, 7), and
// vpdpwssd multiplies each by the int16 x pair (x[8b + i], x[8b + 4 + i]) and adds both products to the
// lane's int32: per 128 weights 1 load, 6 integer ops and 4 vpdpwssd where the f32 GEMV needs 8 AND, 8
// conversions and 8 FMAs. One tile (one sequential stream) at a time, two blocks per step.
//
// The maskz forms of intrinsics are used where GCC 12 warns (-Wuninitialized) about the undefined
// pass-through operand of the unmasked ones. The small loops are fully unrolled: otherwise GCC keeps
// the accumulator arrays in memory and stores all 16 every row (5x slower).
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "ops/cpu/awq_rows.h"
#include "ops/cpu/simd.h"
#include "quant/awq_pack.h"

#define LMS_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#define LMS_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

namespace lmscope::awqcpu {

namespace {

constexpr __mmask16 kAll16 = 0xffff;
constexpr int kTile = 16;   // packed columns (int32) per zmm: 128 output columns
constexpr int kAhead = 32;  // rows prefetched ahead (the gemm layout)

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

// The codes of 16 logical columns 8c .. 8c + 15 from the packed int32s p[0], p[1] (gemm layout; mw: which
// of the two to read), as int32 lanes in column order.
LMS_AVX512 inline __m512i codes16(const int32_t* p, __mmask16 mw) {
    const __m512i pick = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i shifts = _mm512_setr_epi32(0, 16, 4, 20, 8, 24, 12, 28, 0, 16, 4, 20, 8, 24, 12, 28);  // 4 * kAwqReverseOrder
    const __m512i v = _mm512_maskz_permutexvar_epi32(kAll16, pick, _mm512_maskz_loadu_epi32(mw, p));
    return _mm512_and_si512(_mm512_maskz_srlv_epi32(kAll16, v, shifts), _mm512_set1_epi32(15));
}

constexpr int64_t kAheadBlocks = 96;  // 64-byte blocks prefetched ahead (6 KB)
constexpr int64_t kScaleAhead = 2;    // tiles whose scales and zero points are prefetched ahead

// The 4 products of block b of a tile (64 bytes: 8 rows of 16 columns) into a[0..3].
LMS_VNNI inline void block_i16(const int32_t* wt, const int32_t* xp, __m512i (&a)[4]) {
    const __m512i low4 = _mm512_set1_epi32(0x000f000f);
    const __m512i v = _mm512_loadu_si512(wt);
    a[0] = _mm512_dpwssd_epi32(a[0], _mm512_and_si512(v, low4), _mm512_set1_epi32(xp[0]));
    a[1] = _mm512_dpwssd_epi32(a[1], _mm512_and_si512(_mm512_srli_epi16(v, 4), low4), _mm512_set1_epi32(xp[1]));
    a[2] = _mm512_dpwssd_epi32(a[2], _mm512_and_si512(_mm512_srli_epi16(v, 8), low4), _mm512_set1_epi32(xp[2]));
    a[3] = _mm512_dpwssd_epi32(a[3], _mm512_srli_epi16(v, 12), _mm512_set1_epi32(xp[3]));
}

// Tile t of the integer GEMV (see the top of the file): one sequential stream (several tiles at once, 8 KB
// apart, ran at 19 GB/s from DRAM against 61 from cache: same-bank strides), two blocks per step with
// their own accumulators so that the vpdpwssd chains overlap.
LMS_VNNI void tile_i16(const AwqWeight& w, const AwqX16& x, int64_t t, float* y) {
    const int64_t nb = w.in / kAwqTileRows, bpg = w.g / kAwqTileRows;
    const int32_t* wt = w.tiles + t * nb * kAwqTileCols;
    const int64_t n0 = t * kAwqTileCols, valid = std::min<int64_t>(kAwqTileCols, w.out - n0);
    const __mmask16 m = lanes(valid), mw = valid > 8 ? __mmask16(3) : __mmask16(1);
    // the scales and zero points of the tile kScaleAhead tiles on: the tile's group records (one run of
    // lines), or in qzeros / scales strided lines (a group's row of them is out values long), which the
    // hardware does not prefetch; each missed one stalled a group's epilogue
    if (w.groups) {
        if (t + kScaleAhead < (w.out + kAwqTileCols - 1) / kAwqTileCols) {
            const char* g = reinterpret_cast<const char*>(w.groups + (t + kScaleAhead) * w.ng * w.grec);
            for (int64_t off = 0; off < w.ng * w.grec * 4; off += 64) _mm_prefetch(g + off, _MM_HINT_T0);
        }
    } else if (const int64_t na = n0 + kScaleAhead * kAwqTileCols; na < w.out)
        for (int64_t gi = 0; gi < w.ng; ++gi) {
            _mm_prefetch(reinterpret_cast<const char*>(w.sf ? static_cast<const void*>(w.sf + gi * w.out + na)
                                                            : static_cast<const void*>(w.sh + gi * w.out + na)),
                         _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(w.qz + gi * w.pc + na / 8), _MM_HINT_T0);
        }
    __m512 yv = _mm512_setzero_ps();
    for (int64_t gi = 0; gi < w.ng; ++gi) {
        __m512i a[4], b2[4];
        for (int i = 0; i < 4; ++i) a[i] = b2[i] = _mm512_setzero_si512();
        int64_t b = gi * bpg;
        const int64_t be = b + bpg;
        for (; b + 2 <= be; b += 2) {
            _mm_prefetch(reinterpret_cast<const char*>(wt + (b + kAheadBlocks) * kAwqTileCols), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(wt + (b + 1 + kAheadBlocks) * kAwqTileCols), _MM_HINT_T0);
            block_i16(wt + b * kAwqTileCols, x.xp + 4 * b, a);
            block_i16(wt + (b + 1) * kAwqTileCols, x.xp + 4 * (b + 1), b2);
        }
        if (b < be) block_i16(wt + b * kAwqTileCols, x.xp + 4 * b, a);
        // y += s dx (acc - z xs), the difference exact in int32
        const __m512i acc = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a[0], a[1]), _mm512_add_epi32(a[2], a[3])),
                                             _mm512_add_epi32(_mm512_add_epi32(b2[0], b2[1]), _mm512_add_epi32(b2[2], b2[3])));
        const int32_t* gr = w.groups ? w.groups + (t * w.ng + gi) * w.grec : nullptr;  // zeros, then scales
        const __m512i z = codes16(gr ? gr : w.qz + gi * w.pc + n0 / 8, mw);
        const __m512 d =
            _mm512_maskz_cvtepi32_ps(kAll16, _mm512_sub_epi32(acc, _mm512_mullo_epi32(z, _mm512_set1_epi32(x.xs[gi]))));
        const int64_t s0 = gi * w.out + n0;
        const __m512 s = w.sf ? _mm512_maskz_loadu_ps(m, gr ? reinterpret_cast<const float*>(gr + 2) : w.sf + s0)
                              : _mm512_maskz_cvtph_ps(kAll16, _mm256_maskz_loadu_epi16(
                                                                  m, gr ? reinterpret_cast<const uint16_t*>(gr + 2) : w.sh + s0));
        yv = _mm512_fmadd_ps(_mm512_mul_ps(s, _mm512_set1_ps(x.dx[gi])), d, yv);
    }
    _mm512_mask_storeu_ps(y + n0, m, yv);
}

}  // namespace

void gemv_avx512(const AwqWeight& w, const float* x, const float* xg, int64_t p0, int64_t p1, float* y) {
    int64_t c = p0;
    for (; c + 2 * kTile <= p1; c += 2 * kTile) tiles<2>(w, x, xg, c, {kTile, kTile}, y);
    for (; c < p1; c += kTile) tiles<1>(w, x, xg, c, {static_cast<int>(std::min<int64_t>(kTile, p1 - c))}, y);
}

LMS_AVX512 void row_to_f32_avx512(const AwqWeight& w, int64_t k, int64_t n0, int64_t n, float* out, bool scaled) {
    const int64_t gi = k / w.g;
    const int32_t* zrow = w.qz + gi * w.pc;
    int64_t i = 0;
    // the GEMM's panels start at multiples of 16 (gemm_ref asks for single elements); c even: c, c + 1 in one
    // tile
    if (n0 % 16 == 0) {
        // 16 columns = 2 packed int32: each lane picks its int32 and shifts its nibble down
        while (n - i >= 8) {
            const int64_t c = (n0 + i) / 8, cnt = n - i >= 16 ? 16 : 8;
            const __mmask16 m = cnt == 16 ? kAll16 : __mmask16(0xff);
            const __mmask16 mw = cnt == 16 ? __mmask16(3) : __mmask16(1);
            auto unpack = [&](const int32_t* p) LMS_AVX512 { return _mm512_maskz_cvtepi32_ps(kAll16, codes16(p, mw)); };
            const int64_t s0 = gi * w.out + n0 + i;
            const __m512 s = !scaled ? _mm512_set1_ps(1.0f)
                             : w.sf  ? _mm512_maskz_loadu_ps(m, w.sf + s0)
                                     : _mm512_maskz_cvtph_ps(kAll16, _mm256_maskz_loadu_epi16(m, w.sh + s0));
            // the tiled copy when there is one: row k of these 16 columns is nibble k % 8 of one 64-byte block,
            // which the next 7 rows read too (the gemm layout: 8 bytes of a row pc int32s long, 5-8% slower prefill)
            const __m512 q =
                w.tiles ? _mm512_maskz_cvtepi32_ps(
                              kAll16, _mm512_and_si512(_mm512_maskz_srl_epi32(
                                                           kAll16,
                                                           _mm512_maskz_loadu_epi32(
                                                               m, w.tiles + (((n0 + i) / kAwqTileCols) * (w.in / kAwqTileRows) +
                                                                             k / kAwqTileRows) * kAwqTileCols),
                                                           _mm_cvtsi64_si128(4 * (k % kAwqTileRows))),
                                                       _mm512_set1_epi32(15)))
                        : unpack(packed_at(w, k, c));
            _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_sub_ps(q, unpack(zrow + c)), s));
            i += cnt;
        }
    }
    for (; i < n; ++i) out[i] = weight_at(w, k, n0 + i, scaled);
}

// Tile lane j holds column j's codes of 8 rows (row r at bits 4r): shifted right by 8p, bits 0-3 and 4-7 are
// rows 2p and 2p + 1, moved to 16-bit halves; + 15 - z makes q - z + 15 in [0, 30], vpermw's index into the
// bf16 bits of -15 .. 15. Per 16 columns x 2 rows 5 integer ops and a vpermw, where the loader's route to the
// same panel costs two rows of f32 conversions and the interleave (~10% of the AWQ bf16 prefill GEMM).
LMS_AVX512 bool pack_pairs_avx512(const AwqWeight& w, int64_t k0, int64_t kc, int64_t n0, uint32_t* out) {
    if (!w.tiles || n0 % kAwqTileCols != 0 || n0 + 32 > w.out || k0 % kAwqTileRows != 0 || kc % kAwqTileRows != 0 ||
        w.g % kAwqTileRows != 0)
        return false;
    alignas(64) uint16_t bits[32] = {};
    for (int i = 0; i <= 30; ++i) bits[i] = f32_to_bf16(static_cast<float>(i - 15));
    const __m512i table = _mm512_load_si512(bits), lo4 = _mm512_set1_epi32(0xf), hi4 = _mm512_set1_epi32(0xf0000);
    const int64_t blocks = w.in / kAwqTileRows;  // 64-byte blocks per tile column
    for (int h = 0; h < 2; ++h) {
        const int64_t n = n0 + 16 * h;
        const int32_t* tile = w.tiles + (n / kAwqTileCols * blocks + k0 / kAwqTileRows) * kAwqTileCols;
        int64_t gi = -1;
        __m512i zz = _mm512_setzero_si512();  // 15 - z in both 16-bit halves
        for (int64_t k = k0; k < k0 + kc; k += kAwqTileRows, tile += kAwqTileCols) {
            if (k / w.g != gi) {
                gi = k / w.g;
                const __m512i z = _mm512_sub_epi32(_mm512_set1_epi32(15), codes16(w.qz + gi * w.pc + n / 8, 3));
                zz = _mm512_or_si512(z, _mm512_maskz_slli_epi32(kAll16, z, 16));
            }
            const __m512i t = _mm512_loadu_si512(tile);
            uint32_t* o = out + (k - k0) / 2 * 32 + 16 * h;
            for (int p = 0; p < 4; ++p) {
                const __m512i x = _mm512_maskz_srli_epi32(kAll16, t, 8 * p);
                const __m512i q = _mm512_or_si512(_mm512_and_si512(x, lo4), _mm512_and_si512(_mm512_maskz_slli_epi32(kAll16, x, 12), hi4));
                _mm512_storeu_si512(o + 32 * p, _mm512_maskz_permutexvar_epi16(~__mmask32(0), _mm512_add_epi32(q, zz), table));
            }
        }
    }
    return true;
}

bool gemv_i16_fits(const AwqWeight& w) {
    static const bool vnni = __builtin_cpu_supports("avx512vnni");
    return vnni && simd::active_isa() == simd::Isa::Avx512 && w.tiles && w.g % kAwqTileRows == 0 && w.g <= 1024;
}

LMS_AVX512 bool quantize_x16(const AwqWeight& w, const float* x, int32_t* xp, float* dx, int32_t* xs) {
    // 16 inputs = 2 blocks: the pairs (x[i], x[4 + i]) then (x[8 + i], x[12 + i])
    const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i hi = _mm512_setr_epi32(4, 5, 6, 7, 12, 13, 14, 15, 0, 0, 0, 0, 0, 0, 0, 0);
    for (int64_t gi = 0; gi < w.ng; ++gi) {
        const float* xr = x + gi * w.g;
        __m512 mx = _mm512_setzero_ps();
        __mmask16 bad = 0;
        for (int64_t k = 0; k < w.g; k += 16) {
            const __m512 v = _mm512_maskz_loadu_ps(lanes(w.g - k), xr + k);
            bad |= _mm512_fpclass_ps_mask(v, 0x99);  // NaN, +-inf
            mx = _mm512_maskz_max_ps(kAll16, mx, _mm512_abs_ps(v));
        }
        if (bad) return false;
        alignas(64) float l[16];
        _mm512_store_ps(l, mx);
        const float amax = *std::max_element(l, l + 16);
        dx[gi] = amax / 32767.0f;
        const __m512 inv = _mm512_set1_ps(amax > 0.0f ? 32767.0f / amax : 0.0f);
        __m512i sum = _mm512_setzero_si512();
        for (int64_t k = 0; k < w.g; k += 16) {
            const __mmask16 m = lanes(w.g - k);
            const __m512i q = _mm512_maskz_cvtps_epi32(kAll16, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, xr + k), inv));
            sum = _mm512_add_epi32(sum, q);  // (lanes past the group are 0)
            const __m512i pr = _mm512_or_si512(
                _mm512_and_si512(_mm512_maskz_permutexvar_epi32(kAll16, lo, q), _mm512_set1_epi32(0xffff)),
                _mm512_maskz_slli_epi32(kAll16, _mm512_maskz_permutexvar_epi32(kAll16, hi, q), 16));
            _mm512_mask_storeu_epi32(xp + (gi * w.g + k) / 2, m == kAll16 ? __mmask16(0xff) : __mmask16(0xf), pr);
        }
        alignas(64) int32_t si[16];
        _mm512_store_si512(si, sum);
        int32_t total = 0;
        for (int32_t v : si) total += v;
        xs[gi] = total;
    }
    return true;
}

void gemv_i16(const AwqWeight& w, const AwqX16& x, int64_t t0, int64_t t1, float* y) {
    for (int64_t t = t0; t < t1; ++t) tile_i16(w, x, t, y);
}

}  // namespace lmscope::awqcpu
