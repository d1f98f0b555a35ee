// Prefill attention in blocks (attention_blocked.cpp): see there. attention_cpu picks it for T >= 8.
#pragma once

#include "ops/ops.h"

namespace lmscope {

void attention_blocked(const float* q, const float* k, const float* v, const AttentionShape& s, float* out);

}  // namespace lmscope
