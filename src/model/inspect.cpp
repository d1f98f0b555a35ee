#include "model/inspect.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <set>

namespace lmscope {

namespace fs = std::filesystem;

bool InspectReport::has_errors() const {
    return std::any_of(findings.begin(), findings.end(), [](const Finding& f) { return f.severity == "error"; });
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

void check_against_config(const Checkpoint& ckpt, const ModelConfig& cfg, InspectReport& r) {
    std::set<std::string> expected_names;
    std::set<DType> dtypes;
    for (const ExpectedTensor& e : expected_tensors(cfg)) {
        expected_names.insert(e.name);
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
        if (!expected_names.count(t.name))
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
        check_against_config(ckpt, *r.config, r);
    } else {
        r.findings.push_back({"info", "no-config", "", "no config.json beside the weights: tensors listed only"});
    }
    return r;
}

}  // namespace lmscope
