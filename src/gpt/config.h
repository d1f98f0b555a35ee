// GPT configuration (nanochat v0): sizes derive from depth as base_train.py does it
//   n_embd = 64 * depth, head_dim = 128, n_head = max(1, ceil(n_embd / 128)), n_kv_head = n_head.
// Stored next to the weights as gpt_config.json:
//   {"architecture": "nanochat-gpt-v0", "depth": 4, "n_layer": 4, "n_embd": 256, "n_head": 2,
//    "n_kv_head": 2, "head_dim": 128, "vocab_size": 65536, "sequence_len": 1024}
#pragma once

#include <cstdint>
#include <string>

namespace lmscope::gpt {

struct GptConfig {
    int64_t n_layer = 4;
    int64_t n_embd = 256;
    int64_t n_head = 2;
    int64_t n_kv_head = 2;
    int64_t head_dim = 128;
    int64_t vocab_size = 65536;
    int64_t sequence_len = 1024;
    double rope_theta = 10000.0;
    double softcap = 15.0;

    /** nanochat's sizing from depth (aspect ratio 64, head_dim 128). */
    static GptConfig from_depth(int64_t depth, int64_t vocab_size, int64_t sequence_len);
    /** Parses gpt_config.json text; Error naming `label` and the field on anything wrong. */
    static GptConfig from_json_text(const std::string& text, const std::string& label);
    /** `path`: a checkpoint folder (reads its gpt_config.json) or the file itself. */
    static GptConfig load(const std::string& path);
    std::string to_json() const;
    /** Throws Error naming `label` when sizes are inconsistent (heads x head_dim, GQA ratio, ...). */
    void validate(const std::string& label) const;

    int64_t q_dim() const { return n_head * head_dim; }
    int64_t kv_dim() const { return n_kv_head * head_dim; }
    int64_t ffn_dim() const { return 4 * n_embd; }
    /** Parameter count (all matrices, embedding and head included). */
    int64_t num_params() const;
};

}  // namespace lmscope::gpt
