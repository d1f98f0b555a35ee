// The BPE model of tokenizer.json ("model": {"type": "BPE", ...}) over byte-level symbols:
// a pre-token's bytes become one symbol each (their GPT-2 character looked up in the vocab), then
// the adjacent pair with the lowest merge rank (leftmost on ties) is merged until none applies,
// exactly like tokenizers' Word::merge_all. Results are cached per pre-token.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/json_fields.h"

namespace lmscope::tok {

struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

/** Open-addressing map from a pair of symbol ids to (rank, merged id). */
class PairTable {
public:
    struct Merge {
        int32_t rank;
        int32_t id;
    };
    void reserve(size_t n);
    /** Later inserts of the same pair win, like the HashMap tokenizers builds. */
    void insert(int32_t a, int32_t b, Merge m);
    const Merge* find(int32_t a, int32_t b) const;
    size_t size() const { return size_; }

private:
    static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
    size_t slot(uint64_t k) const { return size_t((k * 0x9E3779B97F4A7C15ull) >> shift_); }
    std::vector<uint64_t> keys_;
    std::vector<Merge> vals_;
    int shift_ = 64;
    size_t size_ = 0;
};

class BpeModel {
public:
    /** Parses the "model" object; `label` names the file in errors. */
    static BpeModel from_json(const Json& model, const std::string& label);
    BpeModel();
    ~BpeModel();
    BpeModel(BpeModel&&) noexcept;
    BpeModel& operator=(BpeModel&&) noexcept;

    /** Appends the ids of one pre-token given as raw bytes (byte-level symbols). */
    void encode_word(std::string_view bytes, std::vector<int32_t>& out) const;

    std::optional<int32_t> token_to_id(std::string_view token) const;
    /** nullptr for ids the vocab does not have. */
    const std::string* id_to_token(int32_t id) const;
    /** Number of vocab entries (what tokenizers calls the model's vocab size). */
    size_t vocab_count() const { return vocab_.size(); }
    /** Largest id in the vocab, -1 when empty. */
    int32_t max_id() const { return int32_t(id_to_token_.size()) - 1; }

private:
    void merge_word(std::string_view bytes, std::vector<int32_t>& out) const;

    TokenMap vocab_;
    std::vector<std::string> id_to_token_;
    std::vector<bool> has_id_;
    PairTable merges_;
    // Per byte: the id of its GPT-2 character, or -1 (then byte_fallback / unk rules apply).
    int32_t byte_id_[256];
    std::vector<int32_t> byte_fallback_ids_[256];
    std::optional<int32_t> unk_id_;
    bool fuse_unk_ = false;
    bool ignore_merges_ = false;

    struct Cache;
    std::unique_ptr<Cache> cache_;
};

}  // namespace lmscope::tok
