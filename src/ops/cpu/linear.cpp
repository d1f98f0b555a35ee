// Fast CPU linear: y (T, out) = x (T, in) W^T + b, W in its stored dtype.
// Decode (T < 4): one fused convert+dot per row, rows split across threads: W is streamed once.
// Prefill (T >= 4): the blocked GEMM of gemm.cpp (weights packed and converted per panel, register
// tiles of 12 tokens x 32 outputs on AVX-512); in bf16 activation mode with BF16 weights, the bf16 GEMM
// of gemm_bf16.cpp (x rounded to bf16, vdpbf16ps).
#include <vector>

#include "core/thread_pool.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/linear_decode.h"
#include "ops/cpu/simd.h"
#include "ops/ops.h"

namespace lmscope {

namespace {
float bias_at(const Linear& w, int64_t o) {
    return w.bias.defined() ? static_cast<float>(w.bias.at_f64(o)) : 0.0f;
}

struct DenseDecode {
    const float* x;
    const Linear* w;
    float* y;
    int64_t T;
};

// rows [r0, r1) of every token: one fused convert + dot per row and token
void dense_rows(const void* state, int64_t r0, int64_t r1) {
    const auto& d = *static_cast<const DenseDecode*>(state);
    const Linear& w = *d.w;
    const int64_t in = w.in(), out = w.out();
    const DType dt = w.weight.dtype();
    const size_t row_bytes = static_cast<size_t>(in) * dtype_size(dt);
    const auto* wbase = static_cast<const uint8_t*>(w.weight.raw());
    for (int64_t o = r0; o < r1; ++o) {
        const void* row = wbase + static_cast<size_t>(o) * row_bytes;
        for (int64_t t = 0; t < d.T; ++t) d.y[t * out + o] = simd::dot_weight_row(d.x + t * in, row, dt, in) + bias_at(w, o);
    }
}
}  // namespace

decode::Job decode::dense_job(const float* x, int64_t T, const Linear& w, float* y, int slot) {
    thread_local DenseDecode states[kMaxJobs];
    states[slot] = {x, &w, y, T};
    return {w.out(), 16, 1, &states[slot], dense_rows};
}

void linear_cpu(const float* x, int64_t T, const Linear& w, float* y) {
    const int64_t in = w.in(), out = w.out();
    const DType dt = w.weight.dtype();

    if (T < 4) {
        const decode::Job j = decode::dense_job(x, T, w, y, 0);
        decode::run_jobs(&j, 1);
        return;
    }

    // prefill: packed, register-tiled GEMM; the weight is converted while it is packed
    thread_local std::vector<float> bias;
    if (w.bias.defined()) {
        bias.resize(static_cast<size_t>(out));
        simd::row_to_f32(w.bias.raw(), w.bias.dtype(), out, bias.data());
    }
    GemmArgs g;
    g.M = T;
    g.N = out;
    g.K = in;
    g.a = x;
    g.lda = in;
    g.b = w.weight.raw();
    g.b_dtype = dt;
    g.ldb = in;
    g.b_trans = true;
    g.c = y;
    g.ldc = out;
    g.bias = w.bias.defined() ? bias.data() : nullptr;
    bf16_activations_apply(T, w.format, dt) ? gemm_bf16_cpu(g) : gemm_cpu(g);
}

}  // namespace lmscope
