// Materialises attention scores Q K^T * scale and their softmax for the trace, only when an observer
// asks for them: the fast attention kernel never builds the (T, S) matrix, so the decoder calls this
// beside it. It reads q and the cache and writes nothing the forward pass uses, so tracing cannot
// change the model's numbers.
#pragma once

#include <string>

#include "ops/ops.h"
#include "trace/observer.h"

namespace lmscope {

/**
 * If `obs` wants `<prefix>scores` and/or `<prefix>attn_probs`, computes them for q (T, Hq, D) against
 * keys k (S, Hkv, D) with the causal GQA layout of attention() and shows them through
 * observe_causal() with shape (1, Hq, T, S). Scores are dot products in double times `as.scale`;
 * probabilities are the softmax of each row's valid scores in double, stored as f32.
 */
void observe_attention(TensorObserver* obs, const std::string& prefix, const float* q, const float* k,
                       const AttentionShape& as);

}  // namespace lmscope
