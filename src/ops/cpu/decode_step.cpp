// See decode_step.h.
#include "ops/cpu/decode_step.h"

#include <cstring>

#include "core/error.h"
#include "ops/cpu/linear_decode.h"
#include "ops/cpu/softmax_exp.h"
#include "ops/ops.h"

namespace lmscope {

namespace {

// Heads [h0, h1) of job j's share for thread p of P (shares are whole heads: align_shares)
void share_heads(const decode::Job& j, int64_t p, int64_t P, int64_t out, int64_t D, int64_t& h0,
                 int64_t& h1) {
    int64_t u0, u1;
    decode::share(j, p, P, u0, u1);
    h0 = std::min(out, u0 * j.cols) / D;
    h1 = std::min(out, u1 * j.cols) / D;
}

// rows [h0, h1) of (T, H, D) y: the new cache rows, f16 or f32
void store_heads(const QkvAfter& a, const float* y, void* cache, int64_t h0, int64_t h1) {
    const int64_t KVD = a.Hkv * a.D;
    for (int64_t t = 0; t < a.T; ++t) {
        const int64_t off = t * KVD + h0 * a.D, n = (h1 - h0) * a.D;
        if (a.cache_dtype == DType::F16)
            to_f16_saturated(y + off, n, static_cast<uint16_t*>(cache) + off);
        else
            std::memcpy(static_cast<float*>(cache) + off, y + off, sizeof(float) * static_cast<size_t>(n));
    }
}

// q/k-norm and RoPE of heads [h0, h1) of y (T, H, D)
void norm_rope_heads(const QkvAfter& a, float* y, int64_t H, const Tensor* norm, int64_t h0, int64_t h1) {
    const int64_t half = a.D / 2;
    for (int64_t t = 0; t < a.T; ++t) {
        float* r = y + (t * H + h0) * a.D;
        if (norm) rms_norm_cpu(r, h1 - h0, a.D, *norm, a.eps, r);
        rope_cpu(r, 1, h1 - h0, a.D, a.cos + t * half, a.sin + t * half);
    }
}

void qkv_after(const void* state, const decode::Job* jobs, int, int64_t p, int64_t P) {
    const auto& a = *static_cast<const QkvAfter*>(state);
    int64_t h0, h1;
    share_heads(jobs[0], p, P, a.Hq * a.D, a.D, h0, h1);
    if (h0 < h1) norm_rope_heads(a, a.q, a.Hq, a.q_norm, h0, h1);
    share_heads(jobs[1], p, P, a.Hkv * a.D, a.D, h0, h1);
    if (h0 < h1) {
        norm_rope_heads(a, a.k, a.Hkv, a.k_norm, h0, h1);
        store_heads(a, a.k, a.k_cache, h0, h1);
    }
    share_heads(jobs[2], p, P, a.Hkv * a.D, a.D, h0, h1);
    if (h0 < h1) store_heads(a, a.v, a.v_cache, h0, h1);
}

struct SwiGluAfter {
    float *gate, *up, *act;
    int64_t T, I;
};

void swiglu_after(const void* state, const decode::Job* jobs, int, int64_t p, int64_t P) {
    const auto& s = *static_cast<const SwiGluAfter*>(state);
    int64_t u0, u1;
    // gate's and up's shares are the same columns (checked by the caller)
    decode::share(jobs[0], p, P, u0, u1);
    const int64_t c0 = std::min(s.I, u0 * jobs[0].cols), c1 = std::min(s.I, u1 * jobs[0].cols);
    for (int64_t t = 0; t < s.T; ++t)
        if (c0 < c1)
            simd::silu_mul_row(s.gate + t * s.I + c0, s.up + t * s.I + c0, c1 - c0, s.act + t * s.I + c0);
}

}  // namespace

void qkv_rope_store_cpu(const float* x, const Linear& wq, const Linear& wk, const Linear& wv,
                        const QkvAfter& a) {
    LMS_CHECK(a.T < 4 && wq.out() == a.Hq * a.D && wk.out() == a.Hkv * a.D && wv.out() == a.Hkv * a.D);
    const Linear* ws[3] = {&wq, &wk, &wv};
    float* ys[3] = {a.q, a.k, a.v};
    decode::Job jobs[3];
    decode::make_jobs(x, a.T, ws, ys, 3, jobs);
    for (decode::Job& j : jobs) decode::align_shares(j, a.D);
    const decode::After after{&a, qkv_after};
    decode::run_jobs(jobs, 3, &after);
}

void gate_up_silu_cpu(const float* x, int64_t T, const Linear& gate, const Linear& up, float* act,
                      float* up_buf) {
    LMS_CHECK(T < 4 && gate.out() == up.out());
    const Linear* ws[2] = {&gate, &up};
    float* ys[2] = {act, up_buf};
    decode::Job jobs[2];
    decode::make_jobs(x, T, ws, ys, 2, jobs);
    const SwiGluAfter s{act, up_buf, act, T, gate.out()};
    const decode::After after{&s, swiglu_after};
    const bool same =
        jobs[0].units == jobs[1].units && jobs[0].grain == jobs[1].grain && jobs[0].cols == jobs[1].cols;
    decode::run_jobs(jobs, 2, same ? &after : nullptr);
    if (!same) silu_mul_cpu(act, up_buf, T * gate.out(), act);  // the shares differ: SwiGLU after the join
}

}  // namespace lmscope
