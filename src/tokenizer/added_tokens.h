// tokenizer.json "added_tokens": strings matched before the model sees the text (special tokens
// like <|im_start|> and plain added tokens like <think>). Matching follows tokenizers'
// AddedVocabulary: leftmost-longest over the raw text for normalized=false tokens and over each
// normalized span for normalized=true ones, with the single_word / lstrip / rstrip rules.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/normalize.h"

namespace lmscope::tok {

struct AddedToken {
    std::string content;
    int32_t id = -1;
    bool single_word = false;
    bool lstrip = false;
    bool rstrip = false;
    bool normalized = true;
    bool special = false;
};

/** A piece of the input: an added token (id >= 0) or text for the model (id < 0). */
struct Segment {
    size_t begin;
    size_t end;
    int32_t id;
};

class AddedVocab {
public:
    /** Parses "added_tokens" (may be null) and assigns ids the way tokenizers does. */
    static AddedVocab from_json(const Json* j, const BpeModel& model, const Normalizer& normalizer,
                                const std::string& label);

    /** Splits `text` on the added tokens of one set (the normalized ones or the others). */
    void split(std::string_view text, bool normalized_set, std::vector<Segment>& out) const;

    const AddedToken* by_id(int32_t id) const;
    const AddedToken* by_content(std::string_view content) const;
    bool empty() const { return tokens_.empty(); }
    int32_t max_id() const;

private:
    struct Matcher {
        std::vector<std::string> patterns;  // what is searched for (normalized content for that set)
        std::vector<size_t> token_index;    // into tokens_
        std::vector<std::vector<size_t>> by_first_byte = std::vector<std::vector<size_t>>(256);
        void build();
    };
    std::vector<AddedToken> tokens_;
    std::unordered_map<int32_t, size_t> by_id_;
    std::unordered_map<std::string, size_t, StringHash, std::equal_to<>> by_content_;
    Matcher raw_;
    Matcher normalized_;
};

}  // namespace lmscope::tok
