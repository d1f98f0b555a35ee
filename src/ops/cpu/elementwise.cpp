// Fast CPU versions of the row-wise ops: the same math as the references, in f32, rows split
// across the thread pool.
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/cpu/simd.h"
#include "ops/cpu/softmax_exp.h"
#include "ops/ops.h"

namespace lmscope {

void embedding_cpu(const int32_t* ids, int64_t T, const Tensor& table, float* out) {
    const int64_t V = table.dim(0), H = table.dim(1);
    for (int64_t t = 0; t < T; ++t)
        if (ids[t] < 0 || ids[t] >= V) fail("token id {} out of range [0, {})", ids[t], V);
    const auto* base = static_cast<const uint8_t*>(table.raw());
    const size_t row_bytes = static_cast<size_t>(H) * dtype_size(table.dtype());
    for (int64_t t = 0; t < T; ++t)
        simd::row_to_f32(base + static_cast<size_t>(ids[t]) * row_bytes, table.dtype(), H, out + t * H);
}

void rms_norm_cpu(const float* x, int64_t R, int64_t C, const Tensor& weight, float eps, float* y) {
    thread_local std::vector<float> wf;
    if (weight.defined()) {
        wf.resize(static_cast<size_t>(C));
        simd::row_to_f32(weight.raw(), weight.dtype(), C, wf.data());
    }
    const float* wp = weight.defined() ? wf.data() : nullptr;
    auto rows = [&](int64_t r0, int64_t r1, int) {
        for (int64_t r = r0; r < r1; ++r) {
            const float* xr = x + r * C;
            float* yr = y + r * C;
            const float ss = simd::dot_f32(xr, xr, C);
            const float inv = 1.0f / std::sqrt(ss / static_cast<float>(C) + eps);
            if (wp)
                for (int64_t c = 0; c < C; ++c) yr[c] = (xr[c] * inv) * wp[c];
            else
                for (int64_t c = 0; c < C; ++c) yr[c] = xr[c] * inv;
        }
    };
    if (R * C < 65536)
        rows(0, R, 0);
    else
        ThreadPool::global().parallel_for(R, 1, rows);
}

void rope_cpu(float* x, int64_t T, int64_t H, int64_t D, const float* cos, const float* sin) {
    const int64_t half = D / 2;
    for (int64_t t = 0; t < T; ++t) {
        const float* c = cos + t * half;
        const float* s = sin + t * half;
        for (int64_t h = 0; h < H; ++h) {
            float* v = x + (t * H + h) * D;
            for (int64_t i = 0; i < half; ++i) {
                const float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

void silu_mul_cpu(const float* gate, const float* up, int64_t n, float* out) {
    // a decode step's 3072 scalar std::exp per layer were ~1-2% of it, serial between parallel GEMVs
    const auto rows = [&](int64_t a, int64_t b, int) { simd::silu_mul_row(gate + a, up + a, b - a, out + a); };
    if (n < 65536)
        rows(0, n, 0);
    else
        ThreadPool::global().parallel_for(n, 4096, rows);
}

void softcap_cpu(const float* x, int64_t n, float cap, float* out) {
    // one vocabulary row of logits per position: split across threads from 64K values
    const auto rows = [&](int64_t a, int64_t b, int) {
        for (int64_t i = a; i < b; ++i) out[i] = cap * std::tanh(x[i] / cap);  // as the GPT's fused cross-entropy
    };
    if (n < 65536)
        rows(0, n, 0);
    else
        ThreadPool::global().parallel_for(n, 4096, rows);
}

void to_f16_saturated(const float* x, int64_t n, uint16_t* out) { simd::f32_to_f16_row(x, n, out); }

// vcvtne2ps2bf16's rule (Intel SDM convert_fp32_to_bfloat16), so that the f32 fallback of the bf16 GEMM
// rounds x to the bits the AVX512-BF16 path computes with; integer ops only, vectorised by the compiler.
void bf16_round_activations(const float* x, int64_t n, float* out) {
    for (int64_t i = 0; i < n; ++i) {
        uint32_t u;
        std::memcpy(&u, x + i, 4);
        const uint32_t mag = u & 0x7fffffffu;
        if (mag > 0x7f800000u)
            u = (u | 0x00400000u) & 0xffff0000u;  // NaN: quiet, sign and top payload kept
        else if (mag < 0x00800000u)
            u &= 0x80000000u;  // zero and denormals: signed zero
        else
            u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;  // nearest even; past the largest bf16: inf
        std::memcpy(out + i, &u, 4);
    }
}

}  // namespace lmscope
