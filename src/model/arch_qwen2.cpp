// Qwen2 / Qwen2.5 (transformers modeling_qwen2.py): q/k/v projections always carry a bias, o_proj
// never; no q/k norm; head_dim is usually hidden/heads (no head_dim key).
#include "model/arch.h"

namespace lmscope {

namespace {
void qwen2_flags(const nlohmann::json&, ModelConfig& cfg, const std::string&) {
    cfg.qkv_bias = true;
    cfg.o_bias = false;
    cfg.mlp_bias = false;
    cfg.qk_norm = false;
}
}  // namespace

const ArchTraits kQwen2Traits{Arch::Qwen2, "Qwen2ForCausalLM", "qwen2", 10000.0, 1e-6, qwen2_flags};

}  // namespace lmscope
