// Llama / Llama 3 (transformers modeling_llama.py): attention_bias puts a bias on q/k/v AND o_proj;
// mlp_bias on gate/up/down; no q/k norm; rope_scaling "llama3" rescales inv_freq (see rope.cpp).
#include "model/arch.h"

namespace lmscope {

namespace {
void llama_flags(const nlohmann::json& j, ModelConfig& cfg, const std::string& label) {
    bool bias = json_bool(j, "attention_bias", false, label);
    cfg.qkv_bias = bias;
    cfg.o_bias = bias;
    cfg.mlp_bias = json_bool(j, "mlp_bias", false, label);
    cfg.qk_norm = false;
}
}  // namespace

const ArchTraits kLlamaTraits{Arch::Llama, "LlamaForCausalLM", "llama", 10000.0, 1e-6, llama_flags};

}  // namespace lmscope
