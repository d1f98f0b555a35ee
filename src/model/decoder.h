// The pre-norm decoder shared by Qwen3, Qwen2 and Llama (architecture differences are config flags):
//   x = embed(ids)
//   per layer: x += o_proj(attn(rope(qk_norm(q_proj(n))), rope(qk_norm(k_proj(n))), v_proj(n))),
//              n = input_layernorm(x); then x += down(silu(gate(m)) * up(m)), m = post_attention_layernorm(x)
//   logits = lm_head(norm(x))
// Activations are f32; weights are read in their stored dtype. A KV cache makes decoding incremental.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/config.h"
#include "model/weights.h"
#include "trace/observer.h"

namespace lmscope {

/** Per-layer K and V of every position seen so far: k[l], v[l] are (capacity, kv_dim). */
struct KVCache {
    int64_t capacity = 0;
    int64_t len = 0;
    std::vector<std::vector<float>> k, v;
};

class DecoderModel {
public:
    /** Loads config.json and the safetensors of a model folder; validates shapes against the config. */
    static DecoderModel load(const std::string& dir);
    DecoderModel(ModelConfig cfg, Checkpoint ckpt);

    const ModelConfig& config() const { return cfg_; }
    const ModelWeights& weights() const { return w_; }
    const Checkpoint& checkpoint() const { return ckpt_; }

    KVCache new_cache(int64_t capacity) const;

    /**
     * Runs T new tokens at positions cache.len .. cache.len+T-1 and appends their K/V.
     * logits: (T, vocab) if all_logits, else (1, vocab) for the last token; may be null.
     */
    void forward(const int32_t* ids, int64_t T, KVCache& cache, float* logits, bool all_logits,
                 TensorObserver* observer = nullptr);

private:
    void ensure_workspace(int64_t T);

    ModelConfig cfg_;
    Checkpoint ckpt_;
    ModelWeights w_;
    std::vector<float> inv_freq_;
    // scratch, grown to the largest T seen; reused so decoding allocates nothing
    int64_t ws_tokens_ = 0;
    std::vector<float> x_, h_, q_, k_, v_, att_, gate_, up_, cos_, sin_;
};

}  // namespace lmscope
