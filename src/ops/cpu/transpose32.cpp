// 32-row transpose (transpose32.h): 64 shuffles per 16 x 16 block instead of 256 scalar loads and stores.
#include "ops/cpu/transpose32.h"

#include <immintrin.h>

#include <cstring>

namespace lmscope {

namespace {
#define LMS_AVX512 __attribute__((target("avx512f,avx512dq")))
LMS_AVX512 inline __m512d pd(__m512 v) { return _mm512_castps_pd(v); }
}  // namespace

// The maskz forms: GCC 12 warns (-Wuninitialized) about the undefined pass-through operand of the unmasked ones.
LMS_AVX512 void transpose_32(const void* rows_v, int64_t ld, int64_t n, void* out_v) {
    const auto* rows = static_cast<const char*>(rows_v);
    auto* out = static_cast<char*>(out_v);
    constexpr __mmask16 all = 0xffff;
    int64_t kk = 0;
    for (; kk + 16 <= n; kk += 16)
        for (int half = 0; half < 2; ++half) {
            __m512 r[16], t[16], u[16];
            for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(rows + 4 * ((16 * half + i) * ld + kk));
            for (int i = 0; i < 8; ++i) {
                t[2 * i] = _mm512_maskz_unpacklo_ps(all, r[2 * i], r[2 * i + 1]);
                t[2 * i + 1] = _mm512_maskz_unpackhi_ps(all, r[2 * i], r[2 * i + 1]);
            }
            for (int i = 0; i < 4; ++i) {  // u[4 i + q], 128-bit lane L: column 4 L + q of rows 4 i .. 4 i + 3
                u[4 * i + 0] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(0xff, pd(t[4 * i]), pd(t[4 * i + 2])));
                u[4 * i + 1] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(0xff, pd(t[4 * i]), pd(t[4 * i + 2])));
                u[4 * i + 2] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(0xff, pd(t[4 * i + 1]), pd(t[4 * i + 3])));
                u[4 * i + 3] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(0xff, pd(t[4 * i + 1]), pd(t[4 * i + 3])));
            }
            char* dst = out + 4 * (kk * 32 + 16 * half);
            for (int q = 0; q < 4; ++q) {
                const __m512 a = _mm512_maskz_shuffle_f32x4(all, u[q], u[4 + q], 0x88);
                const __m512 b = _mm512_maskz_shuffle_f32x4(all, u[q], u[4 + q], 0xdd);
                const __m512 c = _mm512_maskz_shuffle_f32x4(all, u[8 + q], u[12 + q], 0x88);
                const __m512 d = _mm512_maskz_shuffle_f32x4(all, u[8 + q], u[12 + q], 0xdd);
                _mm512_storeu_ps(dst + 4 * (q + 0) * 32, _mm512_maskz_shuffle_f32x4(all, a, c, 0x88));
                _mm512_storeu_ps(dst + 4 * (q + 8) * 32, _mm512_maskz_shuffle_f32x4(all, a, c, 0xdd));
                _mm512_storeu_ps(dst + 4 * (q + 4) * 32, _mm512_maskz_shuffle_f32x4(all, b, d, 0x88));
                _mm512_storeu_ps(dst + 4 * (q + 12) * 32, _mm512_maskz_shuffle_f32x4(all, b, d, 0xdd));
            }
        }
    for (; kk < n; ++kk)
        for (int j = 0; j < 32; ++j) std::memcpy(out + 4 * (kk * 32 + j), rows + 4 * (j * ld + kk), 4);
}

}  // namespace lmscope
