// Scalar reference: causal GQA attention, one query row of scores at a time, softmax in double.
#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "ops/ops.h"

namespace lmscope {

namespace {

double kv_value(float x) { return x; }
double kv_value(uint16_t h) { return f16_to_f32(h); }  // a 16-bit cache holds IEEE binary16

template <typename KV>
void attention_ref_impl(const float* q, const KV* k, const KV* v, const AttentionShape& s, float* out) {
    const int64_t group = s.Hq / s.Hkv;
    std::vector<double> p;
    for (int64_t t = 0; t < s.T; ++t)
        for (int64_t h = 0; h < s.Hq; ++h) {
            const int64_t kvh = h / group;
            const int64_t n_keys = s.pos0 + t + 1;
            const float* qv = q + (t * s.Hq + h) * s.D;
            p.assign(static_cast<size_t>(n_keys), 0.0);
            double mx = -INFINITY;
            for (int64_t j = 0; j < n_keys; ++j) {
                const KV* kv = k + (j * s.Hkv + kvh) * s.D;
                double dot = 0;
                for (int64_t d = 0; d < s.D; ++d) dot += double(qv[d]) * kv_value(kv[d]);
                p[j] = dot * s.scale;
                mx = std::max(mx, p[j]);
            }
            double sum = 0;
            for (auto& e : p) sum += (e = std::exp(e - mx));
            float* o = out + (t * s.Hq + h) * s.D;
            for (int64_t d = 0; d < s.D; ++d) {
                double acc = 0;
                for (int64_t j = 0; j < n_keys; ++j) acc += p[j] * kv_value(v[(j * s.Hkv + kvh) * s.D + d]);
                o[d] = static_cast<float>(acc / sum);
            }
        }
}

}  // namespace

void attention_ref(const float* q, const float* k, const float* v, const AttentionShape& s, float* out) {
    attention_ref_impl(q, k, v, s, out);
}
void attention_ref(const float* q, const uint16_t* k, const uint16_t* v, const AttentionShape& s, float* out) {
    attention_ref_impl(q, k, v, s, out);
}

}  // namespace lmscope
