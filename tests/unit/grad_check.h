// Float64 helpers of the backward-pass tests (finite differences against hand-written gradients).
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <vector>

namespace lmscope::testing {

using Vec = std::vector<double>;

/** n normal samples N(mean, scale^2) from a fixed seed. */
inline Vec randn(size_t n, uint32_t seed, double scale = 1.0, double mean = 0.0) {
    std::mt19937 g(seed);
    std::normal_distribution<double> d(mean, scale);
    Vec v(n);
    for (auto& x : v) x = d(g);
    return v;
}
inline std::vector<float> to_f(const Vec& v) { return std::vector<float>(v.begin(), v.end()); }
inline double dotv(const Vec& a, const Vec& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
}
/** d/dx of f at x by central differences with step h. */
inline Vec fd(const std::function<double(const Vec&)>& f, Vec x, double h = 1e-5) {
    Vec g(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        const double x0 = x[i];
        x[i] = x0 + h;
        const double fp = f(x);
        x[i] = x0 - h;
        const double fm = f(x);
        x[i] = x0;
        g[i] = (fp - fm) / (2 * h);
    }
    return g;
}

}  // namespace lmscope::testing
