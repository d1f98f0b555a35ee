// f32 layers of the GPT, forward and backward (see kernels.h for the conventions).
#include "gpt/kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "ops/cpu/simd.h"

namespace lmscope::gpt {

namespace {

// ---- GEMM ----------------------------------------------------------------------------------------
// Register tile MR x NR, cache blocks MC x NC x KC. Each output element belongs to exactly one task
// and sums over k in a fixed order, so results do not depend on the number of threads.
constexpr int64_t MR = 6, NR = 16, MC = 96, NC = 256, KC = 256;

void kernel_generic(const float* a, int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb, float* c, int64_t ldc,
                    int64_t K, int64_t mr, int64_t nr) {
    for (int64_t r = 0; r < mr; ++r)
        for (int64_t j = 0; j < nr; ++j) {
            float s = 0;
            for (int64_t k = 0; k < K; ++k) s += a[r * a_rs + k * a_cs] * b[k * ldb + j];
            c[r * ldc + j] += s;
        }
}

// R x 16 register tile (R <= 6): 2R accumulators, two B vectors and a broadcast per k.
template <int R>
__attribute__((target("avx2,fma"))) void kernel_rx16_avx2(const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                                                           int64_t ldb, float* c, int64_t ldc, int64_t K) {
    __m256 lo[R], hi[R];
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) lo[r] = hi[r] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; ++k) {
        const float* bk = b + k * ldb;
        const __m256 b0 = _mm256_loadu_ps(bk), b1 = _mm256_loadu_ps(bk + 8);
        const float* ak = a + k * a_cs;
#pragma GCC unroll 6
        for (int r = 0; r < R; ++r) {
            const __m256 av = _mm256_broadcast_ss(ak + r * a_rs);
            lo[r] = _mm256_fmadd_ps(av, b0, lo[r]);
            hi[r] = _mm256_fmadd_ps(av, b1, hi[r]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
        float* cr = c + r * ldc;
        _mm256_storeu_ps(cr, _mm256_add_ps(_mm256_loadu_ps(cr), lo[r]));
        _mm256_storeu_ps(cr + 8, _mm256_add_ps(_mm256_loadu_ps(cr + 8), hi[r]));
    }
}

void kernel_avx2(int64_t mr, const float* a, int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb, float* c,
                 int64_t ldc, int64_t K) {
    switch (mr) {
        case 6: return kernel_rx16_avx2<6>(a, a_rs, a_cs, b, ldb, c, ldc, K);
        case 5: return kernel_rx16_avx2<5>(a, a_rs, a_cs, b, ldb, c, ldc, K);
        case 4: return kernel_rx16_avx2<4>(a, a_rs, a_cs, b, ldb, c, ldc, K);
        case 3: return kernel_rx16_avx2<3>(a, a_rs, a_cs, b, ldb, c, ldc, K);
        case 2: return kernel_rx16_avx2<2>(a, a_rs, a_cs, b, ldb, c, ldc, K);
        default: return kernel_rx16_avx2<1>(a, a_rs, a_cs, b, ldb, c, ldc, K);
    }
}

}  // namespace

void gemm(float* c, int64_t ldc, const float* a, int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb, int64_t M,
          int64_t Ncol, int64_t K, bool accumulate) {
    if (M <= 0 || Ncol <= 0) return;
    const bool avx2 = simd::active_isa() != simd::Isa::Portable;  // AVX-512 machines run the AVX2 kernel
    const int64_t mb = (M + MC - 1) / MC, nb = (Ncol + NC - 1) / NC;
    ThreadPool::global().parallel_for(mb * nb, 1, [&](int64_t begin, int64_t end, int) {
        for (int64_t task = begin; task < end; ++task) {
            const int64_t i0 = (task / nb) * MC, j0 = (task % nb) * NC;
            const int64_t i1 = std::min(M, i0 + MC), j1 = std::min(Ncol, j0 + NC);
            if (!accumulate)
                for (int64_t i = i0; i < i1; ++i) std::memset(c + i * ldc + j0, 0, sizeof(float) * (j1 - j0));
            for (int64_t k0 = 0; k0 < K; k0 += KC) {
                const int64_t kc = std::min(KC, K - k0);
                for (int64_t j = j0; j < j1; j += NR) {
                    const int64_t nr = std::min(NR, j1 - j);
                    for (int64_t i = i0; i < i1; i += MR) {
                        const int64_t mr = std::min(MR, i1 - i);
                        const float* ap = a + i * a_rs + k0 * a_cs;
                        const float* bp = b + k0 * ldb + j;
                        float* cp = c + i * ldc + j;
                        if (avx2 && nr == NR)
                            kernel_avx2(mr, ap, a_rs, a_cs, bp, ldb, cp, ldc, kc);
                        else
                            kernel_generic(ap, a_rs, a_cs, bp, ldb, cp, ldc, kc, mr, nr);
                    }
                }
            }
        }
    });
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

void matmul_forward(float* out, const float* inp, const float* wt, int64_t N, int64_t IC, int64_t OC) {
    gemm(out, OC, inp, IC, 1, wt, OC, N, OC, IC, false);
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

namespace {
// Causal rows cost ~t: pair short and long rows so contiguous ranges of work indices balance.
inline int64_t zigzag(int64_t j, int64_t T) { return (j % 2 == 0) ? j / 2 : T - 1 - j / 2; }
}  // namespace

void attention_forward(float* out, float* att, const float* q, const float* k, const float* v, int64_t B, int64_t T,
                       int64_t NH, int64_t NKV, int64_t HD, float scale) {
    const int64_t rep = NH / NKV;
    ThreadPool::global().parallel_for(B * NH * T, 8, [&](int64_t begin, int64_t end, int) {
        for (int64_t idx = begin; idx < end; ++idx) {
            const int64_t bh = idx / T, b = bh / NH, h = bh % NH, t = zigzag(idx % T, T), kvh = h / rep;
            const float* qr = q + ((b * T + t) * NH + h) * HD;
            float* arow = att + (bh * T + t) * T;
            float mx = -INFINITY;
            for (int64_t t2 = 0; t2 <= t; ++t2) {
                const float s = simd::dot_f32(qr, k + ((b * T + t2) * NKV + kvh) * HD, HD) * scale;
                arow[t2] = s;
                mx = std::max(mx, s);
            }
            double sum = 0;
            for (int64_t t2 = 0; t2 <= t; ++t2) {
                arow[t2] = std::exp(arow[t2] - mx);
                sum += arow[t2];
            }
            const float inv = static_cast<float>(1.0 / sum);
            float* o = out + ((b * T + t) * NH + h) * HD;
            std::memset(o, 0, sizeof(float) * HD);
            for (int64_t t2 = 0; t2 <= t; ++t2) {
                arow[t2] *= inv;
                simd::axpy_f32(arow[t2], v + ((b * T + t2) * NKV + kvh) * HD, o, HD);
            }
        }
    });
}

void attention_backward(float* dq, float* dk, float* dv, float* datt, const float* dout, const float* att,
                        const float* q, const float* k, const float* v, int64_t B, int64_t T, int64_t NH,
                        int64_t NKV, int64_t HD, float scale) {
    const int64_t rep = NH / NKV;
    // rows: datt = dout . v, softmax backward, dq
    ThreadPool::global().parallel_for(B * NH * T, 8, [&](int64_t begin, int64_t end, int) {
        for (int64_t idx = begin; idx < end; ++idx) {
            const int64_t bh = idx / T, b = bh / NH, h = bh % NH, t = zigzag(idx % T, T), kvh = h / rep;
            const float* dor = dout + ((b * T + t) * NH + h) * HD;
            const float* arow = att + (bh * T + t) * T;
            float* drow = datt + (bh * T + t) * T;
            double s = 0;
            for (int64_t t2 = 0; t2 <= t; ++t2) {
                drow[t2] = simd::dot_f32(dor, v + ((b * T + t2) * NKV + kvh) * HD, HD);
                s += double(arow[t2]) * drow[t2];
            }
            const float sf = static_cast<float>(s);
            float* dqr = dq + ((b * T + t) * NH + h) * HD;
            std::memset(dqr, 0, sizeof(float) * HD);
            for (int64_t t2 = 0; t2 <= t; ++t2) {
                drow[t2] = arow[t2] * (drow[t2] - sf);
                simd::axpy_f32(drow[t2] * scale, k + ((b * T + t2) * NKV + kvh) * HD, dqr, HD);
            }
        }
    });
    // columns: dk, dv of each kv head gather every query head of its group
    ThreadPool::global().parallel_for(B * NKV * T, 8, [&](int64_t begin, int64_t end, int) {
        for (int64_t idx = begin; idx < end; ++idx) {
            const int64_t bk = idx / T, b = bk / NKV, kvh = bk % NKV;
            const int64_t t2 = T - 1 - zigzag(idx % T, T);
            float* dkr = dk + ((b * T + t2) * NKV + kvh) * HD;
            float* dvr = dv + ((b * T + t2) * NKV + kvh) * HD;
            std::memset(dkr, 0, sizeof(float) * HD);
            std::memset(dvr, 0, sizeof(float) * HD);
            for (int64_t h = kvh * rep; h < (kvh + 1) * rep; ++h) {
                const int64_t bh = b * NH + h;
                for (int64_t t = t2; t < T; ++t) {
                    const int64_t r = (bh * T + t) * T + t2;
                    simd::axpy_f32(datt[r] * scale, q + ((b * T + t) * NH + h) * HD, dkr, HD);
                    simd::axpy_f32(att[r], dout + ((b * T + t) * NH + h) * HD, dvr, HD);
                }
            }
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
