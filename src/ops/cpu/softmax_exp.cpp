// See softmax_exp.h.
#include "ops/cpu/softmax_exp.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "ops/cpu/exp16_avx512.h"
#include "ops/cpu/simd.h"

#define LMS_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

namespace lmscope::simd {

namespace {

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

LMS_AVX512 void silu_mul_avx512(const float* gate, const float* up, int64_t n, float* out) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1);
        const __m512 g = _mm512_maskz_loadu_ps(k, gate + i);
        const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));  // exp(-g)
        _mm512_mask_storeu_ps(out + i, k,
                              _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), _mm512_maskz_loadu_ps(k, up + i)));
    }
}

}  // namespace

void silu_mul_row(const float* gate, const float* up, int64_t n, float* out) {
    if (active_isa() == Isa::Avx512) return silu_mul_avx512(gate, up, n, out);
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

void online_softmax_step(float* s, int64_t visible, int64_t n, float scale, float& m, float& l, float* acc, int64_t D) {
    float cm = -INFINITY;
    for (int64_t j = 0; j < visible; ++j) cm = std::max(cm, s[j] *= scale);
    for (int64_t j = visible; j < n; ++j) s[j] = -INFINITY;
    const float new_m = std::max(m, cm);
    const float corr = std::exp(m - new_m);  // 0 on the first step (m = -inf)
    l = l * corr + exp_sub(s, new_m, n, s);
    m = new_m;
    if (corr != 1.0f)
        for (float *a = acc, *e = acc + D; a < e; ++a) *a *= corr;
}

float exp_sub(const float* s, float m, int64_t n, float* p) {
    if (active_isa() == Isa::Avx512) return exp_sub_avx512(s, m, n, p);
    float t = 0.0f;
    for (int64_t i = 0; i < n; ++i) t += (p[i] = std::exp(s[i] - m));
    return t;
}

}  // namespace lmscope::simd
