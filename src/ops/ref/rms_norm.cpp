// Scalar reference: RMSNorm with a double accumulator.
#include <cmath>

#include "ops/ops.h"

namespace lmscope {

void rms_norm_ref(const float* x, int64_t R, int64_t C, const Tensor& weight, float eps, float* y) {
    for (int64_t r = 0; r < R; ++r) {
        const float* xr = x + r * C;
        float* yr = y + r * C;
        double ss = 0;
        for (int64_t c = 0; c < C; ++c) ss += double(xr[c]) * xr[c];
        const double inv = 1.0 / std::sqrt(ss / double(C) + double(eps));
        for (int64_t c = 0; c < C; ++c) {
            const float normed = static_cast<float>(xr[c] * inv);  // cast to the activation dtype first
            yr[c] = weight.defined() ? normed * static_cast<float>(weight.at_f64(c)) : normed;
        }
    }
}

}  // namespace lmscope
