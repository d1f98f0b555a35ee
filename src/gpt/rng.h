// Seeded random numbers for weight init and data sampling: xoshiro256** (Blackman & Vigna) seeded
// through splitmix64; normals by Box-Muller in double. Not torch's generator: the same seed gives the
// same weights in every lmscope build, never the same as PyTorch's.
#pragma once

#include <cstdint>

namespace lmscope::gpt {

class Rng {
public:
    explicit Rng(uint64_t seed = 0) { seed_with(seed); }
    void seed_with(uint64_t seed);
    uint64_t next_u64();
    /** Uniform in [0, 1) with 53 random bits. */
    double uniform();
    /** Uniform integer in [0, n). */
    uint64_t below(uint64_t n);
    /** Standard normal (Box-Muller; the second value of each pair is kept for the next call). */
    double normal();

    /** The whole state, for checkpoints (4 words + cached normal flag + cached value bits). */
    struct State {
        uint64_t s[4];
        uint64_t has_spare;
        double spare;
    };
    State state() const;
    void set_state(const State& st);

private:
    uint64_t s_[4] = {0, 0, 0, 0};
    bool has_spare_ = false;
    double spare_ = 0;
};

}  // namespace lmscope::gpt
