// Block-FP8 rows, AVX-512 level (see fp8_rows.h).
//
// Decoding without a conversion instruction: the code, sign-extended to 32 bits, shifted left by 20
// and masked with 0x87f00000 is the IEEE single whose value is code * 2^-120 (exponent and mantissa
// bits land in the low exponent / high mantissa bits; E4M3 subnormals become f32 subnormals with the
// same factor). Three integer ops per 16 codes, where vcvtph2ps (the F16C route of the AVX2 level)
// costs as much as the FMAs and caps the kernel below memory bandwidth (measured on Zen 5:
// 3.3 vs 2.25 cycles per 32 codes). The 2^-120 is undone on the other operand: the GEMV reads x
// pre-multiplied by 2^shift (prepare_x: shift = 120 unless max |x| >= 64, where a smaller shift keeps
// x * 2^shift finite) and multiplies each block's sum by scale * 2^(120 - shift). Products of an f32
// subnormal by a normal number are exact unless MXCSR.DAZ is set; prepare_x then (and for a
// non-finite x) selects the F16C decode below, exact in every mode.
//
// 4 rows share each x load; the next row groups are prefetched because 4 interleaved row streams
// defeat the hardware prefetcher (18 -> 33 GB/s from DRAM on one core). Block tails use masked loads
// (masked-off lanes read code 0 and x 0). The maskz forms of the intrinsics are used throughout:
// GCC 12 warns (-Wuninitialized) on the undefined pass-through operand of several unmasked ones.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/cpu/fp8_rows.h"
#include "ops/cpu/hsum.h"

#define LMS_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

namespace lmscope::fp8cpu {

namespace {

constexpr __mmask16 kAll16 = 0xffff;

// 16 codes (masked-off ones read as 0) -> f32, either code * 2^-120 (kDirect) or code / 256 (F16C); kFull:
// all 16, a plain load
template <bool kDirect, bool kFull = false>
LMS_AVX512 inline __m512 decode16(const uint8_t* p, __mmask16 m = kAll16) {
    const __m128i c =
        kFull ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)) : _mm_maskz_loadu_epi8(m, p);
    if constexpr (kDirect) {
        const __m512i v = _mm512_maskz_slli_epi32(kAll16, _mm512_maskz_cvtepi8_epi32(kAll16, c), 20);
        return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(static_cast<int>(0x87f00000u))));
    } else {
        const __m256i h = _mm256_maskz_cvtepi8_epi16(kAll16, c);
        const __m256i f = _mm256_and_si256(_mm256_maskz_slli_epi16(kAll16, h, 7),
                                           _mm256_set1_epi16(static_cast<short>(0xbf80)));
        return _mm512_maskz_cvtph_ps(kAll16, f);
    }
}
using simd::hsum;

inline __mmask16 mask16(int64_t n) {
    return n >= 16 ? kAll16 : n <= 0 ? __mmask16(0) : static_cast<__mmask16>((1u << n) - 1);
}

// unit: what a block's sum is multiplied by besides the block scale (2^(120 - shift) for the direct
// decode of x * 2^shift, 256 for the F16C decode of x). Row-major codes: R row streams, each prefetched two
// row groups ahead.
template <int R, bool kDirect>
LMS_AVX512 void rows(const Fp8Weight& w, const float* x, float unit, int64_t o0, float* y) {
    const uint8_t* c[R];
    const float* s[R];
    __m512 tot[R];
    for (int r = 0; r < R; ++r) {
        c[r] = w.codes + (o0 + r) * w.in;
        s[r] = w.scale_row(o0 + r);
        tot[r] = _mm512_setzero_ps();
    }
    const int64_t ahead = 2 * R * w.in;  // two row groups ahead
    for (int64_t kb = 0; kb < w.nbi; ++kb) {
        const int64_t k0 = kb * w.bi, k1 = std::min(w.in, k0 + w.bi);
        __m512 a[R][2];
        for (int r = 0; r < R; ++r) a[r][0] = a[r][1] = _mm512_setzero_ps();
        // 64 codes per row; n < 64 at a block's end
        auto step = [&](int64_t k, int64_t n) LMS_AVX512 {
            const __mmask16 m0 = mask16(n), m1 = mask16(n - 16), m2 = mask16(n - 32), m3 = mask16(n - 48);
            const __m512 x0 = _mm512_maskz_loadu_ps(m0, x + k), x1 = _mm512_maskz_loadu_ps(m1, x + k + 16);
            const __m512 x2 = _mm512_maskz_loadu_ps(m2, x + k + 32),
                         x3 = _mm512_maskz_loadu_ps(m3, x + k + 48);
            for (int r = 0; r < R; ++r) {
                _mm_prefetch(reinterpret_cast<const char*>(c[r] + k + ahead), _MM_HINT_T0);
                a[r][0] = _mm512_fmadd_ps(decode16<kDirect>(c[r] + k, m0), x0, a[r][0]);
                a[r][1] = _mm512_fmadd_ps(decode16<kDirect>(c[r] + k + 16, m1), x1, a[r][1]);
                a[r][0] = _mm512_fmadd_ps(decode16<kDirect>(c[r] + k + 32, m2), x2, a[r][0]);
                a[r][1] = _mm512_fmadd_ps(decode16<kDirect>(c[r] + k + 48, m3), x3, a[r][1]);
            }
        };
        int64_t k = k0;
        for (; k + 64 <= k1; k += 64) step(k, 64);
        if (k < k1) step(k, k1 - k);
        for (int r = 0; r < R; ++r)
            tot[r] =
                _mm512_fmadd_ps(_mm512_add_ps(a[r][0], a[r][1]), _mm512_set1_ps(s[r][kb] * unit), tot[r]);
    }
    if constexpr (R == 4)
        simd::hsum4(tot[0], tot[1], tot[2], tot[3], y + o0);
    else
        for (int r = 0; r < R; ++r) y[o0 + r] = hsum(tot[r]);
}

// Rows o0 .. o0 + 3, a group of the 4-row layout (fp8_rows.h; in and bi multiples of 64): code k of row r at
// 4 (k - k % 64) + 64 r + k % 64 from the group's start, one stream, prefetched kAhead4 bytes ahead
// (cpu_notes v20, v21: 5 KB took 1-2% off a decode step against 4 KB at 1 and 2 threads; 2 KB +5%, 6 and
// 8 KB no better). Its own loop, full 64-code steps with plain loads: the generic rows<4> on this layout
// streamed 8% slower (cpu_notes v23).
constexpr int64_t kAhead4 = 5120;
template <bool kDirect>
LMS_AVX512 void rows4(const Fp8Weight& w, const float* x, float unit, int64_t o0, float* y) {
    const uint8_t* c = w.rows4 + o0 * w.in;
    const float* s[4];
    __m512 tot[4];
    for (int r = 0; r < 4; ++r) {
        s[r] = w.scale_row(o0 + r);
        tot[r] = _mm512_setzero_ps();
    }
    for (int64_t kb = 0; kb < w.nbi; ++kb) {
        const int64_t k0 = kb * w.bi, k1 = std::min(w.in, k0 + w.bi);  // both multiples of 64
        __m512 a[4][2];
        for (int r = 0; r < 4; ++r) a[r][0] = a[r][1] = _mm512_setzero_ps();
        for (int64_t k = k0; k < k1; k += 64) {
            const __m512 x0 = _mm512_loadu_ps(x + k), x1 = _mm512_loadu_ps(x + k + 16);
            const __m512 x2 = _mm512_loadu_ps(x + k + 32), x3 = _mm512_loadu_ps(x + k + 48);
            const uint8_t* p = c + 4 * k;
            for (int r = 0; r < 4; ++r) {
                _mm_prefetch(reinterpret_cast<const char*>(p + 64 * r + kAhead4), _MM_HINT_T0);
                a[r][0] = _mm512_fmadd_ps(decode16<kDirect, true>(p + 64 * r), x0, a[r][0]);
                a[r][1] = _mm512_fmadd_ps(decode16<kDirect, true>(p + 64 * r + 16), x1, a[r][1]);
                a[r][0] = _mm512_fmadd_ps(decode16<kDirect, true>(p + 64 * r + 32), x2, a[r][0]);
                a[r][1] = _mm512_fmadd_ps(decode16<kDirect, true>(p + 64 * r + 48), x3, a[r][1]);
            }
        }
        for (int r = 0; r < 4; ++r)
            tot[r] =
                _mm512_fmadd_ps(_mm512_add_ps(a[r][0], a[r][1]), _mm512_set1_ps(s[r][kb] * unit), tot[r]);
    }
    simd::hsum4(tot[0], tot[1], tot[2], tot[3], y + o0);
}

template <bool kDirect>
void gemv_rows(const Fp8Weight& w, const float* x, float unit, int64_t r0, int64_t r1, float* y) {
    int64_t o = r0;
    // whole groups of the 4-row layout (r0 is a multiple of 4 in every caller's split; checked anyway)
    if (w.rows4 && o % 4 == 0)
        for (; o + 4 <= r1; o += 4) rows4<kDirect>(w, x, unit, o, y);
    for (; o + 4 <= r1; o += 4) rows<4, kDirect>(w, x, unit, o, y);
    for (; o < r1; ++o) rows<1, kDirect>(w, x, unit, o, y);  // row-major in both layouts
}

// max |x|, or NaN when x holds one
LMS_AVX512 float max_abs(const float* x, int64_t n) {
    __m512 m = _mm512_setzero_ps();
    __mmask16 nan = 0;
    const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    for (int64_t i = 0; i < n; i += 16) {
        const __m512 v = _mm512_maskz_loadu_ps(mask16(n - i), x + i);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        m = _mm512_maskz_max_ps(kAll16, m, _mm512_maskz_and_ps(kAll16, v, abs_mask));
    }
    if (nan) return NAN;
    alignas(64) float l[16];
    _mm512_store_ps(l, m);
    float r = 0.0f;
    for (float e : l) r = std::max(r, e);
    return r;
}

}  // namespace

LMS_AVX512 Fp8X prepare_x_avx512(const float* x, int64_t in, std::vector<float>& buf) {
    const bool daz = (_mm_getcsr() & 0x40) != 0;
    const float amax = max_abs(x, in);
    if (daz || !std::isfinite(amax)) return {x, nullptr, 1.0f};
    // x * 2^shift stays below 2^126: shift = 120 - max(0, e - 6) where amax < 2^e
    int e = 0;
    std::frexp(amax, &e);
    const int shift = 120 - std::max(0, e - 6);
    buf.resize(static_cast<size_t>(in));
    const __m512 f = _mm512_set1_ps(std::ldexp(1.0f, shift));
    for (int64_t i = 0; i < in; i += 16) {
        const __mmask16 m = mask16(in - i);
        _mm512_mask_storeu_ps(buf.data() + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), f));
    }
    return {x, buf.data(), std::ldexp(1.0f, 120 - shift)};
}

void gemv_avx512(const Fp8Weight& w, const Fp8X& x, int64_t r0, int64_t r1, float* y) {
    if (x.xs)
        gemv_rows<true>(w, x.xs, x.unshift, r0, r1, y);
    else
        gemv_rows<false>(w, x.x, 256.0f, r0, r1, y);
}

LMS_AVX512 void row_to_f32_avx512(const uint8_t* c, const float* srow, int64_t bi, int64_t k0, int64_t n,
                                  float* out) {
    // F16C decode: the f32 result must be exact whatever MXCSR says
    const int64_t k1 = k0 + n;
    for (int64_t k = k0; k < k1;) {
        const int64_t kb = k / bi, seg_end = std::min(k1, (kb + 1) * bi);
        const __m512 s = _mm512_set1_ps(srow[kb] * 256.0f);
        for (; k < seg_end; k += 16) {
            const __mmask16 m = mask16(seg_end - k);
            _mm512_mask_storeu_ps(out + (k - k0), m, _mm512_mul_ps(decode16<false>(c + (k - k0), m), s));
        }
        k = seg_end;
    }
}

LMS_AVX512 void row_to_f32_rows4_avx512(const uint8_t* g, const float* srow, int64_t bi, int64_t k0,
                                        int64_t n, float* out) {
    const int64_t k1 = k0 + n;
    for (int64_t k = k0; k < k1;) {  // a 64-code run at a time (inside one block: bi is a multiple of 64)
        const int64_t run = k / 64 * 64, e = std::min(k1, run + 64);
        const __m512 s = _mm512_set1_ps(srow[k / bi] * 256.0f);
        for (; k < e; k += 16) {
            const __mmask16 m = mask16(e - k);
            _mm512_mask_storeu_ps(out + (k - k0), m,
                                  _mm512_mul_ps(decode16<false>(g + 4 * run + (k - run), m), s));
        }
        k = e;
    }
}

}  // namespace lmscope::fp8cpu
