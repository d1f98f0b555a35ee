// Scalar reference of the AWQ int4 linear: y = x Wt + b with Wt[k, n] = (q[k, n] - z[k/g, n]) * s[k/g, n]
// unpacked element by element from the AutoAWQ gemm layout, double accumulators (x rounded to bf16 first in
// bf16 activation mode, where that applies: ops.h).
#include <vector>

#include "ops/ops.h"
#include "quant/awq.h"
#include "quant/awq_pack.h"

namespace lmscope {

void linear_awq_ref(const float* x_in, int64_t T, const Linear& w, float* y) {
    const int64_t in = w.in(), out = w.out(), g = w.group_size, pc = out / 8;
    std::vector<float> xr;
    const float* x = bf16_activations_ref(x_in, T, w, xr);
    const auto* qw = w.weight.data<int32_t>();
    const auto* qz = w.qzeros.data<int32_t>();
    for (int64_t t = 0; t < T; ++t)
        for (int64_t n = 0; n < out; ++n) {
            double acc = w.bias.defined() ? w.bias.at_f64(n) : 0.0;
            for (int64_t k = 0; k < in; ++k) {
                const int q = awq_unpack_nibble(qw + k * pc, n);
                const int z = awq_unpack_nibble(qz + (k / g) * pc, n);
                const double s = w.scale.at_f64((k / g) * out + n);
                acc += double(x[t * in + k]) * (double(q - z) * s);
            }
            y[t * out + n] = static_cast<float>(acc);
        }
}

}  // namespace lmscope
