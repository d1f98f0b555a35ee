// Model scaling analysis for the trace report: parameters per component, FLOPs per token, memory for
// weights, activations and the KV cache, for the traced model and for a table of depths (HF: the same
// widths with fewer/more layers; GPT: nanochat's rule d_model = 64 * depth, head_dim 128).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "trace/recorder.h"

namespace lmscope {

struct ModelShape {
    bool gpt = false;
    int64_t layers = 0, hidden = 0, heads = 0, kv_heads = 0, head_dim = 0, intermediate = 0, vocab = 0;
    bool tied = false, qkv_bias = false, qk_norm = false;
};

struct ParamCount {
    int64_t embedding = 0, attention = 0, mlp = 0, norms = 0, lm_head = 0;
    int64_t total() const { return embedding + attention + mlp + norms + lm_head; }
};

ParamCount count_params(const ModelShape& s);
/** nanochat's estimate: 6 (N - N_embedding) + 12 L heads head_dim T (training, per token). */
double train_flops_per_token(const ModelShape& s, int64_t seq_len);

struct ScalingReport {
    std::string summary;
    std::vector<std::pair<std::string, int64_t>> components;
    int64_t total_params = 0;
    std::vector<std::string> formulas;
    std::vector<std::string> depth_header;
    std::vector<std::vector<std::string>> depth_rows;
};

ModelShape shape_from_meta(const TraceMeta& m);
ScalingReport scaling_report(const TraceMeta& m);

}  // namespace lmscope
