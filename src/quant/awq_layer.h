// A float (F32, owned, mutable) working copy of one decoder layer for the AWQ search, and the
// layer's forward pieces built from the same ops as DecoderModel::forward (the search must run the
// attention block / MLP with substituted weights, which the model's forward cannot).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/weights.h"

namespace lmscope {

class Checkpoint;

struct AwqFloatLayer {
    int64_t index = 0;
    Tensor input_norm, post_norm, q_norm, k_norm;  // F32 (q/k norm: Qwen3 only)
    Linear q, k, v, o, gate, up, down;             // dense, F32 weights (out, in), optional F32 bias
    std::string prefix() const;                    // "model.layers.{index}."
    /** Linear by name relative to the layer ("self_attn.q_proj") or absolute; null when unknown. */
    Linear* linear(const std::string& name);
    /** Norm weight by relative name ("input_layernorm"); null when unknown. */
    Tensor* norm(const std::string& name);
    /** The seven linears with their relative names, in checkpoint order. */
    std::vector<std::pair<std::string, Linear*>> linears();
};

/** The relative names of a decoder layer's linears: self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj. */
const std::vector<std::string>& awq_layer_linear_names();

/** Loads layer `l` of a dense checkpoint as F32 copies (any float dtype). */
AwqFloatLayer load_float_layer(const Checkpoint& ckpt, const ModelConfig& cfg, int64_t l);

/** An F32 owned copy of a tensor (any float dtype). */
Tensor awq_f32_copy(const Tensor& t);

/** Multiplies input column j of w by s[j] (w dense F32). */
void awq_scale_columns(Linear& w, const float* s);
/** Divides output row i of w (and its bias) by s[i], for the LAST n rows (llm-awq scale_fc_fc). */
void awq_divide_last_rows(Linear& w, const float* s, int64_t n);
/** Divides a norm weight by s. */
void awq_divide_norm(Tensor& norm, const float* s);

/**
 * Forward pieces on sequences of `seq` tokens (each sequence starts at position 0, causal attention
 * within it), `n` tokens in total (a multiple of seq).
 */
class AwqLayerRunner {
public:
    explicit AwqLayerRunner(const ModelConfig& cfg);
    /** out (n, H) = o_proj(attention(q/k/v of h)); attn_in (n, Hq*D) = the input of o_proj if not null. */
    void attn(const AwqFloatLayer& L, const float* h, int64_t n, int64_t seq, float* out, float* attn_in = nullptr);
    /** out (n, H) = down(silu(gate(h)) * up(h)); act (n, I) = the input of down_proj if not null. */
    void mlp(const AwqFloatLayer& L, const float* h, int64_t n, float* out, float* act = nullptr);
    /** Inputs of the layer's linears captured by layer(). */
    struct Features {
        std::vector<float> qkv;   // (n, H): input_layernorm output
        std::vector<float> o;     // (n, Hq*D): attention output
        std::vector<float> gu;    // (n, H): post_attention_layernorm output
        std::vector<float> down;  // (n, I): silu(gate) * up
    };
    /** x_out (n, H) = the decoder layer applied to x; features filled when not null. */
    void layer(const AwqFloatLayer& L, const float* x, int64_t n, int64_t seq, float* x_out, Features* feat);

private:
    const ModelConfig& cfg_;
    std::vector<float> inv_freq_;
};

}  // namespace lmscope
