// Normalizers: thin wrapper over utf8proc with an ASCII fast path (ASCII is invariant under every
// normal form, and most prompts are ASCII).
#include "tokenizer/normalize.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>

#include "core/error.h"
#include "tokenizer/unicode_tables.h"
#include "tokenizer/utf8.h"

namespace lmscope::tok {

namespace {

bool is_ascii(std::string_view s) {
    for (char c : s) {
        if (uint8_t(c) >= 0x80) return false;
    }
    return true;
}

void parse_into(const Json& j, const std::string& label, const std::string& path, std::vector<NormalForm>& out) {
    need_object(j, label, path);
    const std::string type = string_field(j, "type", label, path);
    if (type == "NFC") {
        out.push_back(NormalForm::NFC);
    } else if (type == "NFD") {
        out.push_back(NormalForm::NFD);
    } else if (type == "NFKC") {
        out.push_back(NormalForm::NFKC);
    } else if (type == "NFKD") {
        out.push_back(NormalForm::NFKD);
    } else if (type == "Sequence") {
        const Json& list = need_field(j, "normalizers", label, path);
        if (!list.is_array())
            fail("{}: {}.normalizers: expected an array, found {}", label, path, json_kind(list));
        for (size_t i = 0; i < list.size(); ++i)
            parse_into(list[i], label, fmt::format("{}.normalizers[{}]", path, i), out);
    } else {
        fail("{}: {}.type: {} is not supported (supported: NFC, NFD, NFKC, NFKD, Sequence)", label, path,
             json_quote(type));
    }
}

}  // namespace

Normalizer Normalizer::from_json(const Json* j, const std::string& label) {
    Normalizer n;
    if (j) parse_into(*j, label, "normalizer", n.forms_);
    return n;
}

std::string Normalizer::apply(std::string_view text) const {
    std::string s(text);
    if (forms_.empty() || is_ascii(s)) return s;
    for (NormalForm f : forms_) s = normalize_utf8(s, f);
    return s;
}

namespace {

std::string utf8proc_normalize(std::string_view text, NormalForm form) {
    if (text.empty()) return {};
    int opts = UTF8PROC_STABLE;
    switch (form) {
        case NormalForm::NFC: opts |= UTF8PROC_COMPOSE; break;
        case NormalForm::NFD: opts |= UTF8PROC_DECOMPOSE; break;
        case NormalForm::NFKC: opts |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
        case NormalForm::NFKD: opts |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
    }
    utf8proc_uint8_t* dst = nullptr;
    // explicit length (no UTF8PROC_NULLTERM) so embedded NUL characters survive
    const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                            utf8proc_ssize_t(text.size()), &dst, utf8proc_option_t(opts));
    std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> guard(dst, &std::free);
    if (n < 0) fail("tokenizer: Unicode normalization failed: {}", utf8proc_errmsg(n));
    return std::string(reinterpret_cast<const char*>(dst), size_t(n));
}

}  // namespace

std::string normalize_utf8(std::string_view text, NormalForm form) {
    if (is_ascii(text)) return std::string(text);
    // A barrier code point is a starter that neither composes nor reorders for tokenizers, so
    // normalizing the pieces around it separately is exactly what tokenizers computes.
    const bool compat = form == NormalForm::NFKC || form == NormalForm::NFKD;
    std::string out;
    out.reserve(text.size() + text.size() / 8);
    size_t seg = 0, i = 0;
    while (i < text.size()) {
        const size_t at = i;
        const uint32_t cp = next_code_point(text, i);
        if (!is_norm_barrier(cp, compat)) continue;
        out += utf8proc_normalize(text.substr(seg, at - seg), form);
        out.append(text.substr(at, i - at));
        seg = i;
    }
    out += utf8proc_normalize(text.substr(seg), form);
    return out;
}

}  // namespace lmscope::tok
