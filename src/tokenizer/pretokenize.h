// tokenizer.json "pre_tokenizer": Split steps (regex or literal, with tokenizers' five delimiter
// behaviours and invert) followed by a ByteLevel step, alone or in a Sequence. ByteLevel must come
// last: it only maps bytes (done by the BPE model here), optionally after prefixing a space and
// splitting with the GPT-2 regex.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/json_fields.h"
#include "tokenizer/regex.h"

namespace lmscope::tok {

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

/** The GPT-2 pattern ByteLevel uses when use_regex is true. */
extern const char* const kGpt2Pattern;

class PreTokenizer {
public:
    static PreTokenizer from_json(const Json* j, const std::string& label);
    PreTokenizer();
    ~PreTokenizer();
    PreTokenizer(PreTokenizer&&) noexcept;
    PreTokenizer& operator=(PreTokenizer&&) noexcept;

    /** Calls `emit` with each pre-token of `text` (valid UTF-8), in order; empty ones are skipped. */
    void split(std::string_view text, const std::function<void(std::string_view)>& emit) const;

private:
    struct Step {
        std::optional<Regex> regex;  // Regex pattern, or
        std::string literal;         // String pattern
        SplitBehavior behavior = SplitBehavior::Isolated;
        bool invert = false;
    };
    void run(size_t step, std::string_view piece, const std::function<void(std::string_view)>& emit) const;
    void byte_level(std::string_view piece, const std::function<void(std::string_view)>& emit) const;
    static std::vector<std::pair<size_t, size_t>> split_one(const Step& st, std::string_view piece);

    std::vector<Step> steps_;
    bool add_prefix_space_ = false;
    std::optional<Step> byte_level_regex_;  // GPT-2 split when ByteLevel.use_regex
};

}  // namespace lmscope::tok
