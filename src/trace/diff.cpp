// trace diff (see diff.h).
#include "trace/diff.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>

namespace lmscope {

namespace {

std::string rec_key(const std::string& name, Phase p, int it) { return fmt::format("{}|{}|{}", name, static_cast<int>(p), it); }

std::string label(const TraceRecord& r) { return fmt::format("{} [{} {}]", r.name, phase_name(r.phase), r.iteration); }

// |a - b| / scale with NaN handling: both NaN -> 0, one NaN -> inf.
double rel(double a, double b, double scale) {
    if (std::isnan(a) && std::isnan(b)) return 0;
    if (std::isnan(a) || std::isnan(b)) return INFINITY;
    if (a == b) return 0;
    if (!(scale > 0)) return INFINITY;
    return std::fabs(a - b) / scale;
}

std::string num(double v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    return fmt::format("{:.6g}", v);
}

}  // namespace

TensorDiff diff_records(const TraceRecord& a, const TraceRecord& b) {
    TensorDiff d;
    d.name = a.name;
    d.phase = a.phase;
    d.iteration = a.iteration;
    auto take = [&](const char* stat, double v, double va, double vb) {
        if (v > d.divergence || (std::isinf(v) && !std::isinf(d.divergence))) {
            d.divergence = v;
            d.stat = stat;
            d.a = va;
            d.b = vb;
        }
    };
    const TensorStats &x = a.stats, &y = b.stats;
    if (x.shape != y.shape) {
        take("shape", INFINITY, static_cast<double>(x.numel), static_cast<double>(y.numel));
        return d;
    }
    if (x.nan != y.nan) take("nan", INFINITY, static_cast<double>(x.nan), static_cast<double>(y.nan));
    if (x.inf != y.inf) take("inf", INFINITY, static_cast<double>(x.inf), static_cast<double>(y.inf));
    const double scale = std::max(std::isnan(x.absmax) ? 0.0 : x.absmax, std::isnan(y.absmax) ? 0.0 : y.absmax);
    take("mean", rel(x.mean, y.mean, scale), x.mean, y.mean);
    take("min", rel(x.min, y.min, scale), x.min, y.min);
    take("max", rel(x.max, y.max, scale), x.max, y.max);
    take("absmax", rel(x.absmax, y.absmax, scale), x.absmax, y.absmax);
    take("std", rel(x.std, y.std, std::max(std::isnan(x.std) ? 0.0 : x.std, std::isnan(y.std) ? 0.0 : y.std)), x.std,
         y.std);
    take("zeros", rel(x.zeros, y.zeros, 1.0), x.zeros, y.zeros);
    if (!a.values.empty() && a.values.size() == b.values.size()) {
        d.values_compared = true;
        double num2 = 0, na = 0, nb = 0;
        for (size_t i = 0; i < a.values.size(); ++i) {
            const double p = a.values[i], q = b.values[i];
            if (std::isnan(p) && std::isnan(q)) continue;
            num2 += (p - q) * (p - q);
            na += p * p;
            nb += q * q;
        }
        const double den = std::sqrt(std::max(na, nb));
        const double v = num2 == 0 ? 0 : (den > 0 ? std::sqrt(num2) / den : INFINITY);
        take("values", std::isnan(v) ? INFINITY : v, std::sqrt(na), std::sqrt(nb));
    }
    return d;
}

DiffResult diff_traces(const LoadedTrace& a, const LoadedTrace& b, const DiffOptions& opt) {
    DiffResult r;
    r.threshold = opt.threshold;
    std::map<std::string, const TraceRecord*> bi;
    for (const TraceRecord& x : b.records) bi[rec_key(x.name, x.phase, x.iteration)] = &x;
    std::map<std::string, bool> seen;
    for (const TraceRecord& x : a.records) {
        const std::string k = rec_key(x.name, x.phase, x.iteration);
        auto it = bi.find(k);
        if (it == bi.end()) {
            r.missing_in_b.push_back(label(x));
            continue;
        }
        seen[k] = true;
        r.aligned.push_back(diff_records(x, *it->second));
        if (!r.first && r.aligned.back().divergence > opt.threshold) r.first = r.aligned.size() - 1;
    }
    for (const TraceRecord& y : b.records)
        if (!seen.count(rec_key(y.name, y.phase, y.iteration))) r.extra_in_b.push_back(label(y));
    for (size_t i = 0; i < r.aligned.size(); ++i)
        if (r.aligned[i].divergence > opt.threshold) r.top.push_back(i);
    std::stable_sort(r.top.begin(), r.top.end(),
                     [&](size_t p, size_t q) { return r.aligned[p].divergence > r.aligned[q].divergence; });
    if (r.top.size() > opt.top) r.top.resize(opt.top);
    return r;
}

std::string diff_to_text(const DiffResult& d, const LoadedTrace& a, const LoadedTrace& b) {
    std::string o = fmt::format("trace diff: {} vs {} (threshold {})\n", a.path, b.path, num(d.threshold));
    o += fmt::format("aligned {} records; {} only in A, {} only in B\n", d.aligned.size(), d.missing_in_b.size(),
                     d.extra_in_b.size());
    if (!d.first) {
        o += fmt::format("no divergence beyond {} in the aligned records\n", num(d.threshold));
    } else {
        const TensorDiff& f = d.aligned[*d.first];
        o += fmt::format("first divergence: {} [{} {}]: {} {} (A {} vs B {})\n", f.name, phase_name(f.phase), f.iteration,
                         f.stat, num(f.divergence), num(f.a), num(f.b));
        o += "top divergences:\n";
        for (size_t i : d.top) {
            const TensorDiff& t = d.aligned[i];
            o += fmt::format("  {:>10}  {:<7} {} [{} {}]  A {} B {}\n", num(t.divergence), t.stat, t.name,
                             phase_name(t.phase), t.iteration, num(t.a), num(t.b));
        }
    }
    const size_t show = 20;
    auto list = [&](const char* what, const std::vector<std::string>& v) {
        if (v.empty()) return;
        o += fmt::format("{} ({}):\n", what, v.size());
        for (size_t i = 0; i < v.size() && i < show; ++i) o += "  " + v[i] + "\n";
        if (v.size() > show) o += fmt::format("  ... {} more\n", v.size() - show);
    };
    list("only in A (missing in B)", d.missing_in_b);
    list("only in B (extra)", d.extra_in_b);
    return o;
}

std::string diff_to_json(const DiffResult& d, const LoadedTrace& a, const LoadedTrace& b) {
    auto jn = [](double v) -> nlohmann::ordered_json {
        if (std::isnan(v)) return nullptr;
        if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
        return v;
    };
    auto one = [&](const TensorDiff& t) {
        nlohmann::ordered_json o;
        o["name"] = t.name;
        o["phase"] = phase_name(t.phase);
        o["iteration"] = t.iteration;
        o["divergence"] = jn(t.divergence);
        o["stat"] = t.stat;
        o["a"] = jn(t.a);
        o["b"] = jn(t.b);
        return o;
    };
    nlohmann::ordered_json j;
    j["a"] = a.path;
    j["b"] = b.path;
    j["threshold"] = d.threshold;
    j["aligned"] = d.aligned.size();
    j["diverged"] = d.first.has_value();
    j["first_divergence"] = d.first ? one(d.aligned[*d.first]) : nlohmann::ordered_json(nullptr);
    nlohmann::ordered_json top = nlohmann::ordered_json::array();
    for (size_t i : d.top) top.push_back(one(d.aligned[i]));
    j["top"] = top;
    nlohmann::ordered_json all = nlohmann::ordered_json::array();
    for (const TensorDiff& t : d.aligned) all.push_back(one(t));
    j["records"] = all;
    j["missing_in_b"] = d.missing_in_b;
    j["extra_in_b"] = d.extra_in_b;
    return j.dump(1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

}  // namespace lmscope
