// Greedy argmax: the AVX-512 path gives the scalar loop's index (the first of the largest value, NaNs never
// chosen unless at index 0, +0 and -0 equal) on odd lengths with ties, NaNs, infinities and signed zeros.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "model/sampler.h"
#include "ops/cpu/simd.h"

using namespace lmscope;

namespace {
int32_t argmax_loop(const std::vector<float>& x) {
    size_t best = 0;
    for (size_t i = 1; i < x.size(); ++i)
        if (x[i] > x[best]) best = i;
    return static_cast<int32_t>(best);
}
}  // namespace

TEST(Sampler, ArgmaxIsTheScalarLoopsIndex) {
    std::mt19937 g(7);
    const float specials[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 3.0f, -3.0f};
    for (int64_t n : {1, 2, 15, 16, 17, 31, 33, 127, 129, 1000, 4097}) {
        for (int trial = 0; trial < 40; ++trial) {
            std::vector<float> x(static_cast<size_t>(n));
            std::uniform_int_distribution<int> small(-3, 3), kind(0, 9), pick(0, 6);
            for (float& v : x)
                v = kind(g) < 8 ? static_cast<float>(small(g)) : specials[pick(g)];  // many ties
            if (trial % 4 == 1) x.assign(x.size(), -INFINITY);
            if (trial % 4 == 2)
                for (float& v : x) v = std::isnan(v) ? v : (kind(g) < 5 ? NAN : -INFINITY);
            if (trial % 8 == 3) x[0] = NAN;
            for (simd::Isa isa : {simd::Isa::Portable, simd::Isa::Avx512}) {
                if (!simd::isa_supported(isa)) continue;
                const simd::Isa before = simd::active_isa();
                simd::force_isa(isa);
                EXPECT_EQ(argmax(x.data(), n), argmax_loop(x)) << "n " << n << " trial " << trial;
                simd::force_isa(before);
            }
        }
    }
}
