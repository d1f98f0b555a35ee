// RoPE frequencies and per-position cos/sin, computed the way transformers does (float32 inv_freq,
// angle = float(pos) * inv_freq in float32), with "linear" and "llama3" inv_freq scaling.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"

namespace lmscope {

/** inv_freq (head_dim / 2) for this config, scaling applied. */
std::vector<float> rope_inv_freq(const RopeConfig& rope, int64_t head_dim);

/** cos/sin (T, head_dim/2) for positions pos0 .. pos0+T-1. */
void rope_cos_sin(const std::vector<float>& inv_freq, int64_t pos0, int64_t T, float* cos, float* sin);

}  // namespace lmscope
