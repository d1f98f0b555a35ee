// nanochat v0 GPT (karpathy/nanochat @ 3a5e0bc nanochat/gpt.py), f32 on the CPU, with a hand-written
// backward pass (llm.c style). Forward:
//   x = norm(wte[idx])                                             (B, T, C)
//   per block i: x = x + c_proj(attn(rope_then_qknorm(c_q/c_k/c_v(norm(x)))))
//                x = x + mlp.c_proj(relu(mlp.c_fc(norm(x)))^2)
//   logits = 15 tanh(lm_head(norm(x)) / 15); loss = mean CE over targets != -1
// norm = weightless RMSNorm, eps = FLT_EPSILON (F.rms_norm's default). RoPE uses nanochat's -theta
// convention with bf16-rounded cos/sin tables. Parameters live in one flat f32 buffer (nanochat's
// names and order); gradients in a second one of the same layout.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "gpt/config.h"
#include "io/safetensors.h"
#include "trace/observer.h"

namespace lmscope::gpt {

struct ParamInfo {
    std::string name;  // nanochat name, e.g. "transformer.h.0.attn.c_q.weight"
    Shape shape;       // (out, in) for matrices, (V, C) for wte
    int64_t offset = 0;
    int64_t numel = 0;
    bool matrix = false;     // a transformer.h.* matrix: trained by Muon (else AdamW)
    bool zero_init = false;  // lm_head and both c_proj start at zero
};

class GptModel {
public:
    explicit GptModel(const GptConfig& cfg);

    const GptConfig& config() const { return cfg_; }
    const std::vector<ParamInfo>& params() const { return params_; }
    const ParamInfo& info(const std::string& name) const;
    float* param(const std::string& name) { return data_.data() + info(name).offset; }
    const float* param(const std::string& name) const { return data_.data() + info(name).offset; }
    float* grad(const std::string& name) { return grads_.data() + info(name).offset; }
    const float* grad(const std::string& name) const { return grads_.data() + info(name).offset; }
    std::vector<float>& data() { return data_; }
    std::vector<float>& grads() { return grads_; }
    int64_t num_params() const { return static_cast<int64_t>(data_.size()); }

    /**
     * nanochat v0 init from `seed` (Rng, rng.h), in parameter order: wte ~ N(0, 1); each Linear
     * N(0, std), std = 1/sqrt(fan_in) * min(1, sqrt(fan_out/fan_in)); zeros for lm_head and c_proj.
     */
    void init_nanochat(uint64_t seed);
    /** Reads every parameter from a safetensors file (or folder with model.safetensors); Error naming
     *  the file and tensor when one is missing or has another shape. */
    void load(const std::string& path);
    /** Writes model.safetensors-style F32 tensors with nanochat names. */
    void save(const std::string& path, const std::map<std::string, std::string>& metadata = {}) const;

    /**
     * Runs (B, T) ids (T <= sequence_len); with targets (B*T, -1 = ignore) computes the mean loss and
     * keeps what backward needs. Returns the mean loss (0 without targets or when all are -1).
     */
    float forward(const int32_t* ids, const int32_t* targets, int64_t B, int64_t T, TensorObserver* obs = nullptr);
    void zero_grad();
    /** Gradients of the last forward's mean loss, added into grads(). Consumes the logits. */
    void backward(TensorObserver* obs = nullptr);

    /** Soft-capped logits (B*T, V) of the last forward (until backward). */
    const float* logits() const { return logits_.data(); }
    /** Per-position loss in nats (0 where the target is -1). */
    const std::vector<float>& losses() const { return losses_; }
    double loss_sum() const;
    int64_t loss_count() const { return count_; }

private:
    struct LayerActs {
        std::vector<float> ln1, ln1_rstd, qn, q_rstd, kn, k_rstd, v, att, atty, ln2, ln2_rstd, fc, h2;
    };
    void ensure_acts(int64_t B, int64_t T);
    bool load_awq_int4(const SafetensorsFile& f, const std::string& file, const ParamInfo& p);

    GptConfig cfg_;
    std::vector<ParamInfo> params_;
    std::map<std::string, size_t> index_;
    std::vector<float> data_, grads_;
    std::vector<float> rope_cos_, rope_sin_;

    int64_t B_ = 0, T_ = 0;
    bool have_targets_ = false;
    int64_t count_ = 0;
    std::vector<int32_t> ids_, targets_;
    std::vector<float> x0_, x0_rstd_, resid_, lnf_, lnf_rstd_, logits_, losses_;
    std::vector<LayerActs> layers_;
    std::vector<float> q_raw_, k_raw_, tmp_, scores_;                          // forward scratch
    std::vector<float> dres_, dln_, datty_, dq_, dk_, dv_, dh_, datt_, dtmp_;  // backward scratch
};

/** Parameter names of a config in nanochat's order. */
std::vector<ParamInfo> gpt_param_layout(const GptConfig& cfg);

}  // namespace lmscope::gpt
