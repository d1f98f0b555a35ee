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

#include "core/dtype.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/weights.h"
#include "trace/observer.h"

namespace lmscope {

/**
 * Per-layer K and V of every position seen so far, (capacity, kv_dim) per layer: in f32 (k, v) or
 * IEEE f16 (k16, v16; half the bytes a decode step reads, attention converts in registers). The
 * default follows the model (DecoderModel::default_kv_dtype): f32 for a model whose linears are all
 * f32, f16 otherwise; LMSCOPE_KV_CACHE=f32|f16 overrides it.
 */
struct KVCache {
    int64_t capacity = 0;
    int64_t len = 0;
    DType dtype = DType::F16;  // F32 or F16
    std::vector<std::vector<float>> k, v;          // dtype F32
    std::vector<std::vector<uint16_t>> k16, v16;  // dtype F16
};


class DecoderModel {
public:
    /**
     * Loads config.json and the safetensors of a model folder; validates shapes against the config.
     * cpu_copies: the CPU decode's own copies of quantized weights in the order it reads them (AWQ
     * column tiles, the FP8 4-row layout; load_weights); false for a model that only feeds a GPU upload
     * (--device cuda), which then takes as much host memory as those codes less. The CPU forward works
     * either way (without them it reads the checkpoint's layout, slower).
     */
    static DecoderModel load(const std::string& dir, bool cpu_copies = true);
    DecoderModel(ModelConfig cfg, Checkpoint ckpt, bool cpu_copies = true);

    const ModelConfig& config() const { return cfg_; }
    const ModelWeights& weights() const { return w_; }
    const Checkpoint& checkpoint() const { return ckpt_; }

    KVCache new_cache(int64_t capacity) const { return new_cache(capacity, default_kv_dtype()); }
    /**
     * The KV cache dtype new_cache picks: F32 when every linear is dense f32 (the model's own precision,
     * as the CUDA decoder does), F16 for 16-bit and quantized models; LMSCOPE_KV_CACHE=f32|f16 overrides.
     */
    DType default_kv_dtype() const;
    /** dtype F32 or F16. */
    KVCache new_cache(int64_t capacity, DType dtype) const;

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
    bool all_f32_ = false;  // every linear dense f32
    // scratch, grown to the largest T seen; reused so decoding allocates nothing
    int64_t ws_tokens_ = 0;
    std::vector<float> x_, h_, q_, k_, v_, att_, gate_, up_, cos_, sin_;
    std::vector<float> kf_;  // the keys of an f16 cache as f32, for the attention probe of a trace
};

}  // namespace lmscope
