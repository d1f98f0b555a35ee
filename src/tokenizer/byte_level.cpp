// The GPT-2 byte-to-unicode table and the two conversions built on it.
#include "tokenizer/byte_level.h"

#include "tokenizer/utf8.h"

namespace lmscope::tok {

namespace {

ByteLevelTable build_table() {
    ByteLevelTable t;
    t.cp_to_byte.fill(-1);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
        const bool printable =
            (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        const uint32_t cp = printable ? b : next++;
        t.byte_to_cp[b] = uint16_t(cp);
        t.cp_to_byte[cp] = int16_t(b);
        append_utf8(t.byte_to_utf8[b], cp);
    }
    return t;
}

}  // namespace

const ByteLevelTable& byte_level_table() {
    static const ByteLevelTable table = build_table();
    return table;
}

std::string bytes_to_byte_level(std::string_view bytes) {
    const ByteLevelTable& t = byte_level_table();
    std::string out;
    out.reserve(bytes.size() * 2);
    for (char c : bytes) out += t.byte_to_utf8[uint8_t(c)];
    return out;
}

std::optional<std::string> byte_level_to_bytes(std::string_view token) {
    const ByteLevelTable& t = byte_level_table();
    std::string out;
    out.reserve(token.size());
    size_t i = 0;
    while (i < token.size()) {
        const Utf8Step st = utf8_step(token, i);
        if (!st.valid) return std::nullopt;
        const uint32_t cp = next_code_point(token, i);
        if (cp >= t.cp_to_byte.size() || t.cp_to_byte[cp] < 0) return std::nullopt;
        out.push_back(char(t.cp_to_byte[cp]));
    }
    return out;
}

}  // namespace lmscope::tok
