// Health rules (see rules.h). Each record is checked in arrival order; a tensor with NaN/Inf or one
// that is entirely zero gets that finding only (its other statistics would repeat the same story).
#include "trace/rules.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace lmscope {

const char* severity_name(Severity s) {
    switch (s) {
        case Severity::Info: return "info";
        case Severity::Warn: return "warn";
        case Severity::Error: return "error";
    }
    return "?";
}

const std::vector<std::pair<std::string, std::string>>& rule_catalog() {
    static const std::vector<std::pair<std::string, std::string>> c = {
        {"nonfinite", "NaN or Inf anywhere (error); the first tensor in forward order is where it starts"},
        {"all_zero", "a forward tensor exactly zero (error, or info when zero-initialised projections explain it)"},
        {"zero_grad", "a gradient exactly zero (error, or info when zero-initialised projections explain it)"},
        {"constant_tensor", "every element equal but not zero (warn): degenerate weight or input"},
        {"activation_absmax", "|x| >= activation.absmax_error anywhere (error): exploding values"},
        {"qkv_mean", "Q/K/V |mean| > qkv.mean_abs_warn (warn)"},
        {"qkv_std", "Q/K/V std ~ 0 (degenerate, error) or >> 10 (exploding, warn/error)"},
        {"qkv_std_range", "Q/K/V std outside the typical [qkv.std_low, qkv.std_high] (info)"},
        {"qkv_absmax", "Q/K/V |x| > qkv.absmax_warn (warn) or >= qkv.absmax_error (error)"},
        {"scores_std", "attention scores std ~ 0 (uniform attention, error) or > scores.std_warn (warn)"},
        {"scores_range", "attention scores spread max-min >= scores.range_warn/error: softmax saturation"},
        {"softmax_saturation", "max attention probability >= probs.saturated_prob on nearly every row (warn)"},
        {"dead_relu", "fraction of exact zeros after ReLU^2 > relu.dead_fraction_warn (warn)"},
        {"logit_softcap", "many logits pinned at the soft-cap (warn/error)"},
        {"loss_flat", "loss identical to loss.flat_decimals decimals for >= loss.flat_iterations iterations (error)"},
        {"loss_init", "loss at the first iteration vs ln(vocab): ~equal is expected (info), far above warns"},
        {"loss_trend", "loss over the iterations: went down (info) or up (warn)"},
    };
    return c;
}

namespace {

struct Threshold {
    const char* key;
    double value;
    const char* meaning;
};

const Threshold kDefaults[] = {
    {"qkv.mean_abs_warn", 10, "Q/K/V: |mean| above this warns (healthy ~0)"},
    {"qkv.std_low", 0.5, "Q/K/V: typical std lower bound (info below)"},
    {"qkv.std_high", 2, "Q/K/V: typical std upper bound (info above)"},
    {"qkv.std_degenerate", 1e-6, "Q/K/V: std at or below this is degenerate (error)"},
    {"qkv.std_exploding_warn", 10, "Q/K/V: std above this is exploding (warn)"},
    {"qkv.std_exploding_error", 100, "Q/K/V: std above this is exploding (error)"},
    {"qkv.absmax_warn", 10, "Q/K/V: |x| above this warns (healthy within +-10)"},
    {"qkv.absmax_error", 1e5, "Q/K/V: |x| at or above this is an error (numerically unstable)"},
    {"scores.std_degenerate", 1e-6, "scores: std at or below this means uniform attention (error)"},
    {"scores.std_warn", 10, "scores: std above this warns (healthy ~1 thanks to 1/sqrt(d))"},
    {"scores.range_warn", 100, "scores: max-min spread at or above this warns (healthy about +-5)"},
    {"scores.range_error", 1000, "scores: max-min spread at or above this is an error (softmax one-hot)"},
    {"probs.saturated_prob", 0.99, "attention probs: a row is saturated when its max prob is at least this"},
    {"probs.min_keys", 8, "attention probs: only rows with at least this many keys are counted"},
    {"probs.saturated_rows_warn", 0.9, "attention probs: warn when this fraction of rows is saturated"},
    {"relu.dead_fraction_warn", 0.9, "ReLU^2 output: warn when this fraction is exactly zero (healthy ~0.5)"},
    {"logits.pinned_margin", 0.01, "logits: within this fraction of the soft-cap counts as pinned"},
    {"logits.pinned_fraction_warn", 0.01, "logits: warn when this fraction of entries is pinned"},
    {"logits.pinned_fraction_error", 0.5, "logits: error when this fraction of entries is pinned"},
    {"loss.flat_decimals", 6, "loss: decimals compared for the flat-loss rule"},
    {"loss.flat_iterations", 3, "loss: this many consecutive identical losses is an error"},
    {"loss.init_rel_tol", 0.05, "loss: first loss within this relative distance of ln(vocab) is expected"},
    {"loss.init_high_factor", 1.5, "loss: first loss above this many times ln(vocab) warns"},
    {"activation.absmax_error", 1e5, "any tensor: |x| at or above this is an error"},
};

Severity parse_severity(const std::string& s, const std::string& label) {
    if (s == "info") return Severity::Info;
    if (s == "warn" || s == "warning") return Severity::Warn;
    if (s == "error") return Severity::Error;
    throw UsageError(fmt::format("{}: severity '{}' is not one of info, warn, error", label, s));
}

void flatten(const nlohmann::json& j, const std::string& prefix, std::map<std::string, nlohmann::json>& out) {
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string key = prefix.empty() ? it.key() : prefix + "." + it.key();
        if (it->is_object())
            flatten(*it, key, out);
        else
            out[key] = *it;
    }
}

bool ends_with(const std::string& s, const std::string& suf) {
    return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}
bool starts_with(const std::string& s, const std::string& pre) { return s.rfind(pre, 0) == 0; }

std::string last_component(const std::string& name) {
    const size_t p = name.rfind('.');
    return p == std::string::npos ? name : name.substr(p + 1);
}

// "transformer.h.3.attn.c_proj" -> true when it is inside block i's attention or MLP branch
bool in_gpt_branch(const std::string& rest) {
    // rest: after "grad.transformer.h."
    const size_t dot = rest.find('.');
    if (dot == std::string::npos) return false;
    const std::string tail = rest.substr(dot + 1);
    if (starts_with(tail, "attn_norm") || starts_with(tail, "mlp_norm")) return true;
    if (!starts_with(tail, "attn.") && !starts_with(tail, "mlp.")) return false;
    return !ends_with(tail, ".c_proj") && !ends_with(tail, ".c_proj.weight");
}

std::string fmt_num(double v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    const double a = std::fabs(v);
    if (a != 0 && (a >= 1e5 || a < 1e-3)) return fmt::format("{:.3e}", v);
    return fmt::format("{:.6g}", v);
}

// Likely cause of an all-zero forward tensor, from the step that produced it.
std::string zero_cause(const std::string& name) {
    const std::string last = last_component(name);
    if (name == "logits" || name == "lm_head")
        return "the lm_head weight is zero (zero-initialised and never updated, or a zeroed checkpoint tensor)";
    if (ends_with(last, "norm") || ends_with(last, "layernorm") || last == "norm_f")
        return "the norm's weight is zero, or its input is zero";
    if (ends_with(last, "_proj") || starts_with(last, "c_") || last == "o_proj")
        return "the projection's weight is all zero (a zeroed or never-trained tensor), or its input is zero";
    if (last == "act" || last == "relu2")
        return "the activation's input is zero (the projection feeding it has a zero weight)";
    return "the weights that produce it are zero, or its input is zero; look at the first all-zero tensor above it";
}

class Evaluator {
public:
    Evaluator(const TraceRecorder& rec, const RuleConfig& cfg) : rec_(rec), cfg_(cfg) {}

    std::vector<Finding> run() {
        for (const TraceRecord& r : rec_.records()) check(r);
        check_losses();
        return std::move(out_);
    }

private:
    void emit(const std::string& rule, Severity sev, const TraceRecord* r, const std::string& tensor, double value,
              std::string message, int iteration = 0, Phase phase = Phase::Forward) {
        if (!cfg_.enabled(rule)) return;
        auto so = cfg_.severity_override.find(rule);
        if (so != cfg_.severity_override.end()) sev = so->second;
        Finding f;
        f.rule = rule;
        f.severity = sev;
        f.tensor = tensor;
        f.phase = r ? r->phase : phase;
        f.iteration = r ? r->iteration : iteration;
        f.value = value;
        f.message = std::move(message);
        out_.push_back(std::move(f));
    }

    double th(const char* k) const { return cfg_.get(k); }

    void check(const TraceRecord& r) {
        const TensorStats& s = r.stats;
        const std::string& n = r.name;
        const bool fwd = r.phase == Phase::Forward;
        if (s.has_nonfinite()) {
            auto key = std::make_pair(static_cast<int>(r.phase), r.iteration);
            auto it = first_nonfinite_.find(key);
            std::string msg = fmt::format("{} NaN and {} Inf of {} values", s.nan, s.inf, s.numel);
            if (it == first_nonfinite_.end()) {
                first_nonfinite_[key] = n;
                msg += fwd ? ": the first non-finite tensor in forward order, so the cause is this step: a NaN/Inf "
                             "in the weights it uses (check them with `lmscope inspect`) or an overflow"
                           : ": the first non-finite gradient: an overflow in the backward pass, or a NaN loss";
            } else {
                msg += "; propagated from " + it->second;
            }
            emit("nonfinite", Severity::Error, &r, n, static_cast<double>(s.nan + s.inf), msg);
            return;
        }
        if (s.all_zero()) {
            const std::string why = expected_zero_reason(rec_.meta(), n, r.phase, r.iteration);
            const char* rule = fwd ? "all_zero" : "zero_grad";
            if (!why.empty()) {
                emit(rule, Severity::Info, &r, n, 0.0, "exactly zero, as expected: " + why);
            } else if (fwd) {
                emit(rule, Severity::Error, &r, n, 0.0, "every value is exactly 0: " + zero_cause(n));
            } else {
                emit(rule, Severity::Error, &r, n, 0.0,
                     "the gradient is exactly 0: this parameter/activation gets no learning signal (detached "
                     "graph, a zero weight downstream, or a frozen/unused parameter)");
            }
            return;
        }
        if (std::isfinite(s.absmax) && s.absmax >= th("activation.absmax_error") && !(fwd && is_qkv_name(n)))
            emit("activation_absmax", Severity::Error, &r, n, s.absmax,
                 fmt::format("|x| reaches {} (>= {}): {}", fmt_num(s.absmax), fmt_num(th("activation.absmax_error")),
                             fwd ? "exploding activations (a weight scaled up, or a missing normalisation); this "
                                   "overflows fp16 and loses precision in bf16"
                                 : "exploding gradients (learning rate too high or no gradient clipping)"));
        if (fwd && s.numel > 1 && s.finite > 1 && s.std == 0 && !is_attention_matrix_name(n))
            emit("constant_tensor", Severity::Warn, &r, n, s.mean,
                 fmt::format("every element equals {}: a degenerate (constant) weight or input", fmt_num(s.mean)));
        if (!fwd) return;
        if (is_qkv_name(n)) check_qkv(r);
        if (ends_with(n, ".scores")) check_scores(r);
        if (is_attention_matrix_name(n) && r.extra.count("saturated_rows")) check_probs(r);
        const std::string last = last_component(n);
        if ((last == "relu2" || last == "relu") && s.zeros > th("relu.dead_fraction_warn"))
            emit("dead_relu", Severity::Warn, &r, n, s.zeros,
                 fmt::format("{:.1f}% of ReLU^2 outputs are exactly 0 (healthy ~50%): dead units; the c_fc "
                             "pre-activations are mostly negative (learning rate too high, or a bad init)",
                             100 * s.zeros));
        if (n == "logits" && r.extra.count("pinned_fraction")) {
            const double pf = r.extra.at("pinned_fraction");
            const double cap = rec_.meta().logit_softcap;
            if (pf >= th("logits.pinned_fraction_warn"))
                emit("logit_softcap", pf >= th("logits.pinned_fraction_error") ? Severity::Error : Severity::Warn, &r, n,
                     pf,
                     fmt::format("{:.2f}% of logits are within {:.0f}% of the soft-cap +-{}: the pre-cap logits are "
                                 "huge, so the cap saturates and its gradient vanishes (lm_head or final-norm scale "
                                 "exploding, learning rate too high)",
                                 100 * pf, 100 * th("logits.pinned_margin"), fmt_num(cap)));
        }
    }

    void check_qkv(const TraceRecord& r) {
        const TensorStats& s = r.stats;
        const std::string& n = r.name;
        if (std::fabs(s.mean) > th("qkv.mean_abs_warn"))
            emit("qkv_mean", Severity::Warn, &r, n, s.mean,
                 fmt::format("mean {} (healthy ~0, |mean| <= {}): a large bias or a shifted input; values may be "
                             "blowing up",
                             fmt_num(s.mean), fmt_num(th("qkv.mean_abs_warn"))));
        if (s.std <= th("qkv.std_degenerate"))
            emit("qkv_std", Severity::Error, &r, n, s.std,
                 fmt::format("std {} ~ 0: the tensor is nearly constant, so attention degenerates (a zeroed or "
                             "collapsed projection weight)",
                             fmt_num(s.std)));
        else if (s.std > th("qkv.std_exploding_warn"))
            emit("qkv_std", s.std > th("qkv.std_exploding_error") ? Severity::Error : Severity::Warn, &r, n, s.std,
                 fmt::format("std {} >> healthy 0.5-2: exploding values (the projection weight is scaled up, or "
                             "the input is not normalised)",
                             fmt_num(s.std)));
        else if (s.std < th("qkv.std_low") || s.std > th("qkv.std_high"))
            emit("qkv_std_range", Severity::Info, &r, n, s.std,
                 fmt::format("std {} outside the typical {}-{} (fine for small or freshly initialised models; "
                             "watch it across layers)",
                             fmt_num(s.std), fmt_num(th("qkv.std_low")), fmt_num(th("qkv.std_high"))));
        if (s.absmax >= th("qkv.absmax_error"))
            emit("qkv_absmax", Severity::Error, &r, n, s.absmax,
                 fmt::format("|x| reaches {} (>= {}): numerically unstable", fmt_num(s.absmax),
                             fmt_num(th("qkv.absmax_error"))));
        else if (s.absmax > th("qkv.absmax_warn"))
            emit("qkv_absmax", Severity::Warn, &r, n, s.absmax,
                 fmt::format("|x| reaches {} (healthy within +-{}): outliers that sharpen attention", fmt_num(s.absmax),
                             fmt_num(th("qkv.absmax_warn"))));
    }

    void check_scores(const TraceRecord& r) {
        const TensorStats& s = r.stats;
        const double spread = s.max - s.min;
        if (s.finite > 1 && s.std <= th("scores.std_degenerate"))
            emit("scores_std", Severity::Error, &r, r.name, s.std,
                 "std ~ 0: every score is equal, so attention is uniform over the keys (Q or K zero or constant)");
        else if (s.std > th("scores.std_warn"))
            emit("scores_std", Severity::Warn, &r, r.name, s.std,
                 fmt::format("std {} (healthy ~1 thanks to the 1/sqrt(head_dim) scale): scores too large, softmax "
                             "becomes one-hot (Q/K scale exploding, missing QK-norm or wrong scale)",
                             fmt_num(s.std)));
        if (spread >= th("scores.range_warn"))
            emit("scores_range", spread >= th("scores.range_error") ? Severity::Error : Severity::Warn, &r, r.name,
                 spread,
                 fmt::format("scores span [{}, {}] (healthy about +-5): softmax saturates and each query attends to "
                             "one key",
                             fmt_num(s.min), fmt_num(s.max)));
    }

    void check_probs(const TraceRecord& r) {
        const double frac = r.extra.at("saturated_rows");
        if (r.extra.at("rows") > 0 && frac >= th("probs.saturated_rows_warn"))
            emit("softmax_saturation", Severity::Warn, &r, r.name, frac,
                 fmt::format("{:.1f}% of rows (with >= {} keys) put >= {} of their attention on one key: softmax "
                             "saturated, attention has collapsed to one token",
                             100 * frac, static_cast<int64_t>(th("probs.min_keys")), fmt_num(th("probs.saturated_prob"))));
    }

    void check_losses() {
        std::vector<LossPoint> pts = rec_.losses();
        if (pts.empty()) return;
        std::sort(pts.begin(), pts.end(), [](const LossPoint& a, const LossPoint& b) { return a.iteration < b.iteration; });
        bool has_loss_record = false;
        for (const TraceRecord& r : rec_.records()) has_loss_record |= r.name == "loss";
        for (const LossPoint& p : pts)
            if (!std::isfinite(p.loss) && !has_loss_record)
                emit("nonfinite", Severity::Error, nullptr, "loss", p.loss, "the loss is not finite", p.iteration);
        // flat: the longest run of losses equal to `decimals` decimals
        const double scale = std::pow(10.0, th("loss.flat_decimals"));
        size_t run_start = 0;
        bool flat_fired = false;
        for (size_t i = 1; i <= pts.size(); ++i) {
            const bool same = i < pts.size() && std::isfinite(pts[i].loss) &&
                              std::llround(pts[i].loss * scale) == std::llround(pts[run_start].loss * scale);
            if (same) continue;
            const size_t len = i - run_start;
            if (len >= static_cast<size_t>(th("loss.flat_iterations")) && !flat_fired) {
                flat_fired = true;
                emit("loss_flat", Severity::Error, nullptr, "loss", pts[run_start].loss,
                     fmt::format("loss {:.6f} is identical (to {} decimals) for {} iterations ({}..{}): the parameters "
                                 "are not changing: no optimiser step, a zero learning rate, or gradients that never "
                                 "reach the parameters",
                                 pts[run_start].loss, static_cast<int>(th("loss.flat_decimals")), len,
                                 pts[run_start].iteration, pts[i - 1].iteration),
                     pts[i - 1].iteration);
            }
            run_start = i;
        }
        const TraceMeta& m = rec_.meta();
        const LossPoint& first = pts.front();
        if (m.vocab_size > 1 && std::isfinite(first.loss)) {
            const double lnv = std::log(static_cast<double>(m.vocab_size));
            if (std::fabs(first.loss - lnv) <= th("loss.init_rel_tol") * lnv)
                emit("loss_init", Severity::Info, nullptr, "loss", first.loss,
                     fmt::format("first loss {:.6f} ~ ln(vocab {}) = {:.6f}: expected at step 0, the model starts "
                                 "with uniform predictions{}",
                                 first.loss, m.vocab_size, lnv,
                                 m.zero_init_projections ? " (lm_head is zero-initialised, so every logit is 0)" : ""),
                     first.iteration);
            else if (first.loss > th("loss.init_high_factor") * lnv)
                emit("loss_init", Severity::Warn, nullptr, "loss", first.loss,
                     fmt::format("first loss {:.6f} is far above ln(vocab) = {:.6f}: the initial logits are large and "
                                 "confidently wrong (init scale too large)",
                                 first.loss, lnv),
                     first.iteration);
        }
        if (pts.size() >= 2 && !flat_fired && std::isfinite(pts.back().loss) && std::isfinite(first.loss)) {
            const LossPoint& last = pts.back();
            if (last.loss < first.loss)
                emit("loss_trend", Severity::Info, nullptr, "loss", last.loss,
                     fmt::format("loss went down from {:.6f} (iteration {}) to {:.6f} (iteration {})", first.loss,
                                 first.iteration, last.loss, last.iteration),
                     last.iteration);
            else
                emit("loss_trend", Severity::Warn, nullptr, "loss", last.loss,
                     fmt::format("loss went up from {:.6f} (iteration {}) to {:.6f} (iteration {}): learning rate "
                                 "too high, or the updates have the wrong sign",
                                 first.loss, first.iteration, last.loss, last.iteration),
                     last.iteration);
        }
    }

    const TraceRecorder& rec_;
    const RuleConfig& cfg_;
    std::vector<Finding> out_;
    std::map<std::pair<int, int>, std::string> first_nonfinite_;
};

}  // namespace

bool is_qkv_name(const std::string& name) {
    static const char* kLast[] = {"q_proj", "k_proj", "v_proj", "q_norm", "k_norm", "q_rope", "k_rope", "c_q", "c_k", "c_v"};
    if (starts_with(name, "grad.")) return false;
    const std::string last = last_component(name);
    for (const char* k : kLast)
        if (last == k) return name.find("attn") != std::string::npos;
    return false;
}

double RuleConfig::get(const std::string& key) const {
    auto it = values.find(key);
    LMS_CHECK(it != values.end());
    return it->second;
}

RuleConfig default_rules() {
    RuleConfig c;
    for (const Threshold& t : kDefaults) {
        c.values[t.key] = t.value;
        c.descriptions[t.key] = t.meaning;
    }
    return c;
}

void apply_rules_json(RuleConfig& cfg, const std::string& text, const std::string& label) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        throw UsageError(fmt::format("{}: not valid JSON: {}", label, e.what()));
    }
    if (!j.is_object()) throw UsageError(label + ": a rules file is a JSON object of threshold keys");
    auto known_rule = [](const std::string& id) {
        for (const auto& [r, d] : rule_catalog())
            if (r == id) return true;
        return false;
    };
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& k = it.key();
        if (k == "disable") {
            if (!it->is_array()) throw UsageError(label + ": \"disable\" must be a list of rule ids");
            for (const auto& id : *it) {
                if (!id.is_string() || !known_rule(id.get<std::string>()))
                    throw UsageError(fmt::format("{}: \"disable\": unknown rule {}", label, id.dump()));
                cfg.disabled.insert(id.get<std::string>());
            }
        } else if (k == "severity") {
            if (!it->is_object()) throw UsageError(label + ": \"severity\" must map rule ids to info/warn/error");
            for (auto s = it->begin(); s != it->end(); ++s) {
                if (!known_rule(s.key())) throw UsageError(fmt::format("{}: \"severity\": unknown rule '{}'", label, s.key()));
                if (!s->is_string()) throw UsageError(fmt::format("{}: severity of '{}' must be a string", label, s.key()));
                cfg.severity_override[s.key()] = parse_severity(s->get<std::string>(), label);
            }
        } else if (!k.empty() && (k[0] == '$' || k[0] == '_')) {
            continue;  // "$comment", "$rules" (the catalog --print-rules writes): documentation only
        } else {
            std::map<std::string, nlohmann::json> flat;
            if (it->is_object())
                flatten(*it, k, flat);
            else
                flat[k] = *it;
            for (const auto& [key, v] : flat) {
                if (!cfg.values.count(key)) {
                    std::string known;
                    for (const auto& [kk, vv] : cfg.values) known += (known.empty() ? "" : ", ") + kk;
                    throw UsageError(fmt::format("{}: unknown threshold '{}' (known: {}, disable, severity)", label,
                                                 key, known));
                }
                if (!v.is_number())
                    throw UsageError(fmt::format("{}: threshold '{}' must be a number, got {}", label, key, v.dump()));
                cfg.values[key] = v.get<double>();
            }
        }
    }
}

RuleConfig load_rules(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw UsageError("trace: cannot read rules file '" + path + "'");
    std::stringstream ss;
    ss << in.rdbuf();
    RuleConfig c = default_rules();
    apply_rules_json(c, ss.str(), path);
    return c;
}

std::string rules_to_json(const RuleConfig& cfg) {
    nlohmann::ordered_json j;
    j["$comment"] = "lmscope trace rules: override any subset with --rules FILE";
    for (const auto& [k, v] : cfg.values) j[k] = v;
    j["disable"] = std::vector<std::string>(cfg.disabled.begin(), cfg.disabled.end());
    nlohmann::ordered_json sev = nlohmann::ordered_json::object();
    for (const auto& [k, v] : cfg.severity_override) sev[k] = severity_name(v);
    j["severity"] = sev;
    nlohmann::ordered_json rules;
    for (const auto& [id, d] : rule_catalog()) rules[id] = d;
    j["$rules"] = rules;
    return j.dump(2) + "\n";
}

std::string expected_zero_reason(const TraceMeta& meta, const std::string& name, Phase phase, int iteration) {
    if (!meta.zero_init_projections) return "";
    const bool cproj = starts_with(name, "transformer.h.") &&
                       (ends_with(name, ".attn.c_proj") || ends_with(name, ".mlp.c_proj"));
    if (phase == Phase::Forward) {
        if (iteration == 0 && cproj)
            return "c_proj weights are zero-initialised (nanochat init), so the branch adds nothing to the residual "
                   "stream at step 0";
        if (iteration == 1 && cproj)
            return "c_proj weights are still zero at step 1: they received no gradient at step 0 because lm_head "
                   "was zero too";
        if (iteration == 0 && (name == "lm_head" || name == "logits"))
            return "lm_head is zero-initialised (nanochat init): every logit is 0 and the loss is ln(vocab) at step 0";
        return "";
    }
    if (!starts_with(name, "grad.")) return "";
    if (iteration == 0 && !starts_with(name, "grad.lm_head") && !starts_with(name, "grad.logits") &&
        !starts_with(name, "grad.loss"))
        return "at step 0 lm_head is zero-initialised, so no gradient flows below it: every gradient except "
               "lm_head's is exactly 0 (e.g. the wte gradient)";
    if (iteration == 1 && starts_with(name, "grad.transformer.h.") && in_gpt_branch(name.substr(19)))
        return "c_proj weights are still zero at step 1 (no gradient reached them at step 0), so no gradient enters "
               "the attention/MLP branch behind them yet";
    return "";
}

FindingCounts count_findings(const std::vector<Finding>& f) {
    FindingCounts c;
    for (const Finding& x : f) {
        if (x.severity == Severity::Error) ++c.error;
        else if (x.severity == Severity::Warn) ++c.warn;
        else ++c.info;
    }
    return c;
}

std::vector<Finding> evaluate_rules(const TraceRecorder& rec, const RuleConfig& cfg) { return Evaluator(rec, cfg).run(); }

}  // namespace lmscope
