#include "qwen3train/kernels.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "core/thread_pool.h"
#include "gpt/kernels.h"
#include "ops/cpu/gemm.h"

namespace lmscope::qwen3train {

// ---- rmsnorm with weight ------------------------------------------------------------------------------

void rmsnorm_forward(float* out, float* xhat, float* rstd, const float* inp, const float* weight, int64_t N,
                     int64_t C, float eps) {
    ThreadPool::global().parallel_for(N, 16, [&](int64_t begin, int64_t end, int) {
        for (int64_t n = begin; n < end; ++n) {
            const float* x = inp + n * C;
            double ss = 0;
            for (int64_t i = 0; i < C; ++i) ss += double(x[i]) * x[i];
            const float r = 1.0f / std::sqrt(static_cast<float>(ss / double(C)) + eps);
            rstd[n] = r;
            float* xh = xhat + n * C;
            float* y = out + n * C;
            for (int64_t i = 0; i < C; ++i) {
                xh[i] = x[i] * r;
                y[i] = weight[i] * xh[i];
            }
        }
    });
}

void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* xhat, const float* rstd,
                      const float* weight, int64_t N, int64_t C, bool accumulate) {
    ThreadPool& pool = ThreadPool::global();
    // dweight: one column per task, rows summed in order
    pool.parallel_for(C, 8, [&](int64_t begin, int64_t end, int) {
        for (int64_t i = begin; i < end; ++i) {
            double s = 0;
            for (int64_t n = 0; n < N; ++n) s += double(dout[n * C + i]) * xhat[n * C + i];
            dweight[i] += static_cast<float>(s);
        }
    });
    pool.parallel_for(N, 16, [&](int64_t begin, int64_t end, int) {
        for (int64_t n = begin; n < end; ++n) {
            const float* dy = dout + n * C;
            const float* xh = xhat + n * C;
            double s = 0;
            for (int64_t i = 0; i < C; ++i) s += double(dy[i]) * weight[i] * xh[i];
            const float m = static_cast<float>(s / double(C)), r = rstd[n];
            float* dx = dinp + n * C;
            if (accumulate)
                for (int64_t i = 0; i < C; ++i) dx[i] += r * (dy[i] * weight[i] - xh[i] * m);
            else
                for (int64_t i = 0; i < C; ++i) dx[i] = r * (dy[i] * weight[i] - xh[i] * m);
        }
    });
}

// ---- swiglu ----------------------------------------------------------------------------------------------

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
    ThreadPool::global().parallel_for(n, 4096, [&](int64_t begin, int64_t end, int) {
        for (int64_t i = begin; i < end; ++i) {
            const float g = gate[i];
            out[i] = g / (1.0f + std::exp(-g)) * up[i];
        }
    });
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n) {
    ThreadPool::global().parallel_for(n, 4096, [&](int64_t begin, int64_t end, int) {
        for (int64_t i = begin; i < end; ++i) {
            const float g = gate[i], s = 1.0f / (1.0f + std::exp(-g)), d = dout[i];
            const float silu = g * s;
            const float dg = d * up[i] * (s + silu * (1.0f - s));
            dup[i] = d * silu;
            dgate[i] = dg;
        }
    });
}

// ---- HF rope ---------------------------------------------------------------------------------------------

void rope_forward(float* out, const float* inp, const float* cos, const float* sin, int64_t N, int64_t T, int64_t H,
                  int64_t HD) {
    gpt::rope_rotate_forward(out, inp, cos, sin, -1.0f, N, T, H, HD);
}

void rope_backward(float* dinp, const float* dout, const float* cos, const float* sin, int64_t N, int64_t T,
                   int64_t H, int64_t HD) {
    gpt::rope_rotate_backward(dinp, dout, cos, sin, -1.0f, N, T, H, HD);
}

// ---- cross-entropy -------------------------------------------------------------------------------------------

int64_t crossentropy_forward(const float* logits, float* losses, const int32_t* targets, int64_t N, int64_t V) {
    ThreadPool::global().parallel_for(N, 1, [&](int64_t begin, int64_t end, int) {
        for (int64_t n = begin; n < end; ++n) {
            if (targets[n] < 0) {
                losses[n] = 0;
                continue;
            }
            const float* z = logits + n * V;
            float mx = -INFINITY;
            for (int64_t i = 0; i < V; ++i) mx = std::max(mx, z[i]);
            double sum = 0;
            for (int64_t i = 0; i < V; ++i) sum += std::exp(double(z[i] - mx));
            losses[n] = static_cast<float>(double(mx) + std::log(sum) - double(z[targets[n]]));
        }
    });
    int64_t count = 0;
    for (int64_t n = 0; n < N; ++n) count += targets[n] >= 0 ? 1 : 0;
    return count;
}

void crossentropy_backward(float* logits, const int32_t* targets, int64_t N, int64_t V, float scale) {
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
            for (int64_t i = 0; i < V; ++i) sum += std::exp(double(z[i] - mx));
            const double inv = 1.0 / sum;
            for (int64_t i = 0; i < V; ++i) {
                const float p = static_cast<float>(std::exp(double(z[i] - mx)) * inv);
                z[i] = (p - (i == targets[n] ? 1.0f : 0.0f)) * scale;
            }
        }
    });
}

}  // namespace lmscope::qwen3train
