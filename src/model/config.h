// Model configuration read from a Hugging Face config.json (Qwen3ForCausalLM, Qwen2ForCausalLM,
// LlamaForCausalLM). Both spellings of RoPE settings are read: the hub's `rope_theta` +
// `rope_scaling` and transformers 5's `rope_parameters`. head_dim comes from the config when present
// (Qwen3: 128 even where hidden/heads is 64); only when absent is it hidden_size / num_attention_heads.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace lmscope {

enum class Arch { Qwen3, Qwen2, Llama };

struct RopeConfig {
    double theta = 10000.0;
    std::string type = "default";  // "default" | "linear" | "llama3"
    double factor = 1.0;
    double low_freq_factor = 1.0;
    double high_freq_factor = 4.0;
    int64_t original_max_position_embeddings = 0;
};

struct ModelConfig {
    Arch arch = Arch::Qwen3;
    std::string architecture;  // e.g. "Qwen3ForCausalLM"
    int64_t vocab_size = 0;
    int64_t hidden_size = 0;
    int64_t intermediate_size = 0;
    int64_t num_layers = 0;
    int64_t num_heads = 0;
    int64_t num_kv_heads = 0;
    int64_t head_dim = 0;
    bool head_dim_from_config = false;
    double rms_norm_eps = 1e-6;
    RopeConfig rope;
    bool tie_word_embeddings = false;
    bool qkv_bias = false;  // q/k/v projections carry a bias (Qwen2 always; Llama/Qwen3 with attention_bias)
    bool o_bias = false;    // o_proj bias (attention_bias on Llama / Qwen3)
    bool mlp_bias = false;  // Llama mlp_bias
    bool qk_norm = false;   // Qwen3 q_norm / k_norm over head_dim, before RoPE
    int64_t max_position_embeddings = 0;
    std::vector<int64_t> eos_token_ids;
    std::optional<int64_t> bos_token_id;
    std::string torch_dtype;
    nlohmann::json raw;  // the whole file, for fields later stages read (quantization_config, ...)
    std::string source;  // the file it came from, for messages

    /** Parses config.json text; every error names `label` and the field. */
    static ModelConfig from_json_text(const std::string& text, const std::string& label);
    static ModelConfig from_json(const nlohmann::json& j, const std::string& label);
    /** `path` is a model folder or a config.json. */
    static ModelConfig load(const std::string& path);

    int64_t q_dim() const { return num_heads * head_dim; }
    int64_t kv_dim() const { return num_kv_heads * head_dim; }
    /** One-paragraph human summary (inspect). */
    std::string summary() const;
};

/** A tensor the config says the checkpoint must hold. */
struct ExpectedTensor {
    std::string name;
    Shape shape;
    std::string why;       // which config fields give the shape, for messages
    bool optional = false; // e.g. lm_head.weight of a tied model
};

/** Every tensor (name and shape) the config implies, in checkpoint naming. */
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& cfg);

const char* arch_name(Arch a);

}  // namespace lmscope
