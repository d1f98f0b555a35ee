// UTF-8 validation and lossy repair, following Unicode's table of well-formed byte sequences so
// that the number of U+FFFD we emit matches Rust's String::from_utf8_lossy (what HF decode uses).
#include "tokenizer/utf8.h"

namespace lmscope::tok {

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(char(cp));
    } else if (cp < 0x800) {
        out.push_back(char(0xC0 | (cp >> 6)));
        out.push_back(char(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(char(0xE0 | (cp >> 12)));
        out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(char(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(char(0xF0 | (cp >> 18)));
        out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(char(0x80 | (cp & 0x3F)));
    }
}

Utf8Step utf8_step(std::string_view s, size_t i) {
    const auto b0 = uint8_t(s[i]);
    if (b0 < 0x80) return {1, true, false};
    size_t need = 0;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 1;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2;
        if (b0 == 0xE0) lo = 0xA0;  // no overlongs
        if (b0 == 0xED) hi = 0x9F;  // no surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;  // nothing past U+10FFFF
    } else {
        return {1, false, false};  // C0, C1, F5..FF and stray continuation bytes
    }
    size_t len = 1;
    for (size_t k = 0; k < need; ++k) {
        if (i + len >= s.size()) return {len, false, true};
        const auto b = uint8_t(s[i + len]);
        const uint8_t l = k == 0 ? lo : 0x80, h = k == 0 ? hi : 0xBF;
        if (b < l || b > h) return {len, false, false};
        ++len;
    }
    return {len, true, false};
}

bool is_valid_utf8(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        // ASCII fast path: most text is mostly ASCII
        if (uint8_t(s[i]) < 0x80) {
            ++i;
            continue;
        }
        const Utf8Step st = utf8_step(s, i);
        if (!st.valid) return false;
        i += st.len;
    }
    return true;
}

std::string utf8_lossy(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
        const Utf8Step st = utf8_step(s, i);
        if (st.valid) {
            out.append(s.substr(i, st.len));
        } else {
            out.append("\xEF\xBF\xBD");
        }
        i += st.len;
    }
    return out;
}

size_t utf8_complete_prefix(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        const Utf8Step st = utf8_step(s, i);
        if (st.incomplete) return i;
        i += st.len;
    }
    return i;
}

uint32_t next_code_point(std::string_view s, size_t& i) {
    const auto b0 = uint8_t(s[i]);
    if (b0 < 0x80) {
        ++i;
        return b0;
    }
    int n = b0 >= 0xF0 ? 3 : b0 >= 0xE0 ? 2 : 1;
    uint32_t cp = b0 & (0x3F >> n);
    ++i;
    for (int k = 0; k < n && i < s.size(); ++k, ++i) cp = (cp << 6) | (uint8_t(s[i]) & 0x3F);
    return cp;
}

}  // namespace lmscope::tok
