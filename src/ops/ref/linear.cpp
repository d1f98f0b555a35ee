// Scalar reference: y = x W^T + b with double accumulators.
#include "ops/ops.h"

namespace lmscope {

void linear_ref(const float* x, int64_t T, const Linear& w, float* y) {
    const int64_t in = w.in(), out = w.out();
    for (int64_t t = 0; t < T; ++t)
        for (int64_t o = 0; o < out; ++o) {
            double acc = w.bias.defined() ? w.bias.at_f64(o) : 0.0;
            for (int64_t i = 0; i < in; ++i) acc += double(x[t * in + i]) * w.weight.at_f64(o * in + i);
            y[t * out + o] = static_cast<float>(acc);
        }
}

}  // namespace lmscope
