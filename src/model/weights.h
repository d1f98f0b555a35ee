// The tensors of a decoder checkpoint, bound by role and validated against the config.
// Weights stay in their stored dtype and borrow the mmap'ed file bytes (no conversion at load).
#pragma once

#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/safetensors.h"
#include "model/config.h"

namespace lmscope {

/** y = x W^T (+ b). weight (out, in) in F32/F16/BF16; bias (out) optional. */
struct Linear {
    std::string name;  // module path, e.g. "model.layers.0.self_attn.q_proj"
    Tensor weight;
    Tensor bias;
    int64_t in() const { return weight.dim(1); }
    int64_t out() const { return weight.dim(0); }
};

struct LayerWeights {
    Tensor input_norm;  // (H)
    Tensor post_norm;   // (H)
    Tensor q_norm;      // (head_dim), Qwen3 only
    Tensor k_norm;      // (head_dim), Qwen3 only
    Linear q, k, v, o;
    Linear gate, up, down;
};

struct ModelWeights {
    Tensor embed;       // (V, H)
    Tensor final_norm;  // (H)
    Linear lm_head;     // (V, H); the embedding table when tied
    std::vector<LayerWeights> layers;
    size_t bytes = 0;   // total bytes of the tensors used
};

/**
 * Binds and validates every tensor the config implies. Errors name the tensor, the file, the
 * expected shape with the config fields it comes from, and the found shape or dtype.
 */
ModelWeights load_weights(const Checkpoint& ckpt, const ModelConfig& cfg);

}  // namespace lmscope
