#include "train/bpe_train.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <queue>

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace lmscope::train {

const char* const kNanochatSplitPattern =
    R"('(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+)";

const std::vector<std::string>& nanochat_special_tokens() {
    static const std::vector<std::string> s = {"<|bos|>",          "<|user_start|>",   "<|user_end|>",
                                               "<|assistant_start|>", "<|assistant_end|>", "<|python_start|>",
                                               "<|python_end|>",   "<|output_start|>", "<|output_end|>"};
    return s;
}

namespace {

inline uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

const tok::Regex& split_regex() {
    static const tok::Regex re = tok::Regex::compile(kNanochatSplitPattern, "BPE split pattern", "<builtin>");
    return re;
}

// Calls emit for each pre-token (matches and, as Split(Isolated) does, any unmatched gap).
template <typename F>
void pretokenize(std::string_view text, std::vector<std::pair<size_t, size_t>>& spans, F&& emit) {
    spans.clear();
    split_regex().find_all(text, spans);
    size_t pos = 0;
    for (auto [s, e] : spans) {
        if (s > pos) emit(text.substr(pos, s - pos));
        if (e > s) emit(text.substr(s, e - s));
        pos = e;
    }
    if (pos < text.size()) emit(text.substr(pos));
}

struct HeapItem {
    int64_t count;
    uint64_t pair;
    bool operator<(const HeapItem& o) const {  // max count first, then smaller pair
        return count != o.count ? count < o.count : pair > o.pair;
    }
};

}  // namespace

BpeTokenizer BpeTokenizer::train(const std::vector<std::string_view>& texts, int64_t vocab_size, BpeTrainStats* stats) {
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t n_special = static_cast<int64_t>(nanochat_special_tokens().size());
    if (vocab_size < 256 + n_special)
        fail("BPE training: vocab size {} is below 256 bytes + {} special tokens", vocab_size, n_special);
    BpeTrainStats st;
    // 1. pre-token frequencies
    std::unordered_map<std::string, int64_t> freq;
    std::vector<std::pair<size_t, size_t>> spans;
    for (std::string_view t : texts) {
        if (!tok::is_valid_utf8(t)) fail("BPE training: input is not valid UTF-8");
        st.bytes += static_cast<int64_t>(t.size());
        pretokenize(t, spans, [&](std::string_view w) {
            ++freq[std::string(w)];
            ++st.pretokens;
        });
    }
    BpeTokenizer tk;
    tk.tokens_.resize(256);
    std::unordered_map<std::string, int32_t> by_bytes;
    for (int i = 0; i < 256; ++i) {
        tk.tokens_[i] = std::string(1, static_cast<char>(i));
        by_bytes[tk.tokens_[i]] = i;
    }
    // words in a deterministic order (sorted), as symbol sequences
    std::vector<std::pair<std::string, int64_t>> sorted(freq.begin(), freq.end());
    std::sort(sorted.begin(), sorted.end());
    st.unique_words = static_cast<int64_t>(sorted.size());
    std::vector<std::vector<int32_t>> words(sorted.size());
    std::vector<int64_t> counts(sorted.size());
    std::unordered_map<uint64_t, int64_t> pair_count;
    std::unordered_map<uint64_t, std::vector<int32_t>> pair_words;
    for (size_t w = 0; w < sorted.size(); ++w) {
        counts[w] = sorted[w].second;
        for (unsigned char c : sorted[w].first) words[w].push_back(c);
        const auto& s = words[w];
        for (size_t i = 0; i + 1 < s.size(); ++i) {
            const uint64_t k = key(s[i], s[i + 1]);
            pair_count[k] += counts[w];
            auto& pw = pair_words[k];
            if (pw.empty() || pw.back() != int32_t(w)) pw.push_back(int32_t(w));
        }
    }
    freq.clear();
    sorted.clear();
    std::priority_queue<HeapItem> heap;
    for (auto& [k, c] : pair_count) heap.push({c, k});

    // 2. merges
    const int64_t target_tokens = vocab_size - n_special;
    std::vector<uint64_t> stamp(words.size(), 0);
    uint64_t round = 0;
    std::vector<int32_t> merged;
    std::unordered_map<uint64_t, int64_t> touched;
    while (int64_t(tk.tokens_.size()) < target_tokens && !heap.empty()) {
        const HeapItem top = heap.top();
        heap.pop();
        auto pc = pair_count.find(top.pair);
        const int64_t cur = pc == pair_count.end() ? 0 : pc->second;
        if (cur != top.count) {
            if (cur > 0) heap.push({cur, top.pair});
            continue;
        }
        if (cur <= 0) break;
        const int32_t a = int32_t(top.pair >> 32), b = int32_t(top.pair & 0xffffffffu);
        std::string bytes = tk.tokens_[a] + tk.tokens_[b];
        int32_t id;
        if (auto it = by_bytes.find(bytes); it != by_bytes.end()) {
            id = it->second;
        } else {
            id = int32_t(tk.tokens_.size());
            tk.tokens_.push_back(bytes);
            by_bytes.emplace(std::move(bytes), id);
        }
        tk.rank_[top.pair] = {int32_t(tk.merges_.size()), id};
        tk.merges_.push_back({a, b});
        ++round;
        touched.clear();
        std::vector<int32_t> wl = std::move(pair_words[top.pair]);
        pair_words.erase(top.pair);
        for (int32_t w : wl) {
            if (stamp[w] == round) continue;
            stamp[w] = round;
            auto& s = words[w];
            bool has = false;
            for (size_t i = 0; i + 1 < s.size() && !has; ++i) has = s[i] == a && s[i + 1] == b;
            if (!has) continue;
            const int64_t c = counts[w];
            for (size_t i = 0; i + 1 < s.size(); ++i) {
                const uint64_t k = key(s[i], s[i + 1]);
                pair_count[k] -= c;
                touched[k] += 0;
            }
            merged.clear();
            for (size_t i = 0; i < s.size(); ++i) {
                if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
                    merged.push_back(id);
                    ++i;
                } else {
                    merged.push_back(s[i]);
                }
            }
            s = merged;
            for (size_t i = 0; i + 1 < s.size(); ++i) {
                const uint64_t k = key(s[i], s[i + 1]);
                pair_count[k] += c;
                touched[k] += 0;
                if (s[i] == id || s[i + 1] == id) {
                    auto& pw = pair_words[k];
                    if (pw.empty() || pw.back() != w) pw.push_back(w);
                }
            }
        }
        for (auto& [k, unused] : touched) {
            (void)unused;
            auto it = pair_count.find(k);
            if (it == pair_count.end()) continue;
            if (it->second <= 0) {
                pair_count.erase(it);
                continue;
            }
            const int32_t l = int32_t(k >> 32), r = int32_t(k & 0xffffffffu);
            if (l == id || r == id) heap.push({it->second, k});  // new pairs; lowered ones are fixed lazily
        }
    }
    st.merges = tk.num_merges();
    st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (stats) *stats = st;
    return tk;
}

void BpeTokenizer::encode_word(std::string_view word, std::vector<int32_t>& out) const {
    auto it = cache_.find(std::string(word));
    if (it == cache_.end()) {
        std::vector<int32_t> s;
        for (unsigned char c : word) s.push_back(c);
        // lowest-rank adjacent pair first, leftmost on ties (Hugging Face BPE)
        while (s.size() > 1) {
            int32_t best_rank = INT32_MAX, best_id = -1;
            size_t best_i = 0;
            for (size_t i = 0; i + 1 < s.size(); ++i) {
                auto r = rank_.find(key(s[i], s[i + 1]));
                if (r != rank_.end() && r->second.first < best_rank) {
                    best_rank = r->second.first;
                    best_id = r->second.second;
                    best_i = i;
                }
            }
            if (best_id < 0) break;
            const int32_t a = s[best_i], b = s[best_i + 1];
            std::vector<int32_t> n;
            n.reserve(s.size());
            for (size_t i = 0; i < s.size(); ++i) {
                if (i >= best_i && i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
                    n.push_back(best_id);
                    ++i;
                } else {
                    n.push_back(s[i]);
                }
            }
            s.swap(n);
        }
        it = cache_.emplace(std::string(word), std::move(s)).first;
    }
    out.insert(out.end(), it->second.begin(), it->second.end());
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text) const {
    if (!tok::is_valid_utf8(text)) fail("BPE encode: input is not valid UTF-8");
    std::vector<int32_t> out;
    std::vector<std::pair<size_t, size_t>> spans;
    pretokenize(text, spans, [&](std::string_view w) { encode_word(w, out); });
    return out;
}

std::string BpeTokenizer::to_hf_json() const {
    using oj = nlohmann::ordered_json;
    oj vocab = oj::object();
    for (size_t i = 0; i < tokens_.size(); ++i) vocab[tok::bytes_to_byte_level(tokens_[i])] = int64_t(i);
    oj merges = oj::array();
    for (auto [a, b] : merges_)
        merges.push_back(oj::array({tok::bytes_to_byte_level(tokens_[a]), tok::bytes_to_byte_level(tokens_[b])}));
    oj added = oj::array();
    int64_t id = static_cast<int64_t>(tokens_.size());
    for (const std::string& s : nanochat_special_tokens())
        added.push_back(oj{{"id", id++}, {"content", s}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                           {"normalized", false}, {"special", true}});
    oj j;
    j["version"] = "1.0";
    j["truncation"] = nullptr;
    j["padding"] = nullptr;
    j["added_tokens"] = added;
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = oj{
        {"type", "Sequence"},
        {"pretokenizers",
         oj::array({oj{{"type", "Split"}, {"pattern", oj{{"Regex", kNanochatSplitPattern}}}, {"behavior", "Isolated"},
                       {"invert", false}},
                    oj{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}})}};
    j["post_processor"] = nullptr;
    j["decoder"] = oj{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
    j["model"] = oj{{"type", "BPE"},
                    {"dropout", nullptr},
                    {"unk_token", nullptr},
                    {"continuing_subword_prefix", nullptr},
                    {"end_of_word_suffix", nullptr},
                    {"fuse_unk", false},
                    {"byte_fallback", false},
                    {"ignore_merges", false},
                    {"vocab", vocab},
                    {"merges", merges}};
    return j.dump(1) + "\n";
}

}  // namespace lmscope::train
