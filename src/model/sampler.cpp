#include "model/sampler.h"

#include <immintrin.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include "ops/cpu/simd.h"

namespace lmscope {

namespace {

// The scalar loop's answer (the first index of the largest value; NaNs never win, a NaN x[0] stays) from
// 4 x 16 lanes: each lane keeps its first strictly larger value and that index, then the smallest index among
// the lanes holding the maximum. A vocabulary row (152K logits, from L2) took 85 us a token with the scalar
// loop, ~1% of a decode step (cpu_notes v18). -1 where only -inf and NaN were seen (the scalar loop decides).
__attribute__((target("avx512f"))) int64_t argmax_avx512(const float* x, int64_t n) {
    constexpr int kSets = 4;  // independent compare / select chains (one chain: ~5 cycles per 16 values)
    __m512 best[kSets];
    __m512i at[kSets], idx[kSets];
    for (int k = 0; k < kSets; ++k) {
        best[k] = _mm512_set1_ps(-INFINITY);
        at[k] = _mm512_set1_epi32(-1);
        idx[k] = _mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                  _mm512_set1_epi32(16 * k));
    }
    for (int64_t i = 0; i < n; i += 16 * kSets)
        for (int k = 0; k < kSets; ++k) {
            const int64_t r = n - i - 16 * k;
            const __mmask16 m = r >= 16 ? __mmask16(0xffff) : r <= 0 ? __mmask16(0) : static_cast<__mmask16>((1u << r) - 1);
            const __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m, x + i + 16 * k);
            const __mmask16 gt = _mm512_cmp_ps_mask(v, best[k], _CMP_GT_OQ);  // false for NaN
            best[k] = _mm512_mask_mov_ps(best[k], gt, v);
            at[k] = _mm512_mask_mov_epi32(at[k], gt, idx[k]);
            idx[k] = _mm512_add_epi32(idx[k], _mm512_set1_epi32(16 * kSets));
        }
    alignas(64) float b[16 * kSets];
    alignas(64) int32_t a[16 * kSets];
    for (int k = 0; k < kSets; ++k) {
        _mm512_store_ps(b + 16 * k, best[k]);
        _mm512_store_si512(a + 16 * k, at[k]);
    }
    float mx = -INFINITY;
    for (float v : b) mx = std::max(mx, v);
    if (mx == -INFINITY) return -1;
    int64_t first = INT64_MAX;
    for (int l = 0; l < 16 * kSets; ++l)
        if (b[l] == mx) first = std::min<int64_t>(first, a[l]);  // +0 == -0, as in the loop
    return first;
}

}  // namespace

int32_t argmax(const float* x, int64_t n) {
    if (n > 16 && n < INT32_MAX && !std::isnan(x[0]) && simd::active_isa() == simd::Isa::Avx512)
        if (const int64_t i = argmax_avx512(x, n); i >= 0) return static_cast<int32_t>(i);
    int64_t best = 0;
    for (int64_t i = 1; i < n; ++i)
        if (x[i] > x[best]) best = i;
    return static_cast<int32_t>(best);
}

int32_t Sampler::sample(const float* logits, int64_t V) {
    if (p_.temperature <= 0.0f) return argmax(logits, V);
    cand_.resize(static_cast<size_t>(V));
    for (int64_t i = 0; i < V; ++i) cand_[i] = {logits[i] / p_.temperature, static_cast<int32_t>(i)};
    auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first; };
    size_t keep = cand_.size();
    if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < keep) {
        keep = static_cast<size_t>(p_.top_k);
        std::partial_sort(cand_.begin(), cand_.begin() + static_cast<std::ptrdiff_t>(keep), cand_.end(), by_logit);
    } else {
        std::sort(cand_.begin(), cand_.end(), by_logit);
    }
    const float mx = cand_[0].first;
    double total = 0;
    for (size_t i = 0; i < keep; ++i) total += (cand_[i].first = std::exp(cand_[i].first - mx));
    if (p_.top_p < 1.0f) {  // smallest prefix whose probability reaches top_p
        double cum = 0;
        size_t cut = keep;
        for (size_t i = 0; i < keep; ++i) {
            cum += cand_[i].first / total;
            if (cum >= p_.top_p) {
                cut = i + 1;
                break;
            }
        }
        keep = cut;
        total = 0;
        for (size_t i = 0; i < keep; ++i) total += cand_[i].first;
    }
    double r = std::uniform_real_distribution<double>(0.0, total)(rng_);
    for (size_t i = 0; i < keep; ++i) {
        r -= cand_[i].first;
        if (r <= 0) return cand_[i].second;
    }
    return cand_[keep - 1].second;
}

}  // namespace lmscope
