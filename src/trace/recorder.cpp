// TraceRecorder and NameFilter (see recorder.h).
// Extras computed here for the rules:
//   attention probabilities: "saturated_rows" (fraction of rows with >= min_keys keys whose max prob
//     >= saturated_prob), "rows" (how many rows counted), "row_max_mean";
//   logits with a soft-cap (meta.logit_softcap > 0): "pinned_fraction" (|x| >= (1-margin) cap);
//   any tensor: nothing else (the rules read TensorStats).
#include "trace/recorder.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace lmscope {

const char* phase_name(Phase p) { return p == Phase::Forward ? "forward" : "backward"; }

bool glob_match(const std::string& p, const std::string& s) {
    // iterative matcher with backtracking to the last '*'
    size_t pi = 0, si = 0, star = std::string::npos, mark = 0;
    while (si < s.size()) {
        if (pi < p.size() && (p[pi] == '?' || p[pi] == s[si])) {
            ++pi;
            ++si;
        } else if (pi < p.size() && p[pi] == '*') {
            star = pi++;
            mark = si;
        } else if (star != std::string::npos) {
            pi = star + 1;
            si = ++mark;
        } else {
            return false;
        }
    }
    while (pi < p.size() && p[pi] == '*') ++pi;
    return pi == p.size();
}

NameFilter::NameFilter(const std::vector<std::string>& patterns) {
    for (const std::string& raw : patterns) {
        if (raw.empty()) continue;
        Pat p;
        std::string t = raw;
        if (t[0] == '!') {
            p.exclude = true;
            t = t.substr(1);
        }
        if (t.rfind("re:", 0) == 0) {
            try {
                p.re = std::make_shared<std::regex>(t.substr(3), std::regex::ECMAScript);
            } catch (const std::regex_error& e) {
                throw UsageError("trace: --filter '" + raw + "' is not a valid regex: " + e.what());
            }
        } else {
            p.plain = t.find_first_of("*?") == std::string::npos;
        }
        p.text = t;
        (p.exclude ? exclude_ : include_).push_back(std::move(p));
    }
}

bool NameFilter::pat_matches(const Pat& p, const std::string& name) {
    if (p.re) return std::regex_search(name, *p.re);
    if (!p.plain) return glob_match(p.text, name);
    if (name == p.text) return true;
    if (name.size() > p.text.size() && name.compare(0, p.text.size(), p.text) == 0 && name[p.text.size()] == '.')
        return true;
    return name.size() > p.text.size() && name[name.size() - p.text.size() - 1] == '.' &&
           name.compare(name.size() - p.text.size(), p.text.size(), p.text) == 0;
}

bool NameFilter::matches(const std::string& name) const {
    for (const Pat& p : exclude_)
        if (pat_matches(p, name)) return false;
    if (include_.empty()) return true;
    for (const Pat& p : include_)
        if (pat_matches(p, name)) return true;
    return false;
}

bool is_attention_matrix_name(const std::string& name) {
    auto ends = [&](const std::string& suf) {
        return name.size() >= suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0;
    };
    return ends(".scores") || ends("attn_probs") || ends(".probs");
}

namespace {

bool is_probs_name(const std::string& name) { return is_attention_matrix_name(name) && name.find("scores") == std::string::npos; }

}  // namespace

TraceRecorder::TraceRecorder(RecorderOptions opt)
    : opt_(std::move(opt)), filter_(opt_.filters), keep_(opt_.keep_values) {
    meta_.filters = opt_.filters;
}

bool TraceRecorder::wants(const std::string& name) const {
    auto it = wants_cache_.find(name);
    if (it != wants_cache_.end()) return it->second;
    const bool w = filter_.matches(name);
    wants_cache_.emplace(name, w);
    return w;
}

TraceRecord& TraceRecorder::new_record(const std::string& name) {
    TraceRecord r;
    r.name = name;
    r.phase = name.rfind("grad.", 0) == 0 ? Phase::Backward : phase_;
    r.iteration = iteration_;
    return add_record(std::move(r));
}

TraceRecord& TraceRecorder::add_record(TraceRecord r) {
    const auto key = std::make_tuple(r.name, static_cast<int>(r.phase), r.iteration);
    auto it = index_.find(key);
    if (it != index_.end()) {  // the same tensor shown twice in one pass: the latest replaces it in place
        r.seq = records_[it->second].seq;
        records_[it->second] = std::move(r);
        return records_[it->second];
    }
    r.seq = static_cast<int64_t>(records_.size());
    index_[key] = records_.size();
    records_.push_back(std::move(r));
    return records_.back();
}

void TraceRecorder::observe(const std::string& name, const float* data, const Shape& shape) {
    // Attention matrices shown as full (.., T, S) blocks: only the causal entries are the tensor
    // (masked entries may hold 0 or -inf depending on the producer).
    if (is_attention_matrix_name(name) && shape.size() >= 2 && shape.back() >= shape[shape.size() - 2]) {
        Shape s4 = shape;
        int64_t lead = 1;
        for (size_t i = 0; i + 2 < shape.size(); ++i) lead *= shape[i];
        s4 = {1, lead, shape[shape.size() - 2], shape.back()};
        record_causal(name, data, s4, shape.back() - shape[shape.size() - 2]).stats.shape = shape;
        return;
    }
    const int64_t n = shape_numel(shape);
    TraceRecord& r = new_record(name);
    r.stats = compute_stats(data, n, shape);
    if (name == "logits" && meta_.logit_softcap > 0) {
        const double lim = (1.0 - opt_.pinned_margin) * meta_.logit_softcap;
        int64_t pinned = 0;
        for (int64_t i = 0; i < n; ++i) pinned += std::fabs(data[i]) >= lim;
        r.extra["pinned_fraction"] = n ? static_cast<double>(pinned) / static_cast<double>(n) : 0.0;
    }
    if (keep_.matches(name) && !opt_.keep_values.empty() && n <= opt_.max_kept_elements) r.values.assign(data, data + n);
    if (name == "loss" && n == 1 && r.phase == Phase::Forward) record_loss(r.iteration, static_cast<double>(data[0]));
}

void TraceRecorder::observe_causal(const std::string& name, const float* data, const Shape& shape, int64_t pos0) {
    record_causal(name, data, shape, pos0);
}

TraceRecord& TraceRecorder::record_causal(const std::string& name, const float* data, const Shape& shape,
                                          int64_t pos0) {
    const int64_t rows = shape.at(0) * shape.at(1), T = shape.at(2), S = shape.at(3);
    std::vector<float> packed;
    packed.reserve(static_cast<size_t>(rows * T * (pos0 + (T + 1) / 2 + 1)));
    const bool probs = is_probs_name(name);
    int64_t counted = 0, saturated = 0;
    double row_max_sum = 0;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t t = 0; t < T; ++t) {
            const float* row = data + (r * T + t) * S;
            const int64_t n_keys = pos0 + t + 1;
            packed.insert(packed.end(), row, row + n_keys);
            if (probs && n_keys >= opt_.min_keys) {
                const float mx = *std::max_element(row, row + n_keys);
                ++counted;
                row_max_sum += mx;
                saturated += mx >= opt_.saturated_prob;
            }
        }
    TraceRecord& rec = new_record(name);
    rec.causal = true;
    rec.stats = compute_stats(packed.data(), static_cast<int64_t>(packed.size()), shape);
    if (probs) {
        rec.extra["rows"] = static_cast<double>(counted);
        rec.extra["saturated_rows"] = counted ? static_cast<double>(saturated) / static_cast<double>(counted) : 0.0;
        rec.extra["row_max_mean"] = counted ? row_max_sum / static_cast<double>(counted) : 0.0;
    }
    if (keep_.matches(name) && !opt_.keep_values.empty() && static_cast<int64_t>(packed.size()) <= opt_.max_kept_elements)
        rec.values = std::move(packed);
    return rec;
}

void TraceRecorder::record_loss(int iteration, double loss) {
    for (LossPoint& p : losses_)
        if (p.iteration == iteration) {
            p.loss = loss;
            return;
        }
    losses_.push_back({iteration, loss});
}

void TraceRecorder::record_stats(const std::string& name, const TensorStats& stats) {
    if (!wants(name)) return;
    new_record(name).stats = stats;
}

void TraceRecorder::record_ids(const std::string& name, const int32_t* ids, int64_t n, const Shape& shape) {
    if (!wants(name)) return;
    new_record(name).stats = compute_stats(ids, n, shape);
}

const TraceRecord* TraceRecorder::find(const std::string& name, Phase phase, int iteration) const {
    auto it = index_.find(std::make_tuple(name, static_cast<int>(phase), iteration));
    return it == index_.end() ? nullptr : &records_[it->second];
}

const TraceRecord* TraceRecorder::find_first(const std::string& name) const {
    const TraceRecord* best = nullptr;
    for (const TraceRecord& r : records_)
        if (r.name == name &&
            (!best || r.iteration < best->iteration || (r.iteration == best->iteration && r.phase < best->phase)))
            best = &r;
    return best;
}

}  // namespace lmscope
