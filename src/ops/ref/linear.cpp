// Scalar reference: y = x W^T + b with double accumulators (x rounded to bf16 first in bf16 activation
// mode, where that applies: ops.h).
#include <vector>

#include "ops/ops.h"

namespace lmscope {

void linear_ref(const float* x_in, int64_t T, const Linear& w, float* y) {
    const int64_t in = w.in(), out = w.out();
    std::vector<float> xr;
    const float* x = bf16_activations_ref(x_in, T, w, xr);
    for (int64_t t = 0; t < T; ++t)
        for (int64_t o = 0; o < out; ++o) {
            double acc = w.bias.defined() ? w.bias.at_f64(o) : 0.0;
            for (int64_t i = 0; i < in; ++i) acc += double(x[t * in + i]) * w.weight.at_f64(o * in + i);
            y[t * out + o] = static_cast<float>(acc);
        }
}

const float* bf16_activations_ref(const float* x, int64_t T, const Linear& w, std::vector<float>& buf) {
    if (!bf16_activations_apply(T, w.format, w.weight.dtype())) return x;
    buf.resize(static_cast<size_t>(T * w.in()));
    bf16_round_activations(x, T * w.in(), buf.data());
    return buf.data();
}

}  // namespace lmscope
