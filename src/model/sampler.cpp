#include "model/sampler.h"

#include <algorithm>
#include <cmath>

namespace lmscope {

int32_t argmax(const float* x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; ++i)
        if (x[i] > x[best]) best = i;
    return static_cast<int32_t>(best);
}

int32_t Sampler::sample(const float* logits, int64_t V) {
    if (p_.temperature <= 0.0f) return argmax(logits, V);
    cand_.resize(static_cast<size_t>(V));
    for (int64_t i = 0; i < V; ++i) cand_[i] = {logits[i] / p_.temperature, static_cast<int32_t>(i)};
    auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first; };
    size_t keep = cand_.size();
    if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < keep) {
        keep = static_cast<size_t>(p_.top_k);
        std::partial_sort(cand_.begin(), cand_.begin() + static_cast<std::ptrdiff_t>(keep), cand_.end(), by_logit);
    } else {
        std::sort(cand_.begin(), cand_.end(), by_logit);
    }
    const float mx = cand_[0].first;
    double total = 0;
    for (size_t i = 0; i < keep; ++i) total += (cand_[i].first = std::exp(cand_[i].first - mx));
    if (p_.top_p < 1.0f) {  // smallest prefix whose probability reaches top_p
        double cum = 0;
        size_t cut = keep;
        for (size_t i = 0; i < keep; ++i) {
            cum += cand_[i].first / total;
            if (cum >= p_.top_p) {
                cut = i + 1;
                break;
            }
        }
        keep = cut;
        total = 0;
        for (size_t i = 0; i < keep; ++i) total += cand_[i].first;
    }
    double r = std::uniform_real_distribution<double>(0.0, total)(rng_);
    for (size_t i = 0; i < keep; ++i) {
        r -= cand_[i].first;
        if (r <= 0) return cand_[i].second;
    }
    return cand_[keep - 1].second;
}

}  // namespace lmscope
