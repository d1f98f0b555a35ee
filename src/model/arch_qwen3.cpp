// Qwen3 (transformers modeling_qwen3.py): no q/k/v bias unless attention_bias; RMSNorm q_norm/k_norm
// with a [head_dim] weight applied per head BEFORE RoPE; head_dim explicit in released configs.
#include "model/arch.h"

namespace lmscope {

namespace {
void qwen3_flags(const nlohmann::json& j, ModelConfig& cfg, const std::string& label) {
    bool bias = json_bool(j, "attention_bias", false, label);
    cfg.qkv_bias = bias;
    cfg.o_bias = bias;
    cfg.mlp_bias = false;
    cfg.qk_norm = true;
}
}  // namespace

const ArchTraits kQwen3Traits{Arch::Qwen3, "Qwen3ForCausalLM", "qwen3", 10000.0, 1e-6, qwen3_flags};

}  // namespace lmscope
