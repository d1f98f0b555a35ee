// Scalar reference: rotate-half RoPE.
#include "ops/ops.h"

namespace lmscope {

void rope_ref(float* x, int64_t T, int64_t H, int64_t D, const float* cos, const float* sin) {
    const int64_t half = D / 2;
    for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < H; ++h) {
            float* v = x + (t * H + h) * D;
            for (int64_t i = 0; i < half; ++i) {
                const double c = cos[t * half + i], s = sin[t * half + i];
                const double a = v[i], b = v[i + half];
                v[i] = static_cast<float>(a * c - b * s);
                v[i + half] = static_cast<float>(b * c + a * s);
            }
        }
}

}  // namespace lmscope
