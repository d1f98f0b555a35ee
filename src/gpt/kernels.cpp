// f32 layers of the GPT, forward and backward (see kernels.h for the conventions).
#include "gpt/kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/simd.h"

namespace lmscope::gpt {

namespace {
// GemmArgs of an f32 product C (M, N) (+)= op(A) (M, K) op(B) (K, N); see ops/cpu/gemm.h.
GemmArgs f32_gemm(float* c, int64_t ldc, const float* a, int64_t lda, bool a_trans, const float* b, int64_t ldb,
                  bool b_trans, int64_t M, int64_t N, int64_t K, bool accumulate) {
    GemmArgs g;
    g.M = M;
    g.N = N;
    g.K = K;
    g.a = a;
    g.lda = lda;
    g.a_trans = a_trans;
    g.b = b;
    g.b_dtype = DType::F32;
    g.ldb = ldb;
    g.b_trans = b_trans;
    g.c = c;
    g.ldc = ldc;
    g.accumulate = accumulate;
    return g;
}
}  // namespace

// The shared blocked GEMM (ops/cpu/gemm): AVX-512 / AVX2 / portable micro-kernels on the thread pool.
// Every output element is owned by one task and sums over k in a fixed order, so results do not
// depend on the number of threads (resume-exactness relies on that).
void gemm(float* c, int64_t ldc, const float* a, int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb, int64_t M,
          int64_t Ncol, int64_t K, bool accumulate) {
    if (M <= 0 || Ncol <= 0) return;
    LMS_CHECK(a_cs == 1 || a_rs == 1);  // A is row- or column-major
    const bool a_trans = a_cs != 1;
    gemm_cpu(f32_gemm(c, ldc, a, a_trans ? a_cs : a_rs, a_trans, b, ldb, false, M, Ncol, K, accumulate));
}

void transpose(float* out, const float* in, int64_t rows, int64_t cols) {
    constexpr int64_t BS = 32;
    const int64_t rb = (rows + BS - 1) / BS;
    ThreadPool::global().parallel_for(rb, 1, [&](int64_t begin, int64_t end, int) {
        for (int64_t bi = begin; bi < end; ++bi) {
            const int64_t r0 = bi * BS, r1 = std::min(rows, r0 + BS);
            for (int64_t c0 = 0; c0 < cols; c0 += BS) {
                const int64_t c1 = std::min(cols, c0 + BS);
                for (int64_t r = r0; r < r1; ++r)
                    for (int64_t cc = c0; cc < c1; ++cc) out[cc * rows + r] = in[r * cols + cc];
            }
        }
    });
}

// ---- embedding -------------------------------------------------------------------------------------

void encoder_forward(float* out, const int32_t* ids, const float* wte, int64_t N, int64_t C) {
    for (int64_t n = 0; n < N; ++n) std::memcpy(out + n * C, wte + int64_t(ids[n]) * C, sizeof(float) * C);
}

void encoder_backward(float* dwte, const float* dout, const int32_t* ids, int64_t N, int64_t C) {
    // sequential over n: rows of repeated ids accumulate in a fixed order
    for (int64_t n = 0; n < N; ++n) {
        float* d = dwte + int64_t(ids[n]) * C;
        const float* g = dout + n * C;
        for (int64_t i = 0; i < C; ++i) d[i] += g[i];
    }
}

// ---- rmsnorm -----------------------------------------------------------------------------------------

void rmsnorm_forward(float* out, float* rstd, const float* inp, int64_t N, int64_t C, float eps) {
    ThreadPool::global().parallel_for(N, 16, [&](int64_t begin, int64_t end, int) {
        for (int64_t n = begin; n < end; ++n) {
            const float* x = inp + n * C;
            double ss = 0;
            for (int64_t i = 0; i < C; ++i) ss += double(x[i]) * x[i];
            const float r = 1.0f / std::sqrt(static_cast<float>(ss / C) + eps);
            rstd[n] = r;
            float* y = out + n * C;
            for (int64_t i = 0; i < C; ++i) y[i] = x[i] * r;
        }
    });
}

void rmsnorm_backward(float* dinp, const float* dout, const float* out, const float* rstd, int64_t N, int64_t C,
                      bool accumulate) {
    ThreadPool::global().parallel_for(N, 16, [&](int64_t begin, int64_t end, int) {
        for (int64_t n = begin; n < end; ++n) {
            const float* dy = dout + n * C;
            const float* y = out + n * C;
            double s = 0;
            for (int64_t i = 0; i < C; ++i) s += double(dy[i]) * y[i];
            const float m = static_cast<float>(s / C), r = rstd[n];
            float* dx = dinp + n * C;
            if (accumulate)
                for (int64_t i = 0; i < C; ++i) dx[i] += r * (dy[i] - y[i] * m);
            else
                for (int64_t i = 0; i < C; ++i) dx[i] = r * (dy[i] - y[i] * m);
        }
    });
}

// ---- linear --------------------------------------------------------------------------------------------

void matmul_forward(float* out, const float* inp, const float* w, int64_t N, int64_t IC, int64_t OC) {
    // the GEMM packs W^T's panels itself: no transposed copy of the weights
    gemm_cpu(f32_gemm(out, OC, inp, IC, false, w, IC, true, N, OC, IC, false));
}

void matmul_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, int64_t N,
                     int64_t IC, int64_t OC, bool accumulate_dinp) {
    if (dinp) gemm(dinp, IC, dout, OC, 1, w, IC, N, IC, OC, accumulate_dinp);
    if (dw) gemm(dw, IC, dout, 1, OC, inp, IC, OC, IC, N, true);
}

// ---- rope ------------------------------------------------------------------------------------------------

void rope_tables(std::vector<float>& cos, std::vector<float>& sin, int64_t T, int64_t HD, double base) {
    const int64_t half = HD / 2;
    cos.assign(T * half, 0);
    sin.assign(T * half, 0);
    std::vector<float> inv_freq(half);
    for (int64_t i = 0; i < half; ++i)
        inv_freq[i] = 1.0f / std::pow(static_cast<float>(base), static_cast<float>(2 * i) / static_cast<float>(HD));
    auto bf16 = [](float x) { return bf16_to_f32(f32_to_bf16(x)); };
    for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < half; ++i) {
            const float f = static_cast<float>(t) * inv_freq[i];
            cos[t * half + i] = bf16(std::cos(f));
            sin[t * half + i] = bf16(std::sin(f));
        }
}

void rope_rotate_forward(float* out, const float* inp, const float* cos, const float* sin, float sin_sign, int64_t N,
                         int64_t T, int64_t H, int64_t HD) {
    const int64_t d = HD / 2;
    ThreadPool::global().parallel_for(N, 16, [&](int64_t begin, int64_t end, int) {
        for (int64_t n = begin; n < end; ++n) {
            const float* c = cos + (n % T) * d;
            const float* s = sin + (n % T) * d;
            for (int64_t h = 0; h < H; ++h) {
                const float* x = inp + (n * H + h) * HD;
                float* y = out + (n * H + h) * HD;
                for (int64_t i = 0; i < d; ++i) {
                    const float x1 = x[i], x2 = x[i + d], si = sin_sign * s[i];  // exact: sign is +-1
                    y[i] = x1 * c[i] + x2 * si;
                    y[i + d] = x1 * (-si) + x2 * c[i];
                }
            }
        }
    });
}

void rope_rotate_backward(float* dinp, const float* dout, const float* cos, const float* sin, float sin_sign,
                          int64_t N, int64_t T, int64_t H, int64_t HD) {
    const int64_t d = HD / 2;
    ThreadPool::global().parallel_for(N, 16, [&](int64_t begin, int64_t end, int) {
        for (int64_t n = begin; n < end; ++n) {
            const float* c = cos + (n % T) * d;
            const float* s = sin + (n % T) * d;
            for (int64_t h = 0; h < H; ++h) {
                const float* dy = dout + (n * H + h) * HD;
                float* dx = dinp + (n * H + h) * HD;
                for (int64_t i = 0; i < d; ++i) {
                    const float g1 = dy[i], g2 = dy[i + d], si = sin_sign * s[i];
                    dx[i] = g1 * c[i] - g2 * si;
                    dx[i + d] = g1 * si + g2 * c[i];
                }
            }
        }
    });
}

void rope_forward(float* out, const float* inp, const float* cos, const float* sin, int64_t N, int64_t T, int64_t H,
                  int64_t HD) {
    rope_rotate_forward(out, inp, cos, sin, 1.0f, N, T, H, HD);
}

void rope_backward(float* dinp, const float* dout, const float* cos, const float* sin, int64_t N, int64_t T,
                   int64_t H, int64_t HD) {
    rope_rotate_backward(dinp, dout, cos, sin, 1.0f, N, T, H, HD);
}

// ---- attention -------------------------------------------------------------------------------------------

// Blocks of kAttBlock query rows (forward) or key columns (backward) run as small GEMMs on one thread
// each; a block of rows [i0, i1) only needs keys [0, i1), so the causal half is mostly skipped. Row and
// column blocks share one alignment: every att / datt entry a column block reads was written by its
// row block (zero above the diagonal).
namespace {
constexpr int64_t kAttBlock = 64;

// Causal blocks cost ~their index: pair short and long ones so contiguous ranges of tasks balance.
inline int64_t zigzag(int64_t j, int64_t n) { return (j % 2 == 0) ? j / 2 : n - 1 - j / 2; }

// One attention block's product on the calling thread (the blocks themselves are split across the pool).
void small_gemm(float* c, int64_t ldc, const float* a, int64_t lda, bool a_trans, const float* b, int64_t ldb,
                bool b_trans, int64_t M, int64_t N, int64_t K, bool accumulate) {
    gemm_cpu_serial(f32_gemm(c, ldc, a, lda, a_trans, b, ldb, b_trans, M, N, K, accumulate));
}
}  // namespace

void attention_forward(float* out, float* att, const float* q, const float* k, const float* v, int64_t B, int64_t T,
                       int64_t NH, int64_t NKV, int64_t HD, float scale) {
    const int64_t rep = NH / NKV, nblk = (T + kAttBlock - 1) / kAttBlock;
    const int64_t qs = NH * HD, ks = NKV * HD;  // row strides of q / out and of k / v
    ThreadPool::global().parallel_for(B * NH * nblk, 1, [&](int64_t begin, int64_t end, int) {
        for (int64_t idx = begin; idx < end; ++idx) {
            const int64_t bh = idx / nblk, b = bh / NH, h = bh % NH, kvh = h / rep;
            const int64_t i0 = zigzag(idx % nblk, nblk) * kAttBlock, i1 = std::min(T, i0 + kAttBlock);
            float* arows = att + (bh * T + i0) * T;
            const float* kb = k + b * T * ks + kvh * HD;
            const float* vb = v + b * T * ks + kvh * HD;
            // S (i1-i0, i1) = Q K^T
            small_gemm(arows, T, q + (b * T + i0) * qs + h * HD, qs, false, kb, ks, true, i1 - i0, i1, HD, false);
            for (int64_t t = i0; t < i1; ++t) {
                float* arow = arows + (t - i0) * T;
                float mx = -INFINITY;
                for (int64_t t2 = 0; t2 <= t; ++t2) {
                    arow[t2] *= scale;
                    mx = std::max(mx, arow[t2]);
                }
                double sum = 0;
                for (int64_t t2 = 0; t2 <= t; ++t2) {
                    arow[t2] = std::exp(arow[t2] - mx);
                    sum += arow[t2];
                }
                const float inv = static_cast<float>(1.0 / sum);
                for (int64_t t2 = 0; t2 <= t; ++t2) arow[t2] *= inv;
                std::fill(arow + t + 1, arow + i1, 0.0f);  // masked: read as zero by the products below
            }
            // O (i1-i0, HD) = P V
            small_gemm(out + (b * T + i0) * qs + h * HD, qs, arows, T, false, vb, ks, false, i1 - i0, HD, i1, false);
        }
    });
}

void attention_backward(float* dq, float* dk, float* dv, float* datt, const float* dout, const float* att,
                        const float* q, const float* k, const float* v, int64_t B, int64_t T, int64_t NH,
                        int64_t NKV, int64_t HD, float scale) {
    const int64_t rep = NH / NKV, nblk = (T + kAttBlock - 1) / kAttBlock;
    const int64_t qs = NH * HD, ks = NKV * HD;
    // query row blocks: dP = dO V^T, softmax backward (datt holds dS, unscaled), dQ = scale dS K
    ThreadPool::global().parallel_for(B * NH * nblk, 1, [&](int64_t begin, int64_t end, int) {
        for (int64_t idx = begin; idx < end; ++idx) {
            const int64_t bh = idx / nblk, b = bh / NH, h = bh % NH, kvh = h / rep;
            const int64_t i0 = zigzag(idx % nblk, nblk) * kAttBlock, i1 = std::min(T, i0 + kAttBlock);
            const float* arows = att + (bh * T + i0) * T;
            float* drows = datt + (bh * T + i0) * T;
            const float* kb = k + b * T * ks + kvh * HD;
            const float* vb = v + b * T * ks + kvh * HD;
            small_gemm(drows, T, dout + (b * T + i0) * qs + h * HD, qs, false, vb, ks, true, i1 - i0, i1, HD, false);
            for (int64_t t = i0; t < i1; ++t) {
                const float* arow = arows + (t - i0) * T;
                float* drow = drows + (t - i0) * T;
                double s = 0;
                for (int64_t t2 = 0; t2 <= t; ++t2) s += double(arow[t2]) * drow[t2];
                const float sf = static_cast<float>(s);
                for (int64_t t2 = 0; t2 <= t; ++t2) drow[t2] = arow[t2] * (drow[t2] - sf);
                std::fill(drow + t + 1, drow + i1, 0.0f);
            }
            float* dqb = dq + (b * T + i0) * qs + h * HD;
            small_gemm(dqb, qs, drows, T, false, kb, ks, false, i1 - i0, HD, i1, false);
            for (int64_t t = 0; t < i1 - i0; ++t)
                for (int64_t d = 0; d < HD; ++d) dqb[t * qs + d] *= scale;
        }
    });
    // key column blocks: dK = scale sum_h dS^T Q and dV = sum_h P^T dO over the group's query heads,
    // rows t >= j0 only (dS and P are zero above the diagonal)
    ThreadPool::global().parallel_for(B * NKV * nblk, 1, [&](int64_t begin, int64_t end, int) {
        for (int64_t idx = begin; idx < end; ++idx) {
            const int64_t bk = idx / nblk, b = bk / NKV, kvh = bk % NKV;
            const int64_t j0 = (nblk - 1 - zigzag(idx % nblk, nblk)) * kAttBlock, j1 = std::min(T, j0 + kAttBlock);
            float* dkb = dk + (b * T + j0) * ks + kvh * HD;
            float* dvb = dv + (b * T + j0) * ks + kvh * HD;
            for (int64_t h = kvh * rep; h < (kvh + 1) * rep; ++h) {
                const int64_t bh = b * NH + h;
                const bool acc = h != kvh * rep;
                const int64_t off = (bh * T + j0) * T + j0;  // (row t = j0, column j0)
                small_gemm(dkb, ks, datt + off, T, true, q + (b * T + j0) * qs + h * HD, qs, false, j1 - j0, HD,
                           T - j0, acc);
                small_gemm(dvb, ks, att + off, T, true, dout + (b * T + j0) * qs + h * HD, qs, false, j1 - j0, HD,
                           T - j0, acc);
            }
            for (int64_t j = 0; j < j1 - j0; ++j)
                for (int64_t d = 0; d < HD; ++d) dkb[j * ks + d] *= scale;
        }
    });
}

// ---- relu^2 ------------------------------------------------------------------------------------------------

void relu2_forward(float* out, const float* inp, int64_t n) {
    ThreadPool::global().parallel_for(n, 4096, [&](int64_t begin, int64_t end, int) {
        for (int64_t i = begin; i < end; ++i) {
            const float r = inp[i] > 0 ? inp[i] : 0.0f;
            out[i] = r * r;
        }
    });
}

void relu2_backward(float* dinp, const float* dout, const float* inp, int64_t n) {
    ThreadPool::global().parallel_for(n, 4096, [&](int64_t begin, int64_t end, int) {
        for (int64_t i = begin; i < end; ++i) dinp[i] = inp[i] > 0 ? 2.0f * inp[i] * dout[i] : 0.0f;
    });
}

// ---- soft-capped cross-entropy --------------------------------------------------------------------------------

int64_t softcap_crossentropy_forward(float* logits, float* losses, const int32_t* targets, int64_t N, int64_t V,
                                     float cap) {
    ThreadPool::global().parallel_for(N, 1, [&](int64_t begin, int64_t end, int) {
        for (int64_t n = begin; n < end; ++n) {
            float* z = logits + n * V;
            float mx = -INFINITY;
            for (int64_t i = 0; i < V; ++i) {
                z[i] = cap * std::tanh(z[i] / cap);
                mx = std::max(mx, z[i]);
            }
            if (targets[n] < 0) {
                losses[n] = 0;
                continue;
            }
            double sum = 0;
            for (int64_t i = 0; i < V; ++i) sum += std::exp(z[i] - mx);
            losses[n] = static_cast<float>(double(mx) + std::log(sum) - double(z[targets[n]]));
        }
    });
    int64_t count = 0;
    for (int64_t n = 0; n < N; ++n) count += targets[n] >= 0 ? 1 : 0;
    return count;
}

void softcap_crossentropy_backward(float* logits, const int32_t* targets, int64_t N, int64_t V, float cap,
                                   float scale) {
    ThreadPool::global().parallel_for(N, 1, [&](int64_t begin, int64_t end, int) {
        for (int64_t n = begin; n < end; ++n) {
            float* z = logits + n * V;
            if (targets[n] < 0) {
                std::memset(z, 0, sizeof(float) * V);
                continue;
            }
            float mx = -INFINITY;
            for (int64_t i = 0; i < V; ++i) mx = std::max(mx, z[i]);
            double sum = 0;
            for (int64_t i = 0; i < V; ++i) sum += std::exp(z[i] - mx);
            const double inv = 1.0 / sum;
            for (int64_t i = 0; i < V; ++i) {
                const float p = static_cast<float>(std::exp(z[i] - mx) * inv);
                const float th = z[i] / cap;
                const float g = (p - (i == targets[n] ? 1.0f : 0.0f)) * scale;
                z[i] = g * (1.0f - th * th);
            }
        }
    });
}

}  // namespace lmscope::gpt
