// Float64 statistics of one tensor, as the trace records them (the fields of torch's summary: shape,
// dtype, device, mean, std, min, max) plus abs-max, the fraction of exact zeros and NaN/Inf counts.
//
// Conventions (stated once here, used by every report):
//   - mean, std, min, max and absmax are taken over the FINITE elements only; NaN and +-Inf are
//     counted in `nan` / `inf` instead, so one NaN does not hide the rest of the distribution.
//     With no finite element, mean/min/max/absmax are NaN.
//   - std is the unbiased (n-1) estimate like torch.std; with fewer than 2 finite elements it is NaN
//     (torch.std of one element is NaN too).
//   - zeros is the fraction of ALL elements that are exactly +-0.0.
//   - Two passes in double over fixed 16K-element chunks (sums, then squared deviations from the
//     mean), combined in chunk order: the result does not depend on the number of threads.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace lmscope {

struct TensorStats {
    Shape shape;
    std::string dtype = "float32";
    std::string device = "cpu";
    int64_t numel = 0;
    int64_t finite = 0;  // elements that are neither NaN nor Inf
    double mean = 0, std = 0, min = 0, max = 0, absmax = 0;
    int64_t zero_count = 0;
    double zeros = 0;  // zero_count / numel (0 for an empty tensor)
    int64_t nan = 0, inf = 0;

    bool all_zero() const { return numel > 0 && zero_count == numel; }
    bool has_nonfinite() const { return nan > 0 || inf > 0; }
};

/** Statistics of n f32 values laid out with `shape` (n == numel(shape)). */
TensorStats compute_stats(const float* data, int64_t n, const Shape& shape);
/** Same for f64 values. */
TensorStats compute_stats(const double* data, int64_t n, const Shape& shape);
/** Integer data (token ids): dtype "int32", never NaN/Inf. */
TensorStats compute_stats(const int32_t* data, int64_t n, const Shape& shape);

/** "(1, 8, 64)" like torch.Size printing. */
std::string shape_tuple(const Shape& s);

}  // namespace lmscope
