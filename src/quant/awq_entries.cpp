#include "quant/awq_entries.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "quant/awq_layer.h"
#include "quant/convert_util.h"

namespace lmscope {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kFormat = "lmscope-awq-entries v1";
constexpr const char* kClipSuffix = ".clip_max_val";

bool is_linear_rel(const std::string& s) {
    for (const std::string& n : awq_layer_linear_names())
        if (n == s) return true;
    return false;
}

// "…layers.N.<tail>" -> (N, tail); N = -1 when absent.
std::pair<int64_t, std::string> split_layer(const std::string& canon) {
    const std::string key = "model.layers.";
    if (canon.rfind(key, 0) != 0) return {-1, canon};
    size_t i = key.size(), j = i;
    while (j < canon.size() && std::isdigit(static_cast<unsigned char>(canon[j]))) ++j;
    if (j == i || j >= canon.size() || canon[j] != '.') return {-1, canon};
    return {std::stoll(canon.substr(i, j - i)), canon.substr(j + 1)};
}

void flatten_numbers(const json& j, std::vector<float>& out, const std::string& label) {
    if (j.is_number()) {
        out.push_back(j.get<float>());
    } else if (j.is_array()) {
        for (const json& e : j) flatten_numbers(e, out, label);
    } else {
        fail("{}: expected numbers, found {}", label, j.dump().substr(0, 80));
    }
}

std::string relative_sub(const std::string& prev_canon, const std::string& sub) {
    // subnames are relative ("self_attn.q_proj") or global (llm-awq: "model.layers.0.self_attn.q_proj")
    if (sub.find("layers.") != std::string::npos) {
        const std::string real = awq_real_linear_path(sub);
        return split_layer(real).second;
    }
    (void)prev_canon;
    if (!is_linear_rel(sub)) fail("AWQ scale entry of '{}': '{}' names no decoder linear", prev_canon, sub);
    return sub;
}

AwqScaleEntry make_entry(const std::string& name, const std::vector<std::string>& subs, std::vector<float> value,
                         const std::string& label) {
    AwqScaleEntry e;
    e.name = awq_canonical_path(name);
    if (awq_layer_index(e.name) < 0) fail("{}: scale entry '{}' names no decoder layer op", label, name);
    for (const std::string& s : subs) e.subnames.push_back(relative_sub(e.name, s));
    if (e.subnames.empty()) fail("{}: scale entry '{}' has no subnames", label, name);
    e.value = std::move(value);
    for (float v : e.value)
        if (!std::isfinite(v) || v <= 0.0f) fail("{}: scale entry '{}' holds {} (scales must be finite and > 0)", label, name, v);
    return e;
}

}  // namespace

std::string awq_canonical_path(const std::string& path) {
    std::string p = path;
    while (p.rfind("model.model.", 0) == 0) p = p.substr(6);
    if (p.rfind("layers.", 0) == 0) p = "model." + p;
    return p;
}

int64_t awq_layer_index(const std::string& path) { return split_layer(awq_canonical_path(path)).first; }

std::string awq_real_linear_path(const std::string& key) {
    const std::string canon = awq_canonical_path(key);
    auto [l, tail] = split_layer(canon);
    if (l < 0) fail("AWQ entry '{}': expected a decoder linear path like model.layers.0.self_attn.q_proj", key);
    if (!is_linear_rel(tail)) {
        for (const char* prev : {"input_layernorm.", "post_attention_layernorm.", "self_attn.v_proj.", "mlp.up_proj."})
            if (tail.rfind(prev, 0) == 0 && is_linear_rel(tail.substr(std::strlen(prev)))) {
                tail = tail.substr(std::strlen(prev));  // the seed's joined "<prev op>.<linear>" form
                break;
            }
    }
    if (!is_linear_rel(tail))
        fail("AWQ entry '{}': '{}' is not a decoder linear (self_attn.{{q,k,v,o}}_proj, mlp.{{gate,up,down}}_proj)",
             key, tail);
    return fmt::format("model.layers.{}.{}", l, tail);
}

std::string awq_prev_op_of(const std::string& rel) {
    if (rel == "self_attn.q_proj" || rel == "self_attn.k_proj" || rel == "self_attn.v_proj") return "input_layernorm";
    if (rel == "self_attn.o_proj") return "self_attn.v_proj";
    if (rel == "mlp.gate_proj" || rel == "mlp.up_proj") return "post_attention_layernorm";
    if (rel == "mlp.down_proj") return "mlp.up_proj";
    fail("'{}' is not a decoder linear", rel);
}

std::vector<std::pair<std::string, std::vector<float>>> awq_flatten(const AwqResults& r) {
    std::vector<std::pair<std::string, std::vector<float>>> flat;
    for (const AwqScaleEntry& e : r.scale) {
        const int64_t l = awq_layer_index(e.name);
        for (const std::string& s : e.subnames) flat.emplace_back(fmt::format("model.layers.{}.{}", l, s), e.value);
    }
    return flat;
}

std::vector<AwqScaleEntry> awq_group(const std::vector<std::pair<std::string, std::vector<float>>>& flat) {
    std::vector<AwqScaleEntry> out;
    std::map<std::string, size_t> where;
    for (const auto& [key, value] : flat) {
        const std::string real = awq_real_linear_path(key);
        auto [l, rel] = split_layer(real);
        const std::string prev = fmt::format("model.layers.{}.{}", l, awq_prev_op_of(rel));
        auto it = where.find(prev);
        if (it == where.end()) {
            where[prev] = out.size();
            out.push_back(AwqScaleEntry{prev, {rel}, value});
            continue;
        }
        AwqScaleEntry& e = out[it->second];
        if (e.value != value)
            fail("AWQ flattened entries: '{}' and '{}' share the previous op '{}' but carry different scales; "
                 "one scale per previous op can be folded",
                 key, fmt::format("model.layers.{}.{}", l, e.subnames.front()), prev);
        e.subnames.push_back(rel);
    }
    // canonical order (a JSON object's keys come back sorted): by layer, then q k v o gate up down
    const auto& names = awq_layer_linear_names();
    auto rank = [&](const std::string& rel) {
        return static_cast<int>(std::find(names.begin(), names.end(), rel) - names.begin());
    };
    for (AwqScaleEntry& e : out)
        std::sort(e.subnames.begin(), e.subnames.end(),
                  [&](const std::string& a, const std::string& b) { return rank(a) < rank(b); });
    std::stable_sort(out.begin(), out.end(), [&](const AwqScaleEntry& a, const AwqScaleEntry& b) {
        const int64_t la = awq_layer_index(a.name), lb = awq_layer_index(b.name);
        return la != lb ? la < lb : rank(a.subnames.front()) < rank(b.subnames.front());
    });
    return out;
}

std::string awq_entries_to_json(const AwqResults& r) {
    json j;
    j["format"] = kFormat;
    j["grouped"] = json::array();
    for (const AwqScaleEntry& e : r.scale)
        j["grouped"].push_back({{"name", e.name}, {"subnames", e.subnames}, {"value", e.value}});
    j["flattened"] = json::array();
    for (const auto& [n, v] : awq_flatten(r)) j["flattened"].push_back({{"name", n}, {"value", v}});
    j["clip"] = json::array();
    for (const AwqClipEntry& c : r.clip)
        j["clip"].push_back({{"name", c.name}, {"shape", {c.out, c.n_groups}}, {"max_val", c.max_val}});
    return j.dump(1);
}

AwqResults awq_entries_from_json(const std::string& text, const std::string& label) {
    json j;
    try {
        j = json::parse(text);
    } catch (const std::exception& e) {
        fail("{}: not valid JSON: {}", label, e.what());
    }
    AwqResults r;
    auto read_grouped = [&](const json& arr) {
        for (const json& e : arr) {
            if (!e.is_object() || !e.contains("name") || !e.contains("subnames") || !e.contains("value"))
                fail("{}: a grouped entry needs name, subnames and value", label);
            std::vector<float> v;
            flatten_numbers(e["value"], v, label);
            r.scale.push_back(make_entry(e["name"].get<std::string>(), e["subnames"].get<std::vector<std::string>>(),
                                         std::move(v), label));
        }
    };
    auto read_clip = [&](const json& c, const std::string& name) {
        AwqClipEntry ce;
        ce.name = awq_real_linear_path(name);
        const json& mv = c.is_object() ? c["max_val"] : c;
        flatten_numbers(mv, ce.max_val, label);
        if (c.is_object() && c.contains("shape")) {
            ce.out = c["shape"][0].get<int64_t>();
            ce.n_groups = c["shape"][1].get<int64_t>();
        } else {
            ce.out = mv.is_array() ? static_cast<int64_t>(mv.size()) : 0;  // llm-awq: [out, n_group, 1]
            ce.n_groups = ce.out ? static_cast<int64_t>(ce.max_val.size()) / ce.out : 0;
        }
        if (ce.out * ce.n_groups != static_cast<int64_t>(ce.max_val.size()))
            fail("{}: clip entry '{}' has {} values, not [{}, {}]", label, name, ce.max_val.size(), ce.out, ce.n_groups);
        r.clip.push_back(std::move(ce));
    };
    if (j.is_array()) {
        read_grouped(j);
    } else if (j.is_object() && j.contains("grouped")) {
        read_grouped(j["grouped"]);
        if (j.contains("clip"))
            for (const json& c : j["clip"]) read_clip(c, c["name"].get<std::string>());
    } else if (j.is_object() && j.contains("scale")) {  // llm-awq awq_results converted to JSON
        for (const json& e : j["scale"]) {
            if (!e.is_array() || e.size() != 3) fail("{}: llm-awq scale entries are [prev_op, [names], scales]", label);
            std::vector<float> v;
            flatten_numbers(e[2], v, label);
            std::vector<std::string> subs;
            if (e[1].is_string())
                subs.push_back(e[1].get<std::string>());
            else
                subs = e[1].get<std::vector<std::string>>();
            r.scale.push_back(make_entry(e[0].get<std::string>(), subs, std::move(v), label));
        }
        if (j.contains("clip"))
            for (const json& c : j["clip"]) {
                if (!c.is_array() || c.size() != 2) fail("{}: llm-awq clip entries are [name, max_val]", label);
                read_clip(c[1], c[0].get<std::string>());
            }
    } else if (j.is_object() && j.contains("flattened")) {
        std::vector<std::pair<std::string, std::vector<float>>> flat;
        for (const json& e : j["flattened"]) {
            std::vector<float> v;
            flatten_numbers(e["value"], v, label);
            flat.emplace_back(e["name"].get<std::string>(), std::move(v));
        }
        r.scale = awq_group(flat);
    } else if (j.is_object()) {  // {key: [values]} flattened map (seed's joined keys allowed)
        std::vector<std::pair<std::string, std::vector<float>>> flat;
        for (auto it = j.begin(); it != j.end(); ++it) {
            std::vector<float> v;
            flatten_numbers(it.value(), v, label);
            flat.emplace_back(it.key(), std::move(v));
        }
        r.scale = awq_group(flat);
    } else {
        fail("{}: not an AWQ entries file", label);
    }
    return r;
}

void awq_save_entries(const AwqResults& r, const std::string& base) {
    write_text_atomic(base + ".json", awq_entries_to_json(r));
    SafetensorsWriter w;
    w.set_metadata("format", kFormat);
    json groups = json::array();
    for (const AwqScaleEntry& e : r.scale) groups.push_back({{"name", e.name}, {"subnames", e.subnames}});
    w.set_metadata("grouped", groups.dump());
    for (const auto& [n, v] : awq_flatten(r)) w.add(n, Tensor::from_f32({static_cast<int64_t>(v.size())}, v));
    for (const AwqClipEntry& c : r.clip) w.add(c.name + kClipSuffix, Tensor::from_f32({c.out, c.n_groups}, c.max_val));
    w.write(base + ".safetensors");
}

AwqResults awq_load_entries(const std::string& path) {
    if (path.size() > 5 && path.substr(path.size() - 5) == ".json") return awq_entries_from_json(read_file(path), path);
    SafetensorsFile f = SafetensorsFile::open(path);
    AwqResults r;
    std::vector<std::pair<std::string, std::vector<float>>> flat;
    for (const TensorInfo& ti : f.tensors()) {
        const Tensor t = f.get(ti.name);
        if (!dtype_is_float(t.dtype())) fail("{}: tensor '{}' is {}, expected float scales", path, ti.name, dtype_name(t.dtype()));
        if (ti.name.size() > std::strlen(kClipSuffix) &&
            ti.name.substr(ti.name.size() - std::strlen(kClipSuffix)) == kClipSuffix) {
            if (t.ndim() != 2) fail("{}: clip tensor '{}' must be [out, n_groups], found {}", path, ti.name, shape_str(t.shape()));
            AwqClipEntry c;
            c.name = awq_real_linear_path(ti.name.substr(0, ti.name.size() - std::strlen(kClipSuffix)));
            c.out = t.dim(0);
            c.n_groups = t.dim(1);
            c.max_val = t.to_f32_vector();
            r.clip.push_back(std::move(c));
        } else {
            if (t.ndim() != 1) fail("{}: scale tensor '{}' must be 1-D, found {}", path, ti.name, shape_str(t.shape()));
            flat.emplace_back(ti.name, t.to_f32_vector());
        }
    }
    r.scale = awq_group(flat);
    return r;
}

int awq_apply_scales(AwqFloatLayer& L, const AwqResults& r) {
    int n = 0;
    for (const AwqScaleEntry& e : r.scale) {
        if (awq_layer_index(e.name) != L.index) continue;
        auto [l, prev] = split_layer(awq_canonical_path(e.name));
        const float* s = e.value.data();
        const int64_t C = static_cast<int64_t>(e.value.size());
        for (const std::string& sub : e.subnames) {
            Linear* fc = L.linear(sub);
            if (!fc) fail("scale entry '{}': unknown linear '{}'", e.name, sub);
            if (fc->in() != C)
                fail("scale entry '{}': {} values but '{}' has in_features {}", e.name, C, fc->name, fc->in());
        }
        if (Tensor* norm = L.norm(prev)) {
            if (norm->numel() != C) fail("scale entry '{}': {} values but the norm has {}", e.name, C, norm->numel());
            awq_divide_norm(*norm, s);
        } else if (Linear* pl = L.linear(prev)) {
            if (pl->out() < C) fail("scale entry '{}': {} values but '{}' has only {} outputs", e.name, C, pl->name, pl->out());
            awq_divide_last_rows(*pl, s, C);
        } else {
            fail("scale entry '{}': previous op '{}' is neither a norm nor a linear of the layer", e.name, prev);
        }
        for (const std::string& sub : e.subnames) awq_scale_columns(*L.linear(sub), s);
        ++n;
    }
    return n;
}

int awq_apply_clips(AwqFloatLayer& L, const AwqResults& r) {
    int n = 0;
    for (const AwqClipEntry& c : r.clip) {
        if (awq_layer_index(c.name) != L.index) continue;
        Linear* fc = L.linear(c.name);
        if (!fc) fail("clip entry '{}': unknown linear", c.name);
        if (c.out != fc->out() || c.n_groups <= 0 || fc->in() % c.n_groups != 0)
            fail("clip entry '{}': max_val [{}, {}] does not fit weight [{}, {}]", c.name, c.out, c.n_groups, fc->out(),
                 fc->in());
        const int64_t in = fc->in(), g = in / c.n_groups;
        float* w = fc->weight.data_mut<float>();
        for (int64_t o = 0; o < c.out; ++o)
            for (int64_t i = 0; i < in; ++i) {
                const float m = c.max_val[static_cast<size_t>(o * c.n_groups + i / g)];
                float& x = w[o * in + i];
                x = x < -m ? -m : (x > m ? m : x);
            }
        ++n;
    }
    return n;
}

void awq_apply_entries_checkpoint(const std::string& in_dir, const AwqResults& r, const std::string& out_dir,
                                  bool apply_clip) {
    const ModelConfig cfg = ModelConfig::load(in_dir);
    auto ckpt = std::make_shared<Checkpoint>(Checkpoint::open(in_dir));
    for (const AwqScaleEntry& e : r.scale)
        if (awq_layer_index(e.name) >= cfg.num_layers) fail("scale entry '{}': the model has {} layers", e.name, cfg.num_layers);
    auto cur = std::make_shared<AwqFloatLayer>();
    cur->index = -1;
    auto layer_of = [ckpt, cur, &cfg, &r, apply_clip](int64_t l) -> AwqFloatLayer& {
        if (cur->index != l) {
            *cur = load_float_layer(*ckpt, cfg, l);
            awq_apply_scales(*cur, r);
            if (apply_clip) awq_apply_clips(*cur, r);
        }
        return *cur;
    };
    std::vector<OutTensor> outs;
    for (const std::string& name : ckpt->names()) {
        const TensorInfo& ti = ckpt->info(name);
        const int64_t l = awq_layer_index(name);
        auto [li, tail] = split_layer(awq_canonical_path(name));
        const bool touched = l >= 0 && (tail == "input_layernorm.weight" || tail == "post_attention_layernorm.weight" ||
                                        (tail.size() > 7 && (tail.substr(tail.size() - 7) == ".weight" ||
                                                             tail.substr(tail.size() - 5) == ".bias") &&
                                         is_linear_rel(tail.substr(0, tail.rfind('.')))));
        OutTensor ot;
        ot.name = name;
        ot.shape = ti.shape;
        if (!touched) {
            ot.dtype = ti.dtype;
            ot.produce = [ckpt, name](uint8_t* dst) {
                const Tensor t = ckpt->get(name);
                std::memcpy(dst, t.raw(), t.nbytes());
            };
        } else {
            ot.dtype = DType::F32;
            const std::string rel = tail;
            ot.produce = [layer_of, l, rel](uint8_t* dst) {
                AwqFloatLayer& L = layer_of(l);
                const Tensor* t = nullptr;
                if (rel == "input_layernorm.weight") t = &L.input_norm;
                else if (rel == "post_attention_layernorm.weight") t = &L.post_norm;
                else {
                    Linear* fc = L.linear(rel.substr(0, rel.rfind('.')));
                    t = rel.substr(rel.rfind('.')) == ".bias" ? &fc->bias : &fc->weight;
                }
                std::memcpy(dst, t->raw(), t->nbytes());
            };
        }
        outs.push_back(std::move(ot));
    }
    write_dir_atomic(out_dir, [&](const std::string& tmp) {
        json c = cfg.raw;
        write_text_atomic((fs::path(tmp) / "config.json").string(), c.dump(2));
        write_sharded_safetensors(tmp, outs, 5000000000ull, {{"format", "pt"}, {"lmscope", "awq scales applied"}});
        copy_model_side_files(model_folder(in_dir), tmp);
    });
}

}  // namespace lmscope
