// TraceRecorder: the TensorObserver behind `lmscope trace`. It keeps float64 statistics (stats.h) of
// every tensor whose name passes the filter, tagged with the phase (forward/backward) and iteration
// the caller sets, plus the losses a trainer reports and, on request, a few tensors' full values.
// A model run without a recorder passes a null observer and pays nothing.
//
// Names: the HF decoder shows model.embed_tokens, model.layers.{l}.<step>, model.norm, logits
// (decoder.cpp); the GPT trainer shows transformer.*, lm_head, logits, loss and grad.<name> in the
// backward pass. A name starting with "grad." is always recorded as backward.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "trace/observer.h"
#include "trace/stats.h"

namespace lmscope {

enum class Phase { Forward, Backward };
const char* phase_name(Phase p);

struct TraceRecord {
    std::string name;
    Phase phase = Phase::Forward;
    int iteration = 0;
    int64_t seq = 0;     // order of arrival: forward order within an iteration
    TensorStats stats;
    bool causal = false;  // attention scores/probs: stats cover the unmasked (j <= t) entries only
    std::map<std::string, double> extra;  // derived values some rules read (see recorder.cpp)
    std::vector<float> values;            // full values when kept (RecorderOptions::keep_values)
};

struct LossPoint {
    int iteration = 0;
    double loss = 0;
};

/** What was traced, for the reports' headers and for rules that depend on the model. */
struct TraceMeta {
    std::string kind = "hf";  // "hf": Qwen3/Qwen2/Llama decoder; "gpt": nanochat-style GPT trainer
    std::string title;        // model folder or configuration line
    std::string architecture;
    std::string generated;    // local time stamp
    std::vector<std::pair<std::string, std::string>> facts;  // extra header lines (config values)
    int64_t batch = 1, seq_len = 0, vocab_size = 0, hidden = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0,
            intermediate = 0;
    bool qk_norm = false;
    bool tied_embeddings = false;
    double rope_theta = 0;
    int weight_bytes = 4;                // bytes per stored parameter (2 for a bf16 checkpoint)
    bool qkv_bias = false;
    double logit_softcap = 0;            // 0: none (HF); nanochat: 15
    bool zero_init_projections = false;  // nanochat init: c_proj weights and lm_head start at 0
    int iterations = 1;
    std::vector<int32_t> input_ids;
    std::string prompt;
    std::vector<std::string> filters;
};

/**
 * Name filter: each pattern is a glob (* ?), or a regex when written `re:<ECMAScript regex>`
 * (searched anywhere in the name). A pattern without glob characters also matches as a dotted
 * component: `model.layers.3` matches model.layers.3 and model.layers.3.*, `scores` matches *.scores.
 * A leading `!` excludes. Empty list, or only exclusions: everything not excluded.
 */
class NameFilter {
public:
    NameFilter() = default;
    /** UsageError on an invalid regex. */
    explicit NameFilter(const std::vector<std::string>& patterns);
    bool matches(const std::string& name) const;

private:
    struct Pat {
        std::string text;
        bool exclude = false;
        bool plain = false;
        std::shared_ptr<std::regex> re;
    };
    static bool pat_matches(const Pat& p, const std::string& name);
    std::vector<Pat> include_, exclude_;
};

/** Shell-style glob match of the whole string (* any run, ? one char). */
bool glob_match(const std::string& pattern, const std::string& s);

struct RecorderOptions {
    std::vector<std::string> filters;        // --filter
    std::vector<std::string> keep_values;    // --save-values: patterns of tensors kept in full
    int64_t max_kept_elements = 1 << 20;     // larger tensors are not kept (stats only)
    // attention probabilities: a row is saturated when its max prob >= saturated_prob; only rows
    // with at least min_keys keys count (a row with one key is trivially 1)
    double saturated_prob = 0.99;
    int64_t min_keys = 8;
    double pinned_margin = 0.01;  // logits within this fraction of the soft-cap count as pinned
};

class TraceRecorder : public TensorObserver {
public:
    explicit TraceRecorder(RecorderOptions opt = {});

    bool wants(const std::string& name) const override;
    void observe(const std::string& name, const float* data, const Shape& shape) override;
    void observe_causal(const std::string& name, const float* data, const Shape& shape, int64_t pos0) override;

    /** The trainer's position: records that follow carry this phase and iteration. */
    void set_phase(Phase p) { phase_ = p; }
    void set_iteration(int it) { iteration_ = it; }
    Phase phase() const { return phase_; }
    int iteration() const { return iteration_; }
    /** A training loss; a `loss` tensor of one element observed in the forward phase is added too. */
    void record_loss(int iteration, double loss);
    /** Statistics computed elsewhere (e.g. integer token ids), recorded if the filter passes. */
    void record_stats(const std::string& name, const TensorStats& stats);
    void record_ids(const std::string& name, const int32_t* ids, int64_t n, const Shape& shape);

    TraceMeta& meta() { return meta_; }
    const TraceMeta& meta() const { return meta_; }
    const RecorderOptions& options() const { return opt_; }
    const std::vector<TraceRecord>& records() const { return records_; }
    const std::vector<LossPoint>& losses() const { return losses_; }
    /** The record (name, phase, iteration), or null. */
    const TraceRecord* find(const std::string& name, Phase phase, int iteration) const;
    /** The first record with this name (lowest iteration, forward before backward), or null. */
    const TraceRecord* find_first(const std::string& name) const;
    /** Adds a finished record (reports' tests, loading a trace back); seq is assigned here. */
    TraceRecord& add_record(TraceRecord r);

private:
    TraceRecord& new_record(const std::string& name);
    TraceRecord& record_causal(const std::string& name, const float* data, const Shape& shape, int64_t pos0);

    RecorderOptions opt_;
    NameFilter filter_, keep_;
    mutable std::unordered_map<std::string, bool> wants_cache_;
    Phase phase_ = Phase::Forward;
    int iteration_ = 0;
    TraceMeta meta_;
    std::vector<TraceRecord> records_;
    std::vector<LossPoint> losses_;
    std::map<std::tuple<std::string, int, int>, size_t> index_;
};

/** True for names of attention score / probability matrices (…scores, …attn_probs, …probs). */
bool is_attention_matrix_name(const std::string& name);

}  // namespace lmscope
