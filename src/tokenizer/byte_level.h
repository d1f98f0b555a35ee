// GPT-2 byte <-> unicode table used by ByteLevel pre-tokenizers and decoders: printable Latin-1
// bytes stand for themselves, the other 68 bytes get U+0100.. in order (space -> U+0120 'Ġ').
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace lmscope::tok {

struct ByteLevelTable {
    std::array<uint16_t, 256> byte_to_cp{};
    std::array<int16_t, 324> cp_to_byte{};  // -1 where the code point stands for no byte
    std::array<std::string, 256> byte_to_utf8;
};

const ByteLevelTable& byte_level_table();

/** The byte-level spelling of raw bytes (what a vocab entry looks like). */
std::string bytes_to_byte_level(std::string_view bytes);

/** Raw bytes of a byte-level token string; nullopt when some character is not in the table. */
std::optional<std::string> byte_level_to_bytes(std::string_view token);

}  // namespace lmscope::tok
