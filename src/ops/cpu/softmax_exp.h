// p[i] = exp(s[i] - m) over a row, vectorised (AVX-512; std::exp below that level), for the softmax of
// the attention ops; and SwiGLU's silu(g) * u on the same exp. The AVX-512 exp is Cephes' expf polynomial, about 1 ulp; arguments below -87
// (and -inf, the causal mask) give exactly 0.
#pragma once

#include <cstdint>

namespace lmscope::simd {

/** p[i] = exp(s[i] - m) for i < n (p may be s); returns the sum of the p[i]. */
float exp_sub(const float* s, float m, int64_t n, float* p);

/**
 * One online-softmax step of a row of n scores s: scaled in place by `scale`, those from `visible` on
 * masked (-inf), folded into the running max m and sum l, the output accumulator acc (D) rescaled by
 * exp(m_old - m_new); s then holds p = exp(s - m_new) for the P V that follows.
 */
void online_softmax_step(float* s, int64_t visible, int64_t n, float scale, float& m, float& l, float* acc, int64_t D);

/** out[i] = gate[i] / (1 + exp(-gate[i])) * up[i] for i < n (out may be gate or up). */
void silu_mul_row(const float* gate, const float* up, int64_t n, float* out);

}  // namespace lmscope::simd
