// Next-token choice: greedy (temperature 0) or temperature / top-k / top-p sampling with a seeded RNG.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace lmscope {

struct SamplingParams {
    float temperature = 0.0f;  // 0: greedy argmax
    int top_k = 0;             // 0: no limit
    float top_p = 1.0f;        // 1: no nucleus cut
    uint64_t seed = 0;
};

class Sampler {
public:
    explicit Sampler(SamplingParams p) : p_(p), rng_(p.seed) {}
    /** Picks a token id from logits (V). */
    int32_t sample(const float* logits, int64_t V);

private:
    SamplingParams p_;
    std::mt19937_64 rng_;
    std::vector<std::pair<float, int32_t>> cand_;
};

int32_t argmax(const float* x, int64_t n);

}  // namespace lmscope
