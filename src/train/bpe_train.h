// Byte-level BPE training as nanochat trains its tokenizer (rustbpe): text is split by the GPT-4
// style pattern (nanochat's variant: \p{N}{1,2}), each pre-token's UTF-8 bytes start as the 256
// byte tokens, and the most frequent adjacent pair is merged until the vocabulary (bytes + merges +
// nanochat's 9 special tokens) reaches the requested size. Pre-token frequencies are counted once;
// pair counts are updated incrementally, only in the words that hold the merged pair.
// Ties between equally frequent pairs go to the smaller (left id, right id).
// A merge whose bytes already exist as a token reuses that id, as Hugging Face's BPE model does.
// Output: a Hugging Face tokenizer.json (BPE, GPT-2 byte-to-unicode strings, pre_tokenizer
// Sequence[Split(Regex, Isolated), ByteLevel(use_regex false)], ByteLevel decoder, the specials as
// added_tokens) that src/tokenizer's Tokenizer reads back with the ids encode() gives.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace lmscope::train {

/** nanochat's split pattern (GPT-4's with \p{N}{1,2}). */
extern const char* const kNanochatSplitPattern;
/** <|bos|>, <|user_start|>, ... (9 tokens, nanochat/tokenizer.py), given ids after the merges. */
const std::vector<std::string>& nanochat_special_tokens();

struct BpeTrainStats {
    int64_t bytes = 0;
    int64_t pretokens = 0;
    int64_t unique_words = 0;
    int64_t merges = 0;
    double seconds = 0;
};

class BpeTokenizer {
public:
    /**
     * Trains on `texts` (each valid UTF-8; Error otherwise) to `vocab_size` ids in all (>= 256 + 9).
     * Stops early when no pair is left to merge (tiny corpora): vocab_size() then says how many.
     */
    static BpeTokenizer train(const std::vector<std::string_view>& texts, int64_t vocab_size,
                              BpeTrainStats* stats = nullptr);
    /** Ids of ordinary text (special-token strings are not recognised). Caches per pre-token. */
    std::vector<int32_t> encode(std::string_view text) const;
    /** Hugging Face tokenizer.json text. */
    std::string to_hf_json() const;

    int64_t vocab_size() const { return static_cast<int64_t>(tokens_.size() + nanochat_special_tokens().size()); }
    int64_t num_merges() const { return static_cast<int64_t>(merges_.size()); }
    int32_t bos_id() const { return static_cast<int32_t>(tokens_.size()); }
    /** Bytes of a non-special token. */
    const std::string& token_bytes(int32_t id) const { return tokens_.at(id); }

private:
    void encode_word(std::string_view word, std::vector<int32_t>& out) const;

    std::vector<std::string> tokens_;                     // id -> bytes, ordinary tokens only
    std::vector<std::pair<int32_t, int32_t>> merges_;     // in rank order
    std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> rank_;  // (left, right) -> (rank, result id)
    mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace lmscope::train
