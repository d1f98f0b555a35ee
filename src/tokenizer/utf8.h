// UTF-8 helpers for the tokenizer: validation, lossy repair (one U+FFFD per maximal invalid
// subpart, the Unicode / Rust from_utf8_lossy / Python errors="replace" rule), and the split point
// a streaming decoder needs (complete sequences vs. a trailing, still-possible prefix).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lmscope::tok {

/** Appends the UTF-8 encoding of code point `cp` (must be a scalar value). */
void append_utf8(std::string& out, uint32_t cp);

/** True when `s` is well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF). */
bool is_valid_utf8(std::string_view s);

/**
 * Length of the well-formed (or definitely ill-formed) sequence starting at s[i], and whether it
 * is valid. `incomplete` is set when s ends in the middle of a sequence that could still become
 * valid with more bytes.
 */
struct Utf8Step {
    size_t len;
    bool valid;
    bool incomplete;
};
Utf8Step utf8_step(std::string_view s, size_t i);

/** `s` with each maximal ill-formed subpart replaced by U+FFFD. */
std::string utf8_lossy(std::string_view s);

/** Bytes at the start of `s` that form complete sequences (valid or not); the rest may grow valid. */
size_t utf8_complete_prefix(std::string_view s);

/** Decodes the code point at s[i] of valid UTF-8, advancing i. */
uint32_t next_code_point(std::string_view s, size_t& i);

}  // namespace lmscope::tok
