// A Qwen3ForCausalLM to train on the CPU, f32, with a hand-written backward (llm.c style). Forward,
// exactly transformers' (architectures.md section 1.2; DecoderModel computes the same):
//   x = embed_tokens[ids]
//   per layer: n = input_layernorm(x); q = rope(q_norm(q_proj n)), k = rope(k_norm(k_proj n)), v = v_proj n
//              x += o_proj(causal_gqa_attention(q, k, v))        (head h reads kv head h / (heads/kv))
//              m = post_attention_layernorm(x); x += down_proj(silu(gate_proj m) * up_proj m)
//   logits = norm(x) lm_head^T (lm_head = embed_tokens when tied); loss = mean CE over targets != -1
// RMSNorm: weight * (x / sqrt(mean x^2 + eps)), eps 1e-6, q/k norm over head_dim; RoPE: rotate-half,
// +theta, f32 cos/sin (model/rope_table.h). Parameters live in one flat buffer under their HF names,
// gradients in a second of the same layout; save() writes model.safetensors + config.json.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "gpt/gpt.h"  // ParamInfo
#include "qwen3train/config.h"

namespace lmscope::qwen3train {

using gpt::ParamInfo;

/** HF names in checkpoint order; `matrix`: the block projections (Muon); zero_init: o_proj, down_proj,
 *  lm_head (untied). */
std::vector<ParamInfo> qwen3_param_layout(const Qwen3Config& cfg);

class Qwen3TrainModel {
public:
    explicit Qwen3TrainModel(const Qwen3Config& cfg);

    const Qwen3Config& config() const { return cfg_; }
    const std::vector<ParamInfo>& params() const { return params_; }
    const ParamInfo& info(const std::string& name) const;
    float* param(const std::string& name) { return data_.data() + info(name).offset; }
    const float* param(const std::string& name) const { return data_.data() + info(name).offset; }
    float* grad(const std::string& name) { return grads_.data() + info(name).offset; }
    const float* grad(const std::string& name) const { return grads_.data() + info(name).offset; }
    std::vector<float>& data() { return data_; }
    std::vector<float>& grads() { return grads_; }
    int64_t num_params() const { return static_cast<int64_t>(data_.size()); }
    /** The output matrix: lm_head.weight, or model.embed_tokens.weight when tied. */
    const std::string& head_name() const { return head_name_; }

    /**
     * Init from `seed` (gpt::Rng), in parameter order: norm weights 1; q/k/v/gate/up N(0, std) with
     * nanochat's std = 1/sqrt(fan_in) min(1, sqrt(fan_out/fan_in)); o_proj and down_proj 0;
     * untied: embed_tokens N(0, 1) and lm_head 0 (nanochat); tied: embed_tokens N(0, 0.02) (HF's
     * initializer_range: with a unit-std tied matrix the logit of the input token itself would be
     * ~ std x hidden, and the first loss far above ln V).
     */
    void init(uint64_t seed);
    /** Reads the weights of a folder (model.safetensors) or file; Error naming file and tensor. */
    void load(const std::string& path);
    /** model.safetensors (F32, HF names). */
    void save_weights(const std::string& file) const;
    /** model.safetensors + config.json into a folder. */
    void save(const std::string& dir) const;

    /** (B, T) ids; with targets (B*T, -1 ignored) the mean loss, keeping what backward needs. */
    float forward(const int32_t* ids, const int32_t* targets, int64_t B, int64_t T);
    void zero_grad();
    /** Adds the gradients of the last forward's mean loss into grads(); consumes the logits. */
    void backward();

    /** Logits (B*T, V) of the last forward (until backward). */
    const float* logits() const { return logits_.data(); }
    const std::vector<float>& losses() const { return losses_; }
    int64_t loss_count() const { return count_; }

private:
    struct LayerActs {
        std::vector<float> ln1, ln1_hat, ln1_rstd, q_hat, q_rstd, k_hat, k_rstd, q, k, v, att, atty;
        std::vector<float> ln2, ln2_hat, ln2_rstd, gate, up, h;
    };
    void ensure_acts(int64_t B, int64_t T);

    Qwen3Config cfg_;
    std::vector<ParamInfo> params_;
    std::map<std::string, size_t> index_;
    std::string head_name_;
    std::vector<float> data_, grads_;
    std::vector<float> inv_freq_, rope_cos_, rope_sin_;

    int64_t B_ = 0, T_ = 0;
    bool have_targets_ = false;
    int64_t count_ = 0;
    std::vector<int32_t> ids_, targets_;
    std::vector<float> resid_, lnf_, lnf_hat_, lnf_rstd_, logits_, losses_, tmp_;
    std::vector<LayerActs> layers_;
    std::vector<float> dres_, dln_, datty_, dq_, dk_, dv_, dgate_, dup_, dh_, datt_;
};

}  // namespace lmscope::qwen3train
