// Unicode data pinned to what Hugging Face tokenizers uses (see unicode_tables.cpp), so results do
// not depend on the Unicode version of the system PCRE2 / utf8proc.
#pragma once

#include <cstdint>
#include <span>

namespace lmscope::tok {

struct CodeRange {
    uint32_t first;
    uint32_t last;  // inclusive
};

/** General_Category L (letters), N (numbers) and Nd (decimal digits), Unicode 16.0, sorted. */
std::span<const CodeRange> letter_ranges();
std::span<const CodeRange> number_ranges();
std::span<const CodeRange> decimal_ranges();
bool is_letter(uint32_t cp);
bool is_decimal(uint32_t cp);

/** Code points tokenizers' normalizers leave untouched although utf8proc would not (see .cpp). */
bool is_norm_barrier(uint32_t cp, bool compat);

}  // namespace lmscope::tok
