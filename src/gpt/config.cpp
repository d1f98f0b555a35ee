#include "gpt/config.h"

#include <nlohmann/json.hpp>

#include <filesystem>

#include "core/error.h"
#include "io/atomic_file.h"

namespace lmscope::gpt {

GptConfig GptConfig::from_depth(int64_t depth, int64_t vocab_size, int64_t sequence_len) {
    GptConfig c;
    c.n_layer = depth;
    c.n_embd = depth * 64;
    c.head_dim = 128;
    c.n_head = std::max<int64_t>(1, (c.n_embd + 127) / 128);
    c.n_kv_head = c.n_head;
    c.vocab_size = vocab_size;
    c.sequence_len = sequence_len;
    c.validate("--depth");
    return c;
}

namespace {

int64_t get_int(const nlohmann::json& j, const char* key, const std::string& label) {
    auto it = j.find(key);
    if (it == j.end()) fail("{}: missing field \"{}\"", label, key);
    if (!it->is_number_integer()) fail("{}: field \"{}\" must be an integer, got {}", label, key, it->dump());
    return it->get<int64_t>();
}

}  // namespace

GptConfig GptConfig::from_json_text(const std::string& text, const std::string& label) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        fail("{}: not valid JSON ({})", label, e.what());
    }
    if (!j.is_object()) fail("{}: expected a JSON object", label);
    GptConfig c;
    if (j.contains("architecture") && j["architecture"] != "nanochat-gpt-v0")
        fail("{}: architecture {} is not nanochat-gpt-v0", label, j["architecture"].dump());
    c.n_layer = j.contains("n_layer") ? get_int(j, "n_layer", label) : get_int(j, "depth", label);
    if (j.contains("depth") && get_int(j, "depth", label) != c.n_layer)
        fail("{}: depth {} and n_layer {} disagree", label, get_int(j, "depth", label), c.n_layer);
    c.n_embd = get_int(j, "n_embd", label);
    c.n_head = get_int(j, "n_head", label);
    c.n_kv_head = j.contains("n_kv_head") ? get_int(j, "n_kv_head", label) : c.n_head;
    c.head_dim = j.contains("head_dim") ? get_int(j, "head_dim", label) : 128;
    c.vocab_size = get_int(j, "vocab_size", label);
    c.sequence_len = get_int(j, "sequence_len", label);
    if (j.contains("rope_theta")) c.rope_theta = j["rope_theta"].get<double>();
    if (j.contains("softcap")) c.softcap = j["softcap"].get<double>();
    c.validate(label);
    return c;
}

GptConfig GptConfig::load(const std::string& path) {
    std::string file = path;
    if (std::filesystem::is_directory(path)) file = (std::filesystem::path(path) / "gpt_config.json").string();
    if (!std::filesystem::exists(file)) fail("{}: no gpt_config.json (not a GPT checkpoint)", path);
    return from_json_text(read_file(file), file);
}

std::string GptConfig::to_json() const {
    nlohmann::ordered_json j;
    j["architecture"] = "nanochat-gpt-v0";
    j["depth"] = n_layer;
    j["n_layer"] = n_layer;
    j["n_embd"] = n_embd;
    j["n_head"] = n_head;
    j["n_kv_head"] = n_kv_head;
    j["head_dim"] = head_dim;
    j["vocab_size"] = vocab_size;
    j["sequence_len"] = sequence_len;
    j["rope_theta"] = rope_theta;
    j["softcap"] = softcap;
    return j.dump(2) + "\n";
}

void GptConfig::validate(const std::string& label) const {
    if (n_layer < 1 || n_layer > 1024) fail("{}: n_layer must be in [1, 1024], got {}", label, n_layer);
    if (n_embd < 1 || n_head < 1 || n_kv_head < 1 || head_dim < 2 || head_dim % 2 != 0)
        fail("{}: sizes must be positive (head_dim even): n_embd {}, n_head {}, n_kv_head {}, head_dim {}", label,
             n_embd, n_head, n_kv_head, head_dim);
    if (n_head % n_kv_head != 0)
        fail("{}: n_head {} is not a multiple of n_kv_head {}", label, n_head, n_kv_head);
    if (vocab_size < 2 || vocab_size > (int64_t(1) << 31) - 1) fail("{}: vocab_size {} out of range", label, vocab_size);
    if (sequence_len < 1 || sequence_len > (1 << 20)) fail("{}: sequence_len {} out of range", label, sequence_len);
}

int64_t GptConfig::num_params() const {
    const int64_t C = n_embd;
    const int64_t per_layer = q_dim() * C + 2 * kv_dim() * C + C * q_dim() + 2 * ffn_dim() * C;
    return 2 * vocab_size * C + n_layer * per_layer;
}

}  // namespace lmscope::gpt
