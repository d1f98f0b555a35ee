// Fast CPU linear: y (T, out) = x (T, in) W^T + b, W in its stored dtype.
// Decode (T < 4): one fused convert+dot per row, rows split across threads: W is streamed once.
// Prefill: each thread converts a block of 16 rows to f32 once, then runs a 4-token x 2-row
// register tile over all tokens, so conversion is amortised over T.
#include <vector>

#include "core/thread_pool.h"
#include "ops/cpu/simd.h"
#include "ops/ops.h"

namespace lmscope {

namespace {
constexpr int64_t kRowBlock = 16;

float bias_at(const Linear& w, int64_t o) {
    return w.bias.defined() ? static_cast<float>(w.bias.at_f64(o)) : 0.0f;
}
}  // namespace

void linear_cpu(const float* x, int64_t T, const Linear& w, float* y) {
    const int64_t in = w.in(), out = w.out();
    const DType dt = w.weight.dtype();
    const size_t row_bytes = static_cast<size_t>(in) * dtype_size(dt);
    const auto* wbase = static_cast<const uint8_t*>(w.weight.raw());
    ThreadPool& pool = ThreadPool::global();

    if (T < 4) {
        pool.parallel_for(out, 16, [&](int64_t r0, int64_t r1, int) {
            for (int64_t o = r0; o < r1; ++o) {
                const void* row = wbase + static_cast<size_t>(o) * row_bytes;
                for (int64_t t = 0; t < T; ++t)
                    y[t * out + o] = simd::dot_weight_row(x + t * in, row, dt, in) + bias_at(w, o);
            }
        });
        return;
    }

    pool.parallel_for(out, kRowBlock, [&](int64_t r0, int64_t r1, int) {
        thread_local std::vector<float> wbuf;
        if (wbuf.size() < static_cast<size_t>(kRowBlock * in)) wbuf.resize(static_cast<size_t>(kRowBlock * in));
        for (int64_t b0 = r0; b0 < r1; b0 += kRowBlock) {
            const int64_t nb = std::min(kRowBlock, r1 - b0);
            const float* wf;
            if (dt == DType::F32) {
                wf = reinterpret_cast<const float*>(wbase + static_cast<size_t>(b0) * row_bytes);
            } else {
                for (int64_t r = 0; r < nb; ++r)
                    simd::row_to_f32(wbase + static_cast<size_t>(b0 + r) * row_bytes, dt, in,
                                     wbuf.data() + r * in);
                wf = wbuf.data();
            }
            int64_t t = 0;
            for (; t + 4 <= T; t += 4) {
                int64_t r = 0;
                for (; r + 2 <= nb; r += 2) {
                    float acc[4][2];
                    simd::dot_4x2(x + t * in, in, wf + r * in, in, in, acc);
                    for (int i = 0; i < 4; ++i)
                        for (int j = 0; j < 2; ++j)
                            y[(t + i) * out + b0 + r + j] = acc[i][j] + bias_at(w, b0 + r + j);
                }
                for (; r < nb; ++r)
                    for (int i = 0; i < 4; ++i)
                        y[(t + i) * out + b0 + r] = simd::dot_f32(x + (t + i) * in, wf + r * in, in) +
                                                    bias_at(w, b0 + r);
            }
            for (; t < T; ++t)
                for (int64_t r = 0; r < nb; ++r)
                    y[t * out + b0 + r] = simd::dot_f32(x + t * in, wf + r * in, in) + bias_at(w, b0 + r);
        }
    });
}

}  // namespace lmscope
