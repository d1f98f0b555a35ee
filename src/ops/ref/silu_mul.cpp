// Scalar references of the element-wise activations: SwiGLU's silu(gate) * up, logit soft-capping.
#include <cmath>

#include "ops/ops.h"

namespace lmscope {

void silu_mul_ref(const float* gate, const float* up, int64_t n, float* out) {
    for (int64_t i = 0; i < n; ++i) {
        const double g = gate[i];
        out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
    }
}

void softcap_ref(const float* x, int64_t n, float cap, float* out) {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(cap * std::tanh(static_cast<double>(x[i]) / cap));
}

}  // namespace lmscope
