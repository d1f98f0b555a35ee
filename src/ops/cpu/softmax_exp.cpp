// See softmax_exp.h.
#include "ops/cpu/softmax_exp.h"

#include <immintrin.h>

#include <cmath>

#include "ops/cpu/simd.h"

#define LMS_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

namespace lmscope::simd {

namespace {

// exp(x) for 16 lanes, Cephes' expf polynomial (about 1 ulp); x < -87 (and -inf) gives 0
LMS_AVX512 inline __m512 exp16(__m512 x) {
    constexpr __mmask16 all = 0xffff;
    const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ);
    x = _mm512_maskz_min_ps(all, x, _mm512_set1_ps(88.3762626647949f));
    const __m512 n = _mm512_maskz_roundscale_ps(all, _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_fmadd_ps(_mm512_mul_ps(y, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_maskz_scalef_ps(static_cast<__mmask16>(live & all), y, n);
}

// p[i] = exp(s[i] - m), returns the sum
LMS_AVX512 float exp_sub_avx512(const float* s, float m, int64_t n, float* p) {
    __m512 sum = _mm512_setzero_ps();
    const __m512 mv = _mm512_set1_ps(m);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1);
        const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + i), mv));
        _mm512_mask_storeu_ps(p + i, k, e);
        sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(k, e));
    }
    alignas(64) float l[16];
    _mm512_store_ps(l, sum);
    float t = 0.0f;
    for (float e : l) t += e;
    return t;
}

}  // namespace

float exp_sub(const float* s, float m, int64_t n, float* p) {
    if (active_isa() == Isa::Avx512) return exp_sub_avx512(s, m, n, p);
    float t = 0.0f;
    for (int64_t i = 0; i < n; ++i) t += (p[i] = std::exp(s[i] - m));
    return t;
}

}  // namespace lmscope::simd
