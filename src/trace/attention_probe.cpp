// Attention scores / probabilities for the trace (see attention_probe.h).
#include "trace/attention_probe.h"

#include <cmath>
#include <vector>

#include "core/thread_pool.h"

namespace lmscope {

void observe_attention(TensorObserver* obs, const std::string& prefix, const float* q, const float* k,
                       const AttentionShape& as) {
    if (!obs) return;
    const std::string scores_name = prefix + "scores", probs_name = prefix + "attn_probs";
    const bool want_scores = obs->wants(scores_name), want_probs = obs->wants(probs_name);
    if (!want_scores && !want_probs) return;
    const int64_t T = as.T, S = as.pos0 + as.T, Hq = as.Hq, D = as.D, group = as.Hq / as.Hkv;
    // (Hq, T, S); masked entries (j > pos0 + t) stay 0 and are ignored by observe_causal
    std::vector<float> scores(static_cast<size_t>(Hq * T * S), 0.0f);
    std::vector<float> probs(want_probs ? scores.size() : 0, 0.0f);
    ThreadPool::global().parallel_for(Hq * T, 1, [&](int64_t r0, int64_t r1, int) {
        std::vector<double> row(static_cast<size_t>(S));
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t h = r / T, t = r % T, kvh = h / group, n_keys = as.pos0 + t + 1;
            const float* qv = q + (t * Hq + h) * D;
            double mx = -INFINITY;
            for (int64_t j = 0; j < n_keys; ++j) {
                const float* kv = k + (j * as.Hkv + kvh) * D;
                double dot = 0;
                for (int64_t d = 0; d < D; ++d) dot += static_cast<double>(qv[d]) * kv[d];
                row[static_cast<size_t>(j)] = dot * as.scale;
                scores[static_cast<size_t>(r * S + j)] = static_cast<float>(row[static_cast<size_t>(j)]);
                mx = std::max(mx, row[static_cast<size_t>(j)]);
            }
            if (!want_probs) continue;
            double sum = 0;
            for (int64_t j = 0; j < n_keys; ++j) sum += (row[static_cast<size_t>(j)] = std::exp(row[static_cast<size_t>(j)] - mx));
            for (int64_t j = 0; j < n_keys; ++j)
                probs[static_cast<size_t>(r * S + j)] = static_cast<float>(row[static_cast<size_t>(j)] / sum);
        }
    });
    const Shape shape{1, Hq, T, S};
    if (want_scores) obs->observe_causal(scores_name, scores.data(), shape, as.pos0);
    if (want_probs) obs->observe_causal(probs_name, probs.data(), shape, as.pos0);
}

}  // namespace lmscope
