// Scalar reference: SwiGLU's silu(gate) * up.
#include <cmath>

#include "ops/ops.h"

namespace lmscope {

void silu_mul_ref(const float* gate, const float* up, int64_t n, float* out) {
    for (int64_t i = 0; i < n; ++i) {
        const double g = gate[i];
        out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
    }
}

}  // namespace lmscope
