// lmscope inspect PATH [--json]: every tensor (name, dtype, shape, bytes), parameter counts per
// component, the config summary and findings. Exit 1 when a finding is an error (the config and
// the tensors disagree), so scripts can gate on it.
#include <fmt/color.h>
#include <fmt/core.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "model/inspect.h"

namespace lmscope {

namespace {

struct InspectOptions {
    std::string path;
    bool json = false;
    bool quiet = false;
};

nlohmann::json to_json(const InspectReport& r) {
    using nlohmann::json;
    json j;
    j["path"] = r.path;
    j["tensors"] = json::array();
    for (const TensorInfo& t : r.tensors)
        j["tensors"].push_back({{"name", t.name}, {"dtype", dtype_name(t.dtype)}, {"shape", t.shape},
                                {"bytes", t.nbytes()}, {"file", t.file}, {"component", tensor_component(t.name)}});
    j["components"] = json::object();
    for (const auto& [name, c] : r.components)
        j["components"][name] = {{"params", c.params}, {"bytes", c.bytes}, {"tensors", c.tensors}};
    j["total_params"] = r.total_params;
    j["total_bytes"] = r.total_bytes;
    if (r.config) {
        const ModelConfig& c = *r.config;
        j["config"] = {{"architecture", c.architecture}, {"vocab_size", c.vocab_size},
                       {"hidden_size", c.hidden_size}, {"intermediate_size", c.intermediate_size},
                       {"num_hidden_layers", c.num_layers}, {"num_attention_heads", c.num_heads},
                       {"num_key_value_heads", c.num_kv_heads}, {"head_dim", c.head_dim},
                       {"rms_norm_eps", c.rms_norm_eps}, {"rope_theta", c.rope.theta}, {"rope_type", c.rope.type},
                       {"tie_word_embeddings", c.tie_word_embeddings}, {"qkv_bias", c.qkv_bias},
                       {"qk_norm", c.qk_norm}};
    }
    if (!r.quant_summary.empty()) {
        j["quantization"] = {{"summary", r.quant_summary}, {"layout", json::array()}};
        for (const QuantLayoutRow& q : r.quant_layout)
            j["quantization"]["layout"].push_back(
                {{"module", q.module}, {"storage", q.storage}, {"count", q.count}, {"total", q.total}});
    }
    j["findings"] = json::array();
    for (const InspectFinding& f : r.findings)
        j["findings"].push_back({{"severity", f.severity}, {"rule", f.rule}, {"tensor", f.tensor},
                                 {"message", f.message}});
    return j;
}

void print_text(const InspectReport& r, bool quiet) {
    const bool color = isatty(STDOUT_FILENO);
    auto styled = [&](const std::string& s, fmt::text_style st) { return color ? fmt::format(st, "{}", s) : s; };
    size_t w = 0;
    for (const TensorInfo& t : r.tensors) w = std::max(w, t.name.size());
    if (!quiet)
        for (const TensorInfo& t : r.tensors)
            fmt::print("{:<{}}  {:<7} {:<16} {:>12}\n", t.name, w, dtype_name(t.dtype), shape_str(t.shape),
                       human_bytes(static_cast<double>(t.nbytes())));
    fmt::print("\n{} tensors, {} parameters, {}\n", r.tensors.size(), human_count(static_cast<double>(r.total_params)),
               human_bytes(static_cast<double>(r.total_bytes)));
    for (const char* comp : {"embedding", "attention", "mlp", "norms", "head", "other"}) {
        auto it = r.components.find(comp);
        if (it == r.components.end()) continue;
        fmt::print("  {:<10} {:>10} params ({:5.1f}%)  {:>12}  {} tensors\n", comp,
                   human_count(static_cast<double>(it->second.params)),
                   100.0 * static_cast<double>(it->second.params) / static_cast<double>(std::max<int64_t>(1, r.total_params)),
                   human_bytes(static_cast<double>(it->second.bytes)), it->second.tensors);
    }
    if (r.config) fmt::print("\nconfig: {}\n", r.config->summary());
    if (!r.quant_summary.empty()) {
        fmt::print("\nquantization: {}\n", r.quant_summary);
        size_t mw = 0;
        for (const QuantLayoutRow& q : r.quant_layout) mw = std::max(mw, q.module.size());
        for (const QuantLayoutRow& q : r.quant_layout)
            fmt::print("  {:<{}}  {}  ({}/{})\n", q.module, mw, q.storage, q.count, q.total);
    }
    if (!r.findings.empty()) fmt::print("\nfindings:\n");
    for (const InspectFinding& f : r.findings) {
        fmt::text_style st = f.severity == "error"     ? fmt::fg(fmt::terminal_color::bright_red)
                             : f.severity == "warning" ? fmt::fg(fmt::terminal_color::yellow)
                                                       : fmt::fg(fmt::terminal_color::cyan);
        fmt::print("  {} [{}] {}\n", styled(f.severity, st), f.rule, f.message);
    }
}

void inspect_command(const InspectOptions& o) {
    InspectReport r = inspect_checkpoint(o.path);
    if (o.json)
        fmt::print("{}\n", to_json(r).dump(2));
    else
        print_text(r, o.quiet);
    if (r.has_errors()) throw Error(fmt::format("{}: config and tensors disagree (see findings)", o.path));
}

}  // namespace

void register_inspect(CLI::App& app) {
    auto o = std::make_shared<InspectOptions>();
    CLI::App* c = app.add_subcommand("inspect", "List a checkpoint's tensors, config and consistency findings");
    c->add_option("path", o->path, "Model folder, .safetensors file or model.safetensors.index.json")->required();
    c->add_flag("--json", o->json, "Print one JSON document");
    c->add_flag("--summary", o->quiet, "Omit the per-tensor listing");
    c->callback([o] { inspect_command(*o); });
}

}  // namespace lmscope
