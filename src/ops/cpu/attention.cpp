// Fast CPU attention: one (query token, head) pair per task, keys visited in chunks of 64 with an
// online softmax (running max and sum, rescaled accumulator), so no (T, S) score matrix exists.
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/cpu/simd.h"
#include "ops/ops.h"

namespace lmscope {

namespace {
constexpr int64_t kKeyChunk = 64;
}

void attention_cpu(const float* q, const float* k, const float* v, const AttentionShape& s, float* out) {
    const int64_t group = s.Hq / s.Hkv;
    const int64_t D = s.D;
    ThreadPool::global().parallel_for(s.T * s.Hq, 1, [&](int64_t i0, int64_t i1, int) {
        thread_local std::vector<float> acc;
        if (acc.size() < static_cast<size_t>(D)) acc.resize(static_cast<size_t>(D));
        float scores[kKeyChunk];
        for (int64_t idx = i0; idx < i1; ++idx) {
            const int64_t t = idx / s.Hq, h = idx % s.Hq, kvh = h / group;
            const int64_t n_keys = s.pos0 + t + 1;
            const float* qv = q + (t * s.Hq + h) * D;
            float m = -INFINITY, l = 0.0f;
            std::fill(acc.begin(), acc.begin() + D, 0.0f);
            for (int64_t j0 = 0; j0 < n_keys; j0 += kKeyChunk) {
                const int64_t nj = std::min(kKeyChunk, n_keys - j0);
                float cm = -INFINITY;
                for (int64_t j = 0; j < nj; ++j) {
                    scores[j] = simd::dot_f32(qv, k + ((j0 + j) * s.Hkv + kvh) * D, D) * s.scale;
                    cm = std::max(cm, scores[j]);
                }
                const float new_m = std::max(m, cm);
                const float corr = std::exp(m - new_m);  // 0 on the first chunk (m = -inf)
                l *= corr;
                for (int64_t d = 0; d < D; ++d) acc[d] *= corr;
                for (int64_t j = 0; j < nj; ++j) {
                    const float p = std::exp(scores[j] - new_m);
                    l += p;
                    simd::axpy_f32(p, v + ((j0 + j) * s.Hkv + kvh) * D, acc.data(), D);
                }
                m = new_m;
            }
            float* o = out + (t * s.Hq + h) * D;
            const float inv = 1.0f / l;
            for (int64_t d = 0; d < D; ++d) o[d] = acc[d] * inv;
        }
    });
}

}  // namespace lmscope
