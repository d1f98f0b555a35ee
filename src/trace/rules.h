// Health rules over a trace: each looks at records (and losses) and emits findings naming the rule,
// the severity, the tensor, the value that fired and the likely cause. Thresholds have built-in
// defaults (seed 001's healthy ranges for Q/K/V and attention scores, plus what seed 003's broken
// run teaches: zero outputs, zero gradients, a flat loss) and a JSON rules file overrides any subset:
//   {"qkv.std_low": 0.3, "scores.range_warn": 200, "disable": ["qkv_absmax"],
//    "severity": {"qkv_std_range": "warn"}}
// Nested objects are accepted too ({"qkv": {"std_low": 0.3}}). Unknown keys are a UsageError.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "trace/recorder.h"

namespace lmscope {

enum class Severity { Info = 0, Warn = 1, Error = 2 };
const char* severity_name(Severity s);

struct Finding {
    std::string rule;
    Severity severity = Severity::Info;
    std::string tensor;  // record name ("loss" for loss-curve rules)
    Phase phase = Phase::Forward;
    int iteration = 0;
    double value = 0;  // the statistic that fired
    std::string message;
};

struct RuleConfig {
    std::map<std::string, double> values;             // threshold key -> value
    std::map<std::string, std::string> descriptions;  // threshold key -> meaning
    std::set<std::string> disabled;                   // rule ids
    std::map<std::string, Severity> severity_override;

    double get(const std::string& key) const;
    bool enabled(const std::string& rule) const { return disabled.count(rule) == 0; }
};

/** The built-in thresholds. */
RuleConfig default_rules();
/** Defaults overridden by the JSON rules file at `path` (UsageError on unknown keys or bad values). */
RuleConfig load_rules(const std::string& path);
/** Applies a parsed rules document to `cfg`; `label` names it in errors. */
void apply_rules_json(RuleConfig& cfg, const std::string& text, const std::string& label);
/** The configuration as a rules file (thresholds with their meaning), for --print-rules. */
std::string rules_to_json(const RuleConfig& cfg);
/** Every rule id with a one-line description. */
const std::vector<std::pair<std::string, std::string>>& rule_catalog();

/** Evaluates every enabled rule; findings in record order, loss rules last. */
std::vector<Finding> evaluate_rules(const TraceRecorder& rec, const RuleConfig& cfg);

/** Why an all-zero tensor is expected (nanochat zero-init at the first steps), or "" when it is not. */
std::string expected_zero_reason(const TraceMeta& meta, const std::string& name, Phase phase, int iteration);

/** Counts per severity. */
struct FindingCounts {
    int info = 0, warn = 0, error = 0;
};
FindingCounts count_findings(const std::vector<Finding>& f);

/** Q/K/V projections and their normed/rotated forms (HF and GPT names). */
bool is_qkv_name(const std::string& name);

}  // namespace lmscope
