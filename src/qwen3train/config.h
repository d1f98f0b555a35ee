// Sizes of the trainable Qwen3 (`lmscope train --arch qwen3`). The checkpoint is a Hugging Face one:
// to_hf_json() writes the config.json of a Qwen3ForCausalLM that transformers and DecoderModel load;
// from_hf() reads it back (through ModelConfig, so both sides agree on every field).
// Sizing from --depth d: n_layer = d, hidden = 64 d, head_dim 64, heads = hidden / 64 = d,
// kv heads = heads / 2 when heads is even (GQA 2:1 as Qwen3-0.6B's 16/8), else heads,
// intermediate = 3 hidden (Qwen3-0.6B: 3072 = 3 x 1024), rope_theta 1e6, rms_norm_eps 1e-6, untied
// lm_head (as Qwen3-8B; --tie for Qwen3-0.6B's tying: at depth 4 on Brown, 60 steps, untied reached
// val loss 6.37 vs 6.60 tied). head_dim 64, not Qwen3's 128: at these widths (64 d) a head of 128
// leaves depth/2 heads (1 head at depth 2), and 64 keeps q_proj square (heads x head_dim = hidden).
#pragma once

#include <cstdint>
#include <string>

namespace lmscope::qwen3train {

struct Qwen3Config {
    int64_t n_layer = 4;
    int64_t hidden = 256;
    int64_t n_head = 4;
    int64_t n_kv_head = 2;
    int64_t head_dim = 64;
    int64_t intermediate = 768;
    int64_t vocab_size = 8192;
    int64_t sequence_len = 1024;  // written as max_position_embeddings
    double rope_theta = 1000000.0;
    double rms_norm_eps = 1e-6;
    bool tie = false;
    int64_t bos_token_id = -1;  // -1: not written
    int64_t eos_token_id = -1;

    /** Overrides: <= 0 (tie: < 0) keeps the default derived from depth. */
    struct Overrides {
        int64_t hidden = 0, heads = 0, kv_heads = 0, head_dim = 0, intermediate = 0;
        int tie = -1;  // -1 default (untied), 0 untied, 1 tied
    };
    /** The sizing above; Error naming the flag when the result is inconsistent. */
    static Qwen3Config from_depth(int64_t depth, int64_t vocab_size, int64_t sequence_len, const Overrides& o);
    /** Reads a folder's config.json (or the file); Error unless it is a Qwen3 this trainer can train
     *  (q/k norm, no biases, default RoPE). */
    static Qwen3Config load(const std::string& path);
    /** config.json of a Qwen3ForCausalLM (float32). */
    std::string to_hf_json() const;
    void validate(const std::string& label) const;

    int64_t q_dim() const { return n_head * head_dim; }
    int64_t kv_dim() const { return n_kv_head * head_dim; }
    int64_t num_params() const;
};

}  // namespace lmscope::qwen3train
