// config.json parsing and validation. Every error is one line: "<file>: field '<name>': expected
// <what>, found <value>".
#include "model/config.h"

#include <fmt/format.h>

#include <filesystem>

#include "core/error.h"
#include "io/atomic_file.h"
#include "model/arch.h"

namespace lmscope {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string found(const json& v) {
    std::string s = v.dump();
    if (s.size() > 60) s = s.substr(0, 57) + "...";
    return s;
}

// Upper bound for any size field: far above real models (Qwen3-235B: hidden 4096, vocab 151936,
// 94 layers) and low enough that a crafted config cannot make lmscope allocate without bound.
constexpr int64_t kMaxDim = int64_t(1) << 24;

int64_t req_int(const json& j, const char* key, const std::string& label, int64_t min_value = 1,
                int64_t max_value = kMaxDim) {
    if (!j.contains(key)) fail("{}: missing field '{}'", label, key);
    const json& v = j[key];
    if (!v.is_number_integer() || v.get<int64_t>() < min_value)
        fail("{}: field '{}': expected an integer >= {}, found {}", label, key, min_value, found(v));
    if (v.get<int64_t>() > max_value)
        fail("{}: field '{}': expected at most {}, found {}", label, key, max_value, found(v));
    return v.get<int64_t>();
}

int64_t opt_int(const json& j, const char* key, int64_t fallback, const std::string& label,
                int64_t min_value = 1, int64_t max_value = kMaxDim) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    return req_int(j, key, label, min_value, max_value);
}

double opt_num(const json& j, const char* key, double fallback, const std::string& label) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    const json& v = j[key];
    if (!v.is_number() || !(v.get<double>() > 0))
        fail("{}: field '{}': expected a positive number, found {}", label, key, found(v));
    return v.get<double>();
}

// rope_scaling (hub) or rope_parameters (transformers 5): both objects with the same keys.
void parse_rope(const json& j, ModelConfig& cfg, const std::string& label, double default_theta) {
    cfg.rope.theta = opt_num(j, "rope_theta", default_theta, label);
    const char* key = nullptr;
    if (j.contains("rope_parameters") && !j["rope_parameters"].is_null()) key = "rope_parameters";
    else if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) key = "rope_scaling";
    if (!key) return;
    const json& r = j[key];
    if (!r.is_object()) fail("{}: field '{}': expected an object or null, found {}", label, key, found(r));
    std::string where = fmt::format("{}.", key);
    if (r.contains("rope_theta")) cfg.rope.theta = opt_num(r, "rope_theta", cfg.rope.theta, label + " " + key);
    std::string type = "default";
    for (const char* tkey : {"rope_type", "type"}) {
        if (r.contains(tkey)) {
            if (!r[tkey].is_string())
                fail("{}: field '{}{}': expected a string, found {}", label, where, tkey, found(r[tkey]));
            type = r[tkey].get<std::string>();
            break;
        }
    }
    cfg.rope.type = type;
    if (type == "default") return;
    auto num = [&](const char* k, bool required, double fallback) {
        if (!r.contains(k)) {
            if (required) fail("{}: missing field '{}{}' (rope type '{}')", label, where, k, type);
            return fallback;
        }
        if (!r[k].is_number() || !(r[k].get<double>() > 0))
            fail("{}: field '{}{}': expected a positive number, found {}", label, where, k, found(r[k]));
        return r[k].get<double>();
    };
    if (type == "linear") {
        cfg.rope.factor = num("factor", true, 1.0);
    } else if (type == "llama3") {
        cfg.rope.factor = num("factor", true, 1.0);
        cfg.rope.low_freq_factor = num("low_freq_factor", true, 1.0);
        cfg.rope.high_freq_factor = num("high_freq_factor", true, 4.0);
        cfg.rope.original_max_position_embeddings =
            static_cast<int64_t>(num("original_max_position_embeddings", true, 8192));
        if (cfg.rope.high_freq_factor <= cfg.rope.low_freq_factor)
            fail("{}: field '{}high_freq_factor': expected > low_freq_factor ({}), found {}", label, where,
                 cfg.rope.low_freq_factor, cfg.rope.high_freq_factor);
    } else {
        fail("{}: field '{}rope_type': '{}' is not supported (supported: default, linear, llama3)", label,
             where, type);
    }
}

std::vector<int64_t> parse_token_ids(const json& v) {
    std::vector<int64_t> out;
    if (v.is_number_integer()) out.push_back(v.get<int64_t>());
    if (v.is_array())
        for (const auto& e : v)
            if (e.is_number_integer()) out.push_back(e.get<int64_t>());
    return out;
}

}  // namespace

bool json_bool(const json& j, const char* key, bool fallback, const std::string& label) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    if (!j[key].is_boolean()) fail("{}: field '{}': expected true or false, found {}", label, key, found(j[key]));
    return j[key].get<bool>();
}

const ArchTraits* find_arch(std::string_view name) {
    for (const ArchTraits* t : {&kQwen3Traits, &kQwen2Traits, &kLlamaTraits})
        if (name == t->hf_architecture) return t;
    return nullptr;
}

const char* arch_name(Arch a) {
    switch (a) {
        case Arch::Qwen3: return "qwen3";
        case Arch::Qwen2: return "qwen2";
        case Arch::Llama: return "llama";
    }
    return "?";
}

ModelConfig ModelConfig::from_json_text(const std::string& text, const std::string& label) {
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) fail("{}: not valid JSON", label);
    return from_json(j, label);
}

ModelConfig ModelConfig::from_json(const json& j, const std::string& label) {
    if (!j.is_object()) fail("{}: expected a JSON object, found {}", label, found(j));
    ModelConfig cfg;
    cfg.source = label;
    cfg.raw = j;

    if (!j.contains("architectures")) fail("{}: missing field 'architectures'", label);
    const json& archs = j["architectures"];
    if (!archs.is_array() || archs.empty() || !archs[0].is_string())
        fail("{}: field 'architectures': expected a list of names, found {}", label, found(archs));
    cfg.architecture = archs[0].get<std::string>();
    const ArchTraits* traits = find_arch(cfg.architecture);
    if (!traits)
        fail("{}: field 'architectures': '{}' is not supported (supported: Qwen3ForCausalLM, "
             "Qwen2ForCausalLM, LlamaForCausalLM)",
             label, cfg.architecture);
    cfg.arch = traits->arch;

    cfg.vocab_size = req_int(j, "vocab_size", label);
    cfg.hidden_size = req_int(j, "hidden_size", label);
    cfg.intermediate_size = req_int(j, "intermediate_size", label);
    cfg.num_layers = req_int(j, "num_hidden_layers", label, 1, 4096);
    cfg.num_heads = req_int(j, "num_attention_heads", label, 1, 4096);
    cfg.num_kv_heads = opt_int(j, "num_key_value_heads", cfg.num_heads, label, 1, 4096);
    if (cfg.num_heads % cfg.num_kv_heads != 0)
        fail("{}: field 'num_key_value_heads': expected a divisor of num_attention_heads ({}), found {}", label,
             cfg.num_heads, cfg.num_kv_heads);
    if (j.contains("head_dim") && !j["head_dim"].is_null()) {
        cfg.head_dim = req_int(j, "head_dim", label, 1, 4096);
        cfg.head_dim_from_config = true;
    } else {
        if (cfg.hidden_size % cfg.num_heads != 0)
            fail("{}: missing field 'head_dim' and hidden_size {} is not a multiple of num_attention_heads {}",
                 label, cfg.hidden_size, cfg.num_heads);
        cfg.head_dim = cfg.hidden_size / cfg.num_heads;
    }
    if (cfg.head_dim % 2 != 0) fail("{}: field 'head_dim': expected an even number for RoPE, found {}", label, cfg.head_dim);
    if (j.contains("hidden_act") && !(j["hidden_act"].is_string() && j["hidden_act"] == "silu"))
        fail("{}: field 'hidden_act': expected \"silu\", found {}", label, found(j["hidden_act"]));

    cfg.rms_norm_eps = opt_num(j, "rms_norm_eps", traits->default_rms_norm_eps, label);
    parse_rope(j, cfg, label, traits->default_rope_theta);
    cfg.tie_word_embeddings = json_bool(j, "tie_word_embeddings", false, label);
    traits->apply_flags(j, cfg, label);
    cfg.max_position_embeddings = opt_int(j, "max_position_embeddings", 0, label, 0, int64_t(1) << 40);
    if (j.contains("eos_token_id")) cfg.eos_token_ids = parse_token_ids(j["eos_token_id"]);
    if (j.contains("bos_token_id") && j["bos_token_id"].is_number_integer())
        cfg.bos_token_id = j["bos_token_id"].get<int64_t>();
    for (const char* k : {"torch_dtype", "dtype"})
        if (j.contains(k) && j[k].is_string()) cfg.torch_dtype = j[k].get<std::string>();
    return cfg;
}

ModelConfig ModelConfig::load(const std::string& path) {
    if (!fs::exists(path)) fail("{}: no such file or folder", path);
    std::string file = path;
    if (fs::is_directory(path)) file = (fs::path(path) / "config.json").string();
    if (!fs::exists(file)) fail("{}: missing (a model folder needs config.json)", file);
    return from_json_text(read_file(file), file);
}

std::string ModelConfig::summary() const {
    std::string s = fmt::format(
        "{} ({}): {} layers, hidden {}, intermediate {}, heads {} / kv {} x head_dim {}{} "
        "(q_proj out {}), vocab {}, rms_norm_eps {:g}, rope theta {:g}",
        architecture, arch_name(arch), num_layers, hidden_size, intermediate_size, num_heads, num_kv_heads,
        head_dim, head_dim_from_config ? "" : " (hidden/heads)", q_dim(), vocab_size, rms_norm_eps, rope.theta);
    if (rope.type == "llama3")
        s += fmt::format(" llama3-scaled (factor {:g}, low {:g}, high {:g}, original {})", rope.factor,
                         rope.low_freq_factor, rope.high_freq_factor, rope.original_max_position_embeddings);
    else if (rope.type == "linear")
        s += fmt::format(" linear-scaled (factor {:g})", rope.factor);
    s += tie_word_embeddings ? ", tied lm_head" : ", untied lm_head";
    if (qkv_bias) s += ", q/k/v bias";
    if (o_bias) s += ", o_proj bias";
    if (qk_norm) s += ", q/k norm";
    return s;
}

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& c) {
    std::vector<ExpectedTensor> out;
    const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
    const std::string hq = fmt::format("num_attention_heads {} x head_dim {}", c.num_heads, c.head_dim);
    const std::string hkv = fmt::format("num_key_value_heads {} x head_dim {}", c.num_kv_heads, c.head_dim);
    const std::string hs = fmt::format("hidden_size {}", H);
    const std::string is = fmt::format("intermediate_size {}", I);
    out.push_back({"model.embed_tokens.weight", {V, H}, fmt::format("vocab_size {}, {}", V, hs)});
    for (int64_t l = 0; l < c.num_layers; ++l) {
        const std::string p = fmt::format("model.layers.{}.", l);
        out.push_back({p + "input_layernorm.weight", {H}, hs});
        out.push_back({p + "self_attn.q_proj.weight", {c.q_dim(), H}, hq + ", " + hs});
        out.push_back({p + "self_attn.k_proj.weight", {c.kv_dim(), H}, hkv + ", " + hs});
        out.push_back({p + "self_attn.v_proj.weight", {c.kv_dim(), H}, hkv + ", " + hs});
        out.push_back({p + "self_attn.o_proj.weight", {H, c.q_dim()}, hs + ", " + hq});
        if (c.qkv_bias) {
            out.push_back({p + "self_attn.q_proj.bias", {c.q_dim()}, hq});
            out.push_back({p + "self_attn.k_proj.bias", {c.kv_dim()}, hkv});
            out.push_back({p + "self_attn.v_proj.bias", {c.kv_dim()}, hkv});
        }
        if (c.o_bias) out.push_back({p + "self_attn.o_proj.bias", {H}, hs});
        if (c.qk_norm) {
            out.push_back({p + "self_attn.q_norm.weight", {c.head_dim}, fmt::format("head_dim {}", c.head_dim)});
            out.push_back({p + "self_attn.k_norm.weight", {c.head_dim}, fmt::format("head_dim {}", c.head_dim)});
        }
        out.push_back({p + "post_attention_layernorm.weight", {H}, hs});
        out.push_back({p + "mlp.gate_proj.weight", {I, H}, is + ", " + hs});
        out.push_back({p + "mlp.up_proj.weight", {I, H}, is + ", " + hs});
        out.push_back({p + "mlp.down_proj.weight", {H, I}, hs + ", " + is});
        if (c.mlp_bias) {
            out.push_back({p + "mlp.gate_proj.bias", {I}, is});
            out.push_back({p + "mlp.up_proj.bias", {I}, is});
            out.push_back({p + "mlp.down_proj.bias", {H}, hs});
        }
    }
    out.push_back({"model.norm.weight", {H}, hs});
    out.push_back({"lm_head.weight", {V, H}, fmt::format("vocab_size {}, {}", V, hs), c.tie_word_embeddings});
    return out;
}

}  // namespace lmscope
