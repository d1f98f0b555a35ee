// Horizontal sums of SIMD accumulators, shared by simd.cpp's dot products and the FP8 GEMVs
// (fp8_rows.cpp, fp8_rows_avx512.cpp): an AVX2 vector, an AVX-512 vector (through memory: GCC 12's
// _mm512_reduce_add_ps trips -Wuninitialized), and four AVX-512 vectors in one pass (128-bit lanes
// folded pairwise across the vectors, then within lanes; maskz forms: GCC 12 warns about the undefined
// pass-through operand of the unmasked ones).
#pragma once

#include <immintrin.h>

namespace lmscope::simd {

__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

__attribute__((target("avx512f"))) inline float hsum(__m512 v) {
    alignas(64) float l[16];
    _mm512_store_ps(l, v);
    float s = 0.0f;
    for (float e : l) s += e;
    return s;
}

/** out[0..3] = the horizontal sums of a, b, c, d. */
__attribute__((target("avx512f"))) inline void hsum4(__m512 a, __m512 b, __m512 c, __m512 d, float* out) {
    constexpr __mmask16 all = 0xffff;
    const __m512 ab = _mm512_add_ps(_mm512_maskz_shuffle_f32x4(all, a, b, 0x44),
                                    _mm512_maskz_shuffle_f32x4(all, a, b, 0xee));
    const __m512 cd = _mm512_add_ps(_mm512_maskz_shuffle_f32x4(all, c, d, 0x44),
                                    _mm512_maskz_shuffle_f32x4(all, c, d, 0xee));
    // 128-bit lanes now hold partial sums [a, a, b, b] and [c, c, d, d]; fold to one lane per vector
    __m512 s = _mm512_add_ps(_mm512_maskz_shuffle_f32x4(all, ab, cd, 0x88),
                             _mm512_maskz_shuffle_f32x4(all, ab, cd, 0xdd));
    s = _mm512_add_ps(s, _mm512_maskz_permute_ps(all, s, 0x4e));
    s = _mm512_add_ps(s, _mm512_maskz_permute_ps(all, s, 0xb1));
    alignas(64) float l[16];
    _mm512_store_ps(l, s);
    out[0] = l[0];
    out[1] = l[4];
    out[2] = l[8];
    out[3] = l[12];
}

}  // namespace lmscope::simd
