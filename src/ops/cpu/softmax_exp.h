// p[i] = exp(s[i] - m) over a row, vectorised (AVX-512; std::exp below that level), for the softmax of
// the attention ops; and SwiGLU's silu(g) * u on the same exp. The AVX-512 exp is Cephes' expf polynomial, about 1 ulp; arguments below -87
// (and -inf, the causal mask) give exactly 0.
#pragma once

#include <cstdint>

namespace lmscope::simd {

/** p[i] = exp(s[i] - m) for i < n (p may be s); returns the sum of the p[i]. */
float exp_sub(const float* s, float m, int64_t n, float* p);

/** out[i] = gate[i] / (1 + exp(-gate[i])) * up[i] for i < n (out may be gate or up). */
void silu_mul_row(const float* gate, const float* up, int64_t n, float* out);

}  // namespace lmscope::simd
