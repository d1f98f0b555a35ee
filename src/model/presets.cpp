#include "model/presets.h"

#include <map>

#include "core/error.h"

namespace lmscope {

namespace {

using nlohmann::json;

json qwen3(int64_t hidden, int64_t inter, int64_t layers, int64_t heads, int64_t kv, bool tie) {
    return {{"architectures", {"Qwen3ForCausalLM"}}, {"model_type", "qwen3"}, {"vocab_size", 151936},
            {"hidden_size", hidden}, {"intermediate_size", inter}, {"num_hidden_layers", layers},
            {"num_attention_heads", heads}, {"num_key_value_heads", kv}, {"head_dim", 128}, {"hidden_act", "silu"},
            {"max_position_embeddings", 40960}, {"rms_norm_eps", 1e-6}, {"rope_theta", 1000000.0},
            {"rope_scaling", nullptr}, {"tie_word_embeddings", tie}, {"attention_bias", false},
            {"use_sliding_window", false}, {"sliding_window", nullptr}, {"max_window_layers", layers},
            {"bos_token_id", 151643}, {"eos_token_id", 151645}, {"torch_dtype", "bfloat16"}};
}

json llama3_8b() {
    return {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"vocab_size", 128256},
            {"hidden_size", 4096}, {"intermediate_size", 14336}, {"num_hidden_layers", 32},
            {"num_attention_heads", 32}, {"num_key_value_heads", 8}, {"head_dim", 128}, {"hidden_act", "silu"},
            {"max_position_embeddings", 131072}, {"rms_norm_eps", 1e-5}, {"rope_theta", 500000.0},
            {"rope_scaling", {{"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                              {"original_max_position_embeddings", 8192}, {"rope_type", "llama3"}}},
            {"tie_word_embeddings", false}, {"attention_bias", false}, {"mlp_bias", false},
            {"bos_token_id", 128000}, {"eos_token_id", {128001, 128008, 128009}}, {"torch_dtype", "bfloat16"}};
}

const std::map<std::string, json>& presets() {
    static const std::map<std::string, json> p = [] {
        std::map<std::string, json> m;
        m["qwen3-0.6b"] = qwen3(1024, 3072, 28, 16, 8, true);
        m["qwen3-1.7b"] = qwen3(2048, 6144, 28, 16, 8, true);
        m["qwen3-4b"] = qwen3(2560, 9728, 36, 32, 8, true);
        m["qwen3-8b"] = qwen3(4096, 12288, 36, 32, 8, false);
        m["llama3-8b"] = llama3_8b();
        // tiny shapes with the real vocabularies, so the real tokenizers work with them
        json tq = qwen3(64, 128, 2, 4, 2, true);
        tq["head_dim"] = 32;
        m["tiny-qwen3"] = tq;
        json tq2 = tq;
        tq2["architectures"] = {"Qwen2ForCausalLM"};
        tq2["model_type"] = "qwen2";
        tq2.erase("head_dim");
        tq2["tie_word_embeddings"] = false;
        m["tiny-qwen2"] = tq2;
        json tl = llama3_8b();
        tl["hidden_size"] = 64;
        tl["intermediate_size"] = 160;
        tl["num_hidden_layers"] = 2;
        tl["num_attention_heads"] = 4;
        tl["num_key_value_heads"] = 2;
        tl["head_dim"] = 16;
        m["tiny-llama3"] = tl;
        return m;
    }();
    return p;
}

}  // namespace

std::vector<std::string> preset_names() {
    std::vector<std::string> names;
    for (const auto& [k, v] : presets()) names.push_back(k);
    return names;
}

nlohmann::json preset_config(const std::string& name) {
    auto it = presets().find(name);
    if (it == presets().end()) {
        std::string all;
        for (const auto& n : preset_names()) all += (all.empty() ? "" : ", ") + n;
        throw UsageError("unknown preset '" + name + "' (known: " + all + ")");
    }
    return it->second;
}

}  // namespace lmscope
