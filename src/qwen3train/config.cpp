#include "qwen3train/config.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "core/error.h"
#include "model/config.h"

namespace lmscope::qwen3train {

Qwen3Config Qwen3Config::from_depth(int64_t depth, int64_t vocab_size, int64_t sequence_len, const Overrides& o) {
    if (depth < 1 || depth > 1024) throw UsageError(fmt::format("--depth must be in [1, 1024], got {}", depth));
    Qwen3Config c;
    c.n_layer = depth;
    c.hidden = o.hidden > 0 ? o.hidden : 64 * depth;
    c.head_dim = o.head_dim > 0 ? o.head_dim : 64;
    if (o.heads > 0) {
        c.n_head = o.heads;
    } else {
        if (c.hidden % c.head_dim != 0)
            throw UsageError(fmt::format("--hidden {} is not a multiple of head_dim {}: give --heads", c.hidden,
                                         c.head_dim));
        c.n_head = std::max<int64_t>(1, c.hidden / c.head_dim);
    }
    c.n_kv_head = o.kv_heads > 0 ? o.kv_heads : (c.n_head % 2 == 0 ? c.n_head / 2 : c.n_head);
    c.intermediate = o.intermediate > 0 ? o.intermediate : 3 * c.hidden;
    c.tie = o.tie == 1;
    c.vocab_size = vocab_size;
    c.sequence_len = sequence_len;
    c.validate("--arch qwen3 sizes");
    return c;
}

void Qwen3Config::validate(const std::string& label) const {
    if (n_layer < 1 || n_layer > 1024) fail("{}: num_hidden_layers must be in [1, 1024], got {}", label, n_layer);
    if (hidden < 1 || n_head < 1 || n_kv_head < 1 || intermediate < 1 || head_dim < 2 || head_dim % 2 != 0)
        fail("{}: sizes must be positive (head_dim even): hidden {}, heads {}, kv heads {}, head_dim {}, "
             "intermediate {}",
             label, hidden, n_head, n_kv_head, head_dim, intermediate);
    if (n_head % n_kv_head != 0) fail("{}: heads {} is not a multiple of kv heads {}", label, n_head, n_kv_head);
    if (vocab_size < 2 || vocab_size > (int64_t(1) << 31) - 1) fail("{}: vocab_size {} out of range", label, vocab_size);
    if (sequence_len < 1 || sequence_len > (1 << 20)) fail("{}: sequence length {} out of range", label, sequence_len);
}

int64_t Qwen3Config::num_params() const {
    const int64_t C = hidden;
    const int64_t per_layer = q_dim() * C + 2 * kv_dim() * C + C * q_dim() + 3 * intermediate * C + 2 * C + 2 * head_dim;
    return vocab_size * C * (tie ? 1 : 2) + n_layer * per_layer + C;
}

std::string Qwen3Config::to_hf_json() const {
    nlohmann::ordered_json j;
    j["architectures"] = {"Qwen3ForCausalLM"};
    j["model_type"] = "qwen3";
    j["vocab_size"] = vocab_size;
    j["hidden_size"] = hidden;
    j["intermediate_size"] = intermediate;
    j["num_hidden_layers"] = n_layer;
    j["num_attention_heads"] = n_head;
    j["num_key_value_heads"] = n_kv_head;
    j["head_dim"] = head_dim;
    j["hidden_act"] = "silu";
    j["max_position_embeddings"] = sequence_len;
    j["initializer_range"] = 0.02;
    j["rms_norm_eps"] = rms_norm_eps;
    j["rope_theta"] = rope_theta;
    j["rope_scaling"] = nullptr;
    j["tie_word_embeddings"] = tie;
    j["attention_bias"] = false;
    j["attention_dropout"] = 0.0;
    j["use_cache"] = true;
    j["use_sliding_window"] = false;
    j["sliding_window"] = nullptr;
    j["max_window_layers"] = n_layer;
    if (bos_token_id >= 0) j["bos_token_id"] = bos_token_id;
    if (eos_token_id >= 0) j["eos_token_id"] = eos_token_id;
    j["torch_dtype"] = "float32";
    j["transformers_version"] = "4.51.0";
    return j.dump(2) + "\n";
}

Qwen3Config Qwen3Config::load(const std::string& path) {
    const ModelConfig m = ModelConfig::load(path);
    const std::string& label = m.source.empty() ? path : m.source;
    if (m.arch != Arch::Qwen3 || !m.qk_norm)
        fail("{}: {} is not a Qwen3 (q/k norm) model; --arch qwen3 trains Qwen3ForCausalLM only", label,
             m.architecture);
    if (m.qkv_bias || m.o_bias || m.mlp_bias) fail("{}: attention_bias / mlp_bias are not supported for training", label);
    if (m.rope.type != "default") fail("{}: rope scaling \"{}\" is not supported for training", label, m.rope.type);
    Qwen3Config c;
    c.n_layer = m.num_layers;
    c.hidden = m.hidden_size;
    c.n_head = m.num_heads;
    c.n_kv_head = m.num_kv_heads;
    c.head_dim = m.head_dim;
    c.intermediate = m.intermediate_size;
    c.vocab_size = m.vocab_size;
    c.sequence_len = m.max_position_embeddings > 0 ? m.max_position_embeddings : 1024;
    c.rope_theta = m.rope.theta;
    c.rms_norm_eps = m.rms_norm_eps;
    c.tie = m.tie_word_embeddings;
    c.bos_token_id = m.bos_token_id.value_or(-1);
    c.eos_token_id = m.eos_token_ids.empty() ? -1 : m.eos_token_ids.front();
    c.validate(label);
    return c;
}

}  // namespace lmscope::qwen3train
