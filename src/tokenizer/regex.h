// PCRE2 (UTF + UCP, JIT when available) regex for pre-tokenizer patterns. tokenizers compiles
// these with Oniguruma, whose \s is Unicode White_Space; PCRE2's lacks U+0085 (NEXT LINE) and has
// U+180E (MONGOLIAN VOWEL SEPARATOR), so patterns are rewritten on compile to keep \s / \S
// meaning what they mean in tokenizers.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lmscope::tok {

class Regex {
public:
    /** Compiles `pattern`; a bad pattern is an Error naming `label` and `path`. */
    static Regex compile(const std::string& pattern, const std::string& label, const std::string& path);
    Regex();
    ~Regex();
    Regex(Regex&&) noexcept;
    Regex& operator=(Regex&&) noexcept;

    /** All non-overlapping matches in `subject` (valid UTF-8), as byte ranges, left to right. */
    void find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& out) const;

private:
    struct Code;
    std::unique_ptr<Code> code_;
};

/** The PCRE2 spelling of an Oniguruma pattern (only \s and \S differ for tokenizer patterns). */
std::string oniguruma_to_pcre2(std::string_view pattern);

}  // namespace lmscope::tok
