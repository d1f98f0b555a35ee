// Normalizers: thin wrapper over utf8proc with an ASCII fast path (ASCII is invariant under every
// normal form, and most prompts are ASCII).
#include "tokenizer/normalize.h"

#include <utf8proc.h>

#include <algorithm>
#include <vector>

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

void parse_into(const Json& j, const std::string& label, const std::string& path,
                std::vector<NormalForm>& out) {
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

int combining_class(utf8proc_int32_t cp) { return utf8proc_get_property(cp)->combining_class; }

// Decompose code point by code point, put each run of combining marks in canonical order with a
// stable sort, then compose. utf8proc_map would do the same, but its ordering is a bubble sort:
// quadratic on a long run of marks, which any input can contain.
std::string utf8proc_normalize(std::string_view text, NormalForm form) {
    if (text.empty()) return {};
    const bool compose = form == NormalForm::NFC || form == NormalForm::NFKC;
    const bool compat = form == NormalForm::NFKC || form == NormalForm::NFKD;
    const auto decompose_opts =
        utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | (compat ? UTF8PROC_COMPAT : 0));
    std::vector<utf8proc_int32_t> cps;
    cps.reserve(text.size() + 8);
    utf8proc_int32_t one[32];  // the longest decomposition (U+FDFA, NFKD) has 18 code points
    int bound = 0;
    for (size_t i = 0; i < text.size();) {
        const auto cp = utf8proc_int32_t(next_code_point(text, i));
        const utf8proc_ssize_t n = utf8proc_decompose_char(cp, one, 32, decompose_opts, &bound);
        if (n < 0 || n > 32) fail("tokenizer: Unicode normalization failed on U+{:04X}", uint32_t(cp));
        cps.insert(cps.end(), one, one + n);
    }
    for (size_t k = 0; k < cps.size();) {
        if (combining_class(cps[k]) == 0) {
            ++k;
            continue;
        }
        size_t e = k + 1;
        while (e < cps.size() && combining_class(cps[e]) != 0) ++e;
        if (e - k > 1) {
            std::stable_sort(cps.begin() + std::ptrdiff_t(k), cps.begin() + std::ptrdiff_t(e),
                             [](utf8proc_int32_t a, utf8proc_int32_t b) {
                                 return combining_class(a) < combining_class(b);
                             });
        }
        k = e;
    }
    utf8proc_ssize_t len = utf8proc_ssize_t(cps.size());
    if (compose) {
        len =
            utf8proc_normalize_utf32(cps.data(), len, utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
        if (len < 0) fail("tokenizer: Unicode normalization failed: {}", utf8proc_errmsg(len));
    }
    std::string out;
    out.reserve(text.size());
    for (utf8proc_ssize_t k = 0; k < len; ++k) append_utf8(out, uint32_t(cps[size_t(k)]));
    return out;
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
