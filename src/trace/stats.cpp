// Two-pass float64 tensor statistics over fixed-size chunks (see stats.h for the conventions).
#include "trace/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/thread_pool.h"

namespace lmscope {

namespace {

constexpr int64_t kChunk = 1 << 14;
// Below this many elements the pool is not worth waking.
constexpr int64_t kParallelMin = 1 << 16;

struct Pass1 {
    double sum = 0;
    double min = std::numeric_limits<double>::infinity();
    double max = -std::numeric_limits<double>::infinity();
    int64_t finite = 0, zeros = 0, nan = 0, inf = 0;
    bool clean = true;  // no NaN/Inf in the chunk
};

// Exact but branchy: classifies every element (used for chunks holding NaN/Inf).
template <typename T>
Pass1 pass1_slow(const T* d, int64_t b, int64_t e) {
    Pass1 p;
    p.clean = false;
    for (int64_t i = b; i < e; ++i) {
        const double x = static_cast<double>(d[i]);
        if (std::isnan(x)) {
            ++p.nan;
            continue;
        }
        if (std::isinf(x)) {
            ++p.inf;
            continue;
        }
        if (x == 0.0) ++p.zeros;
        ++p.finite;
        p.sum += x;
        p.min = std::min(p.min, x);
        p.max = std::max(p.max, x);
    }
    return p;
}

constexpr int kLanes = 8;  // independent accumulators: breaks the add latency chain, keeps a fixed order

// Branch-free pass in kLanes lanes; a non-finite element makes the sum non-finite, and the chunk is
// then redone by pass1_slow.
template <typename T>
Pass1 pass1(const T* d, int64_t b, int64_t e) {
    double sum[kLanes] = {}, mn[kLanes], mx[kLanes];
    int64_t zeros[kLanes] = {};
    for (int l = 0; l < kLanes; ++l) {
        mn[l] = std::numeric_limits<double>::infinity();
        mx[l] = -std::numeric_limits<double>::infinity();
    }
    int64_t i = b;
    for (; i + kLanes <= e; i += kLanes)
        for (int l = 0; l < kLanes; ++l) {
            const double x = static_cast<double>(d[i + l]);
            sum[l] += x;
            mn[l] = x < mn[l] ? x : mn[l];
            mx[l] = x > mx[l] ? x : mx[l];
            zeros[l] += x == 0.0;
        }
    for (int l = 0; i < e; ++i, ++l) {
        const double x = static_cast<double>(d[i]);
        sum[l] += x;
        mn[l] = x < mn[l] ? x : mn[l];
        mx[l] = x > mx[l] ? x : mx[l];
        zeros[l] += x == 0.0;
    }
    Pass1 p;
    for (int l = 0; l < kLanes; ++l) {
        p.sum += sum[l];
        p.min = std::min(p.min, mn[l]);
        p.max = std::max(p.max, mx[l]);
        p.zeros += zeros[l];
    }
    if (!std::isfinite(p.sum) || (e > b && (std::isinf(p.min) || std::isinf(p.max)))) return pass1_slow(d, b, e);
    p.finite = e - b;
    return p;
}

template <typename T>
double pass2(const T* d, int64_t b, int64_t e, double mean, bool clean) {
    double ss = 0;
    if (clean) {
        double acc[kLanes] = {};
        int64_t i = b;
        for (; i + kLanes <= e; i += kLanes)
            for (int l = 0; l < kLanes; ++l) {
                const double x = static_cast<double>(d[i + l]) - mean;
                acc[l] += x * x;
            }
        for (int l = 0; i < e; ++i, ++l) {
            const double x = static_cast<double>(d[i]) - mean;
            acc[l] += x * x;
        }
        for (double a : acc) ss += a;
        return ss;
    }
    for (int64_t i = b; i < e; ++i) {
        const double x = static_cast<double>(d[i]);
        if (std::isfinite(x)) ss += (x - mean) * (x - mean);
    }
    return ss;
}

// Runs fn(chunk_index, begin, end) on every chunk, threaded for large inputs.
template <typename Fn>
void for_chunks(int64_t n, Fn&& fn) {
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    auto run = [&](int64_t c0, int64_t c1, int) {
        for (int64_t c = c0; c < c1; ++c) fn(c, c * kChunk, std::min(n, (c + 1) * kChunk));
    };
    if (n < kParallelMin)
        run(0, chunks, 0);
    else
        ThreadPool::global().parallel_for(chunks, 1, run);
}

template <typename T>
TensorStats stats_impl(const T* d, int64_t n, const Shape& shape) {
    TensorStats s;
    s.shape = shape;
    s.numel = n;
    const double nan = std::numeric_limits<double>::quiet_NaN();
    if (n <= 0) {
        s.mean = s.std = s.min = s.max = s.absmax = nan;
        return s;
    }
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    std::vector<Pass1> p1(static_cast<size_t>(chunks));
    for_chunks(n, [&](int64_t c, int64_t b, int64_t e) { p1[static_cast<size_t>(c)] = pass1(d, b, e); });
    Pass1 t;
    for (const Pass1& p : p1) {  // in chunk order: deterministic
        t.sum += p.sum;
        t.min = std::min(t.min, p.min);
        t.max = std::max(t.max, p.max);
        t.finite += p.finite;
        t.zeros += p.zeros;
        t.nan += p.nan;
        t.inf += p.inf;
    }
    s.finite = t.finite;
    s.zero_count = t.zeros;
    s.zeros = static_cast<double>(t.zeros) / static_cast<double>(n);
    s.nan = t.nan;
    s.inf = t.inf;
    if (t.finite == 0) {
        s.mean = s.std = s.min = s.max = s.absmax = nan;
        return s;
    }
    s.mean = t.sum / static_cast<double>(t.finite);
    s.min = t.min;
    s.max = t.max;
    s.absmax = std::max(std::fabs(t.min), std::fabs(t.max));
    if (t.finite < 2) {
        s.std = nan;
        return s;
    }
    std::vector<double> p2(static_cast<size_t>(chunks));
    const double mean = s.mean;
    for_chunks(n, [&](int64_t c, int64_t b, int64_t e) { p2[static_cast<size_t>(c)] = pass2(d, b, e, mean, p1[static_cast<size_t>(c)].clean);
    });
    double ss = 0;
    for (double v : p2) ss += v;
    s.std = std::sqrt(ss / static_cast<double>(t.finite - 1));
    return s;
}

}  // namespace

TensorStats compute_stats(const float* data, int64_t n, const Shape& shape) { return stats_impl(data, n, shape); }

TensorStats compute_stats(const double* data, int64_t n, const Shape& shape) { return stats_impl(data, n, shape); }

TensorStats compute_stats(const int32_t* data, int64_t n, const Shape& shape) {
    TensorStats s = stats_impl(data, n, shape);
    s.dtype = "int32";
    return s;
}

std::string shape_tuple(const Shape& s) {
    std::string out = "(";
    for (size_t i = 0; i < s.size(); ++i) {
        if (i) out += ", ";
        out += std::to_string(s[i]);
    }
    if (s.size() == 1) out += ",";
    return out + ")";
}

}  // namespace lmscope
