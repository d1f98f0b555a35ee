// `lmscope trace diff A.json B.json`: aligns the records of two JSON traces by (name, phase,
// iteration) and measures how far each tensor's statistics moved.
//
// Per-tensor divergence (a relative number, 0 = identical):
//   mean, min, max, absmax: |a - b| / max(absmax_a, absmax_b)   (relative to the tensor's scale, so a
//                            mean near 0 does not blow up the ratio)
//   std:                    |a - b| / max(std_a, std_b)
//   zeros:                  |fraction_a - fraction_b|
//   values (both saved):    ||a - b||_2 / max(||a||_2, ||b||_2)
//   different shape, or different NaN/Inf counts: infinite.
// The divergence is the largest of these; the "first divergence" is the first record in A's order
// (forward order of the run) whose divergence exceeds the threshold.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "trace/trace_io.h"

namespace lmscope {

struct DiffOptions {
    double threshold = 1e-3;
    size_t top = 10;
};

struct TensorDiff {
    std::string name;
    Phase phase = Phase::Forward;
    int iteration = 0;
    double divergence = 0;
    std::string stat;  // which statistic gave it
    double a = 0, b = 0;  // that statistic in A and B
    bool values_compared = false;
};

struct DiffResult {
    std::vector<TensorDiff> aligned;  // in A's order
    std::optional<size_t> first;      // index into aligned
    std::vector<size_t> top;          // indices into aligned, largest divergence first (above threshold)
    std::vector<std::string> missing_in_b, extra_in_b;  // "name [phase iteration]"
    double threshold = 0;
};

/** Divergence of one pair of records (see the header comment). */
TensorDiff diff_records(const TraceRecord& a, const TraceRecord& b);
DiffResult diff_traces(const LoadedTrace& a, const LoadedTrace& b, const DiffOptions& opt);
std::string diff_to_text(const DiffResult& d, const LoadedTrace& a, const LoadedTrace& b);
std::string diff_to_json(const DiffResult& d, const LoadedTrace& a, const LoadedTrace& b);

}  // namespace lmscope
