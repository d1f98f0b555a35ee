// JSON trace document: {format, version, meta, records, findings, losses (training only)}.
// Statistics that are not finite (std of one element, mean of an all-NaN tensor) are written as
// null, which load_trace_json reads back as NaN.
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/error.h"
#include "trace/report.h"
#include "trace/trace_io.h"

namespace lmscope {

namespace {

nlohmann::ordered_json num(double v) {
    if (!std::isfinite(v)) return nullptr;
    return v;
}

double get_num(const nlohmann::json& j, const char* k) {
    if (!j.contains(k) || j[k].is_null()) return std::numeric_limits<double>::quiet_NaN();
    return j[k].get<double>();
}

}  // namespace

std::string render_json(const TraceRecorder& rec, const std::vector<Finding>& findings) {
    const TraceMeta& m = rec.meta();
    nlohmann::ordered_json j;
    j["format"] = "lmscope-trace";
    j["version"] = 1;
    nlohmann::ordered_json meta;
    meta["kind"] = m.kind;
    meta["title"] = m.title;
    meta["architecture"] = m.architecture;
    meta["generated"] = m.generated;
    meta["device"] = "cpu";
    meta["batch"] = m.batch;
    meta["seq_len"] = m.seq_len;
    meta["vocab_size"] = m.vocab_size;
    meta["hidden_size"] = m.hidden;
    meta["num_layers"] = m.layers;
    meta["num_heads"] = m.heads;
    meta["num_kv_heads"] = m.kv_heads;
    meta["head_dim"] = m.head_dim;
    meta["intermediate_size"] = m.intermediate;
    meta["iterations"] = m.iterations;
    meta["logit_softcap"] = m.logit_softcap;
    meta["zero_init_projections"] = m.zero_init_projections;
    meta["prompt"] = m.prompt;
    meta["input_ids"] = m.input_ids;
    meta["filters"] = m.filters;
    j["meta"] = meta;
    nlohmann::ordered_json recs = nlohmann::ordered_json::array();
    for (const TraceRecord& r : rec.records()) {
        const TensorStats& s = r.stats;
        nlohmann::ordered_json o;
        o["name"] = r.name;
        o["phase"] = phase_name(r.phase);
        o["iteration"] = r.iteration;
        o["shape"] = s.shape;
        o["dtype"] = s.dtype;
        o["device"] = s.device;
        o["numel"] = s.numel;
        o["mean"] = num(s.mean);
        o["std"] = num(s.std);
        o["min"] = num(s.min);
        o["max"] = num(s.max);
        o["absmax"] = num(s.absmax);
        o["zeros"] = s.zeros;
        o["nan"] = s.nan;
        o["inf"] = s.inf;
        if (r.causal) o["causal"] = true;
        if (!r.extra.empty()) {
            nlohmann::ordered_json e;
            for (const auto& [k, v] : r.extra) e[k] = num(v);
            o["extra"] = e;
        }
        if (!r.values.empty()) {
            nlohmann::ordered_json vals = nlohmann::ordered_json::array();
            for (float v : r.values) vals.push_back(num(static_cast<double>(v)));
            o["values"] = vals;
        }
        recs.push_back(std::move(o));
    }
    j["records"] = std::move(recs);
    nlohmann::ordered_json fs = nlohmann::ordered_json::array();
    for (const Finding& f : findings) {
        nlohmann::ordered_json o;
        o["rule"] = f.rule;
        o["severity"] = severity_name(f.severity);
        o["tensor"] = f.tensor;
        o["phase"] = phase_name(f.phase);
        o["iteration"] = f.iteration;
        o["value"] = num(f.value);
        o["message"] = f.message;
        fs.push_back(std::move(o));
    }
    j["findings"] = std::move(fs);
    if (!rec.losses().empty()) {
        nlohmann::ordered_json ls = nlohmann::ordered_json::array();
        for (const LossPoint& p : rec.losses()) ls.push_back({{"iteration", p.iteration}, {"loss", num(p.loss)}});
        j["losses"] = std::move(ls);
    }
    // One line per record / finding: greppable and diffable. Invalid UTF-8 in a name is replaced, not fatal.
    const auto h = nlohmann::ordered_json::error_handler_t::replace;
    std::string o = "{\n";
    bool first_key = true;
    for (auto it = j.begin(); it != j.end(); ++it) {
        o += (first_key ? " " : ",\n ") + nlohmann::ordered_json(it.key()).dump() + ": ";
        first_key = false;
        if (it->is_array() && !it->empty()) {
            o += "[\n";
            for (size_t i = 0; i < it->size(); ++i) o += "  " + (*it)[i].dump(-1, ' ', false, h) + (i + 1 < it->size() ? ",\n" : "\n");
            o += " ]";
        } else {
            o += it->dump(-1, ' ', false, h);
        }
    }
    return o + "\n}\n";
}

LoadedTrace load_trace_json(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error("[trace diff] cannot read '" + path + "'");
    std::stringstream ss;
    ss << in.rdbuf();
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(ss.str());
    } catch (const nlohmann::json::exception& e) {
        throw Error("[trace diff] '" + path + "' is not valid JSON: " + e.what());
    }
    if (!j.is_object() || !j.contains("records") || !j["records"].is_array())
        throw Error("[trace diff] '" + path + "' is not an lmscope trace (no \"records\" list; write one with "
                    "`lmscope trace --format json`)");
    LoadedTrace t;
    t.path = path;
    try {
        for (const auto& o : j["records"]) {
            TraceRecord r;
            r.name = o.at("name").get<std::string>();
            r.phase = o.value("phase", "forward") == "backward" ? Phase::Backward : Phase::Forward;
            r.iteration = o.value("iteration", 0);
            r.stats.shape = o.value("shape", Shape{});
            r.stats.dtype = o.value("dtype", "float32");
            r.stats.numel = o.value("numel", shape_numel(r.stats.shape));
            r.stats.mean = get_num(o, "mean");
            r.stats.std = get_num(o, "std");
            r.stats.min = get_num(o, "min");
            r.stats.max = get_num(o, "max");
            r.stats.absmax = get_num(o, "absmax");
            r.stats.zeros = get_num(o, "zeros");
            r.stats.nan = o.value("nan", int64_t{0});
            r.stats.inf = o.value("inf", int64_t{0});
            r.causal = o.value("causal", false);
            if (o.contains("values") && o["values"].is_array())
                for (const auto& v : o["values"])
                    r.values.push_back(v.is_null() ? std::numeric_limits<float>::quiet_NaN() : v.get<float>());
            t.records.push_back(std::move(r));
        }
    } catch (const nlohmann::json::exception& e) {
        throw Error("[trace diff] '" + path + "': malformed record: " + e.what());
    }
    if (j.contains("meta") && j["meta"].is_object()) t.title = j["meta"].value("title", "");
    return t;
}

}  // namespace lmscope
