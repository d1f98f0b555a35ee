#include "model/inspect.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <regex>
#include <set>

#include "core/error.h"
#include "quant/awq.h"
#include "quant/fp8.h"

namespace lmscope {

namespace fs = std::filesystem;

bool InspectReport::has_errors() const {
    return std::any_of(findings.begin(), findings.end(), [](const InspectFinding& f) { return f.severity == "error"; });
}

std::string tensor_component(const std::string& name) {
    if (name.find("embed_tokens") != std::string::npos || name.find("wte") != std::string::npos) return "embedding";
    if (name.find("lm_head") != std::string::npos) return "head";
    if (name.find("norm") != std::string::npos) return "norms";
    if (name.find("self_attn") != std::string::npos || name.find(".attn.") != std::string::npos) return "attention";
    if (name.find("mlp") != std::string::npos) return "mlp";
    return "other";
}

namespace {

// known_extra: tensors that belong to the model although the dense layout has no such name (FP8
// scales, AWQ qweight/qzeros/scales); replaced: dense weights a quantized form stands in for.
void check_against_config(const Checkpoint& ckpt, const ModelConfig& cfg, InspectReport& r,
                          const std::set<std::string>& known_extra, const std::set<std::string>& replaced) {
    std::set<std::string> expected_names;
    std::set<DType> dtypes;
    for (const ExpectedTensor& e : expected_tensors(cfg)) {
        expected_names.insert(e.name);
        if (replaced.count(e.name)) continue;
        if (!ckpt.has(e.name)) {
            if (!e.optional)
                r.findings.push_back({"error", "missing-tensor", e.name,
                                      fmt::format("config expects {} {} ({}) but the checkpoint has no such tensor",
                                                  e.name, shape_str(e.shape), e.why)});
            continue;
        }
        const TensorInfo& info = ckpt.info(e.name);
        dtypes.insert(info.dtype);
        if (info.shape != e.shape)
            r.findings.push_back({"error", "shape-mismatch", e.name,
                                  fmt::format("{} has shape {} but the config expects {} ({})", e.name,
                                              shape_str(info.shape), shape_str(e.shape), e.why)});
        if (!dtype_is_float(info.dtype))
            r.findings.push_back({"error", "dtype", e.name,
                                  fmt::format("{} has dtype {}, expected a float weight", e.name,
                                              dtype_name(info.dtype))});
        if (e.optional && e.name == "lm_head.weight")
            r.findings.push_back({"info", "tied-head-stored", e.name,
                                  "tie_word_embeddings is true: lm_head.weight is stored but the head uses "
                                  "model.embed_tokens.weight (transformers ties them)"});
    }
    for (const TensorInfo& t : r.tensors)
        if (!expected_names.count(t.name) && !known_extra.count(t.name))
            r.findings.push_back({"warning", "unexpected-tensor", t.name,
                                  fmt::format("{} ({} {}) is not part of a {} with this config", t.name,
                                              dtype_name(t.dtype), shape_str(t.shape), cfg.architecture)});
    if (dtypes.size() > 1) {
        std::string s;
        for (DType d : dtypes) s += std::string(s.empty() ? "" : ", ") + dtype_name(d);
        r.findings.push_back({"info", "mixed-dtypes", "", "weights are stored in several dtypes: " + s});
    }
    static const std::map<std::string, DType> torch_names = {
        {"float32", DType::F32}, {"float16", DType::F16}, {"bfloat16", DType::BF16}};
    auto it = torch_names.find(cfg.torch_dtype);
    if (it != torch_names.end() && dtypes.size() == 1 && *dtypes.begin() != it->second)
        r.findings.push_back({"warning", "torch-dtype", "torch_dtype",
                              fmt::format("config torch_dtype is {} but the weights are stored as {}",
                                          cfg.torch_dtype, dtype_name(*dtypes.begin()))});
    if (cfg.head_dim_from_config && cfg.head_dim * cfg.num_heads != cfg.hidden_size)
        r.findings.push_back({"info", "head-dim", "head_dim",
                              fmt::format("head_dim {} x {} heads = {} differs from hidden_size {}: q_proj maps "
                                          "{} -> {} (this is how the model is built, not an error)",
                                          cfg.head_dim, cfg.num_heads, cfg.q_dim(), cfg.hidden_size,
                                          cfg.hidden_size, cfg.q_dim())});
}

// The quantization layout per module kind and the FP8 findings; returns the FP8 scale tensors, which
// belong to the model (not "unexpected").
std::set<std::string> inspect_quantization(const Checkpoint& ckpt, const ModelConfig& cfg, InspectReport& r) {
    Fp8Layout L;
    try {
        L = analyze_fp8_layout(ckpt, cfg);
    } catch (const Error& e) {
        r.findings.push_back({"error", "quantization-config", "quantization_config", e.what()});
        return {};
    }
    if (!L.qc.present && L.num_fp8() == 0) return {};
    if (L.qc.present) {
        std::string skip;
        for (const auto& m : L.qc.modules_to_not_convert) skip += (skip.empty() ? "" : ", ") + m;
        r.quant_summary = L.qc.is_fp8()
                              ? fmt::format("fp8 ({}, weight_block_size [{}, {}], activations {}), "
                                            "modules_to_not_convert [{}]",
                                            L.qc.fmt, L.qc.block.out, L.qc.block.in, L.qc.activation_scheme, skip)
                              : fmt::format("quant_method '{}' (lmscope reads block FP8 here; other methods are "
                                            "checked elsewhere)",
                                            L.qc.quant_method);
    } else {
        r.quant_summary = fmt::format("no quantization_config, but {} linear(s) are F8_E4M3 with scales", L.num_fp8());
    }
    static const std::regex layer_prefix(R"(^model\.layers\.\d+\.)");
    std::map<std::string, size_t> row_of;  // kind + storage -> row
    std::map<std::string, int> totals;
    for (const Fp8ModuleLayout& m : L.modules) {
        const std::string kind = std::regex_replace(m.module, layer_prefix, "");
        const std::string storage =
            m.fp8 ? fmt::format("FP8 e4m3, {}x{} block scales ({} {})", L.qc.block.out, L.qc.block.in,
                                m.scale_name.empty() ? std::string("no scale!")
                                                     : m.scale_name.substr(m.scale_name.rfind('.') + 1),
                                m.scale_name.empty() ? std::string() : std::string(dtype_name(m.scale_dtype)))
                  : fmt::format("kept in {}{}", dtype_name(m.weight_dtype),
                                m.skip_match ? fmt::format(" (modules_to_not_convert '{}')", *m.skip_match) : "");
        const std::string key = kind + "\n" + storage;
        auto it = row_of.find(key);
        if (it == row_of.end()) {
            row_of[key] = r.quant_layout.size();
            r.quant_layout.push_back({kind, storage, 1, 0});
        } else {
            r.quant_layout[it->second].count++;
        }
        totals[kind]++;
    }
    for (QuantLayoutRow& row : r.quant_layout) row.total = totals[row.module];
    for (const std::string& w : L.warnings)
        r.findings.push_back({"warning", "fp8-config-contradiction", "quantization_config", w});
    for (const Fp8Problem& p : L.errors) r.findings.push_back({"error", p.rule, p.tensor, p.message});
    return {L.scale_tensors.begin(), L.scale_tensors.end()};
}

// AutoAWQ gemm linears: each bound and validated like `run` does; layout rows and findings.
struct AwqInspect {
    std::set<std::string> tensors;   // qweight / qzeros / scales names
    std::set<std::string> replaced;  // the dense .weight names they stand for
};
AwqInspect inspect_awq(const Checkpoint& ckpt, const ModelConfig& cfg, InspectReport& r) {
    AwqInspect out;
    AwqQuantConfig aq;
    try {
        aq = parse_awq_quant_config(cfg.raw, cfg.source);
    } catch (const Error& e) {
        r.findings.push_back({"error", "quantization-config", "quantization_config", e.what()});
        return out;
    }
    if (!aq.present) return out;
    r.quant_summary = fmt::format("awq (bits {}, group_size {}, zero_point, AutoAWQ gemm layout)", aq.bits, aq.group_size);
    static const std::regex layer_prefix(R"(^model\.layers\.\d+\.)");
    std::map<std::string, size_t> row_of;
    std::map<std::string, int> totals;
    const std::string suffix = ".weight";
    for (const ExpectedTensor& e : expected_tensors(cfg)) {
        if (e.name.size() <= suffix.size() || e.name.compare(e.name.size() - suffix.size(), suffix.size(), suffix) != 0 ||
            e.shape.size() != 2 || e.name.find("embed_tokens") != std::string::npos)
            continue;
        const std::string module = e.name.substr(0, e.name.size() - suffix.size());
        std::string storage;
        if (has_awq_linear(ckpt, module)) {
            out.replaced.insert(e.name);
            for (const char* t : {".qweight", ".qzeros", ".scales"}) out.tensors.insert(module + t);
            try {
                bind_awq_linear(ckpt, module, aq.group_size, e.shape[1], e.shape[0]);
                storage = fmt::format("AWQ int4 (qweight/qzeros/scales), group {}", aq.group_size);
            } catch (const Error& err) {
                r.findings.push_back({"error", "awq-layout", module, err.what()});
                storage = "AWQ int4, INVALID (see findings)";
            }
        } else if (ckpt.has(e.name)) {
            storage = fmt::format("kept in {}", dtype_name(ckpt.info(e.name).dtype));
        } else {
            continue;
        }
        const std::string kind = std::regex_replace(module, layer_prefix, "");
        const std::string key = kind + "\n" + storage;
        auto it = row_of.find(key);
        if (it == row_of.end()) {
            row_of[key] = r.quant_layout.size();
            r.quant_layout.push_back({kind, storage, 1, 0});
        } else {
            r.quant_layout[it->second].count++;
        }
        totals[kind]++;
    }
    for (QuantLayoutRow& row : r.quant_layout) row.total = totals[row.module];
    return out;
}

}  // namespace

InspectReport inspect_checkpoint(const std::string& path) {
    InspectReport r;
    r.path = path;
    Checkpoint ckpt = Checkpoint::open(path);
    for (const std::string& n : ckpt.names()) r.tensors.push_back(ckpt.info(n));
    for (const TensorInfo& t : r.tensors) {
        ComponentCount& c = r.components[tensor_component(t.name)];
        const int64_t n = shape_numel(t.shape);
        c.params += n;
        c.bytes += t.nbytes();
        c.tensors += 1;
        r.total_params += n;
        r.total_bytes += t.nbytes();
    }
    fs::path cfg_path = fs::is_directory(path) ? fs::path(path) / "config.json" : fs::path(path).parent_path() / "config.json";
    if (fs::exists(cfg_path)) {
        r.config = ModelConfig::load(cfg_path.string());
        std::set<std::string> extra = inspect_quantization(ckpt, *r.config, r);
        const AwqInspect awq = inspect_awq(ckpt, *r.config, r);
        extra.insert(awq.tensors.begin(), awq.tensors.end());
        check_against_config(ckpt, *r.config, r, extra, awq.replaced);
    } else {
        r.findings.push_back({"info", "no-config", "", "no config.json beside the weights: tensors listed only"});
    }
    return r;
}

}  // namespace lmscope
