// A decode step's q/k/v and gate/up linears with the elementwise work that follows them folded into each
// thread's share (linear_decode.h's After hook): q/k RMSNorm, RoPE and the KV-cache store run on the
// heads the thread has just computed, SwiGLU on its own columns. They ran serially on one thread between
// two thread-pool round trips while the other waited (~2-3 us a layer at 2 threads, cpu_notes v16).
// The arithmetic is the unfused path's (the same CPU ops on the same rows), so the results are identical.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "model/weights.h"

namespace lmscope {

/** What follows q/k/v in a decode step of T < 4 tokens, on each thread's heads. */
struct QkvAfter {
    int64_t T = 0, Hq = 0, Hkv = 0, D = 0;
    const Tensor* q_norm = nullptr;  // per-head RMSNorm weights (Qwen3), or null
    const Tensor* k_norm = nullptr;
    float eps = 0.0f;
    const float* cos = nullptr;  // (T, D / 2)
    const float* sin = nullptr;
    float *q = nullptr, *k = nullptr,
          *v = nullptr;                           // the projections: (T, Hq * D), (T, Hkv * D), (T, Hkv * D)
    DType cache_dtype = DType::F16;               // F32 or F16
    void *k_cache = nullptr, *v_cache = nullptr;  // the cache rows of the T new positions: (T, Hkv * D)
};

/**
 * q, k, v = x Wq^T, x Wk^T, x Wv^T for T < 4 tokens (x: (T, in)) in one thread-pool round trip, shares
 * aligned to whole heads; each thread then norms (if given) and rotates its q and k heads and stores its
 * k and v heads into the cache rows.
 */
void qkv_rope_store_cpu(const float* x, const Linear& wq, const Linear& wk, const Linear& wv,
                        const QkvAfter& a);

/** act = silu(x Wg^T) * (x Wu^T) for T < 4 tokens, each thread's SwiGLU on its own columns; up: (T, I)
 * scratch. */
void gate_up_silu_cpu(const float* x, int64_t T, const Linear& gate, const Linear& up, float* act,
                      float* up_buf);

}  // namespace lmscope
