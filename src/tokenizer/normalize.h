// tokenizer.json "normalizer": null, a Unicode normal form (NFC/NFD/NFKC/NFKD via utf8proc), or a
// Sequence of those. Anything else is rejected at load time.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/json_fields.h"

namespace lmscope::tok {

enum class NormalForm { NFC, NFD, NFKC, NFKD };

class Normalizer {
public:
    static Normalizer from_json(const Json* j, const std::string& label);
    bool is_identity() const { return forms_.empty(); }
    /** `text` must be valid UTF-8. */
    std::string apply(std::string_view text) const;

private:
    std::vector<NormalForm> forms_;
};

/** One Unicode normal form of valid UTF-8 text. */
std::string normalize_utf8(std::string_view text, NormalForm form);

}  // namespace lmscope::tok
