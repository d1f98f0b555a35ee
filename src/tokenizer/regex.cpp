// PCRE2 wrapper: compile with UTF|UCP, JIT when the platform has it, iterate matches with one
// match-data block per call.
#include "tokenizer/regex.h"

#include <fmt/format.h>
#include <pcre2.h>

#include "core/error.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/unicode_tables.h"
#include "tokenizer/utf8.h"

namespace lmscope::tok {

struct Regex::Code {
    pcre2_code* code = nullptr;
    bool jit = false;
    ~Code() {
        if (code) pcre2_code_free(code);
    }
};

Regex::Regex() = default;
Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

namespace {

// Oniguruma's \s is Unicode White_Space: TAB..CR, U+0085 and the Z categories. PCRE2's (with UCP)
// lacks U+0085 and adds U+180E, so it is spelled out instead.
constexpr const char* kSpace = "\\x{9}-\\x{d}\\x{85}\\p{Z}";

// Class members (no brackets) for a table of ranges: "\x{41}-\x{5a}\x{61}-...".
std::string class_items(std::span<const CodeRange> ranges) {
    std::string s;
    for (const CodeRange& r : ranges) {
        s += fmt::format("\\x{{{:x}}}", r.first);
        if (r.last != r.first) s += fmt::format("-\\x{{{:x}}}", r.last);
    }
    return s;
}

// \p{L} / \p{N} / \d spelled out from pinned tables, since PCRE2's own tables follow its Unicode version.
const std::string& letter_items() {
    static const std::string s = class_items(letter_ranges());
    return s;
}
const std::string& number_items() {
    static const std::string s = class_items(number_ranges());
    return s;
}
const std::string& decimal_items() {
    static const std::string s = class_items(decimal_ranges());
    return s;
}

// Length of the escape at p[i] if it is \p{L}, \pL, \p{N}, \pN (or \P...) or \d / \D, else 0;
// `which` is set to 'L', 'N' or 'd'.
size_t property_escape(std::string_view p, size_t i, char& which) {
    if (p[i] != '\\' || i + 1 >= p.size()) return 0;
    if (p[i + 1] == 'd' || p[i + 1] == 'D') {
        which = 'd';
        return 2;
    }
    if (i + 2 >= p.size() || (p[i + 1] != 'p' && p[i + 1] != 'P')) return 0;
    if (p[i + 2] == 'L' || p[i + 2] == 'N') {
        which = p[i + 2];
        return 3;
    }
    for (const char* name : {"{L}", "{N}"}) {
        if (p.substr(i + 2, 3) == name) {
            which = name[1];
            return 5;
        }
    }
    return 0;
}

}  // namespace

std::string oniguruma_to_pcre2(std::string_view p) {
    std::string out;
    out.reserve(p.size() + 16);
    bool in_class = false;
    for (size_t i = 0; i < p.size(); ++i) {
        const char c = p[i];
        char which = 0;
        if (const size_t n = property_escape(p, i, which)) {
            const std::string& items = which == 'L'   ? letter_items()
                                       : which == 'N' ? number_items()
                                                      : decimal_items();
            const bool negated = p[i + 1] == 'P' || p[i + 1] == 'D';
            if (!in_class) {
                out += negated ? "[^" : "[";
                out += items;
                out += ']';
            } else if (!negated) {
                out += items;
            } else {
                out.append(p.substr(i, n));  // \P{..} / \D inside a class: left to PCRE2
            }
            i += n - 1;
            continue;
        }
        if (c == '\\' && i + 1 < p.size()) {
            const char e = p[i + 1];
            ++i;
            if (e == 's') {
                out += in_class ? kSpace : "[" + std::string(kSpace) + "]";
            } else if (e == 'S' && !in_class) {
                out += "[^" + std::string(kSpace) + "]";
            } else {
                out += '\\';
                out += e;
            }
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            out += c;
            // a ']' right after '[' or '[^' is a literal member, not the end of the class
            if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
            if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
            continue;
        }
        if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {
            // POSIX class [:name:] inside a bracket expression
            const size_t end = p.find(":]", i + 2);
            if (end != std::string_view::npos) {
                out.append(p.substr(i, end + 2 - i));
                i = end + 1;
                continue;
            }
        }
        if (in_class && c == ']') in_class = false;
        out += c;
    }
    return out;
}

Regex Regex::compile(const std::string& pattern, const std::string& label, const std::string& path) {
    const std::string pcre = oniguruma_to_pcre2(pattern);
    int err = 0;
    PCRE2_SIZE err_off = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pcre.data()), pcre.size(),
                                     PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr);
    if (!code) {
        PCRE2_UCHAR buf[256];
        pcre2_get_error_message(err, buf, sizeof buf);
        fail("{}: {}: bad regex {}: {} at offset {}", label, path, json_quote(pattern),
             reinterpret_cast<const char*>(buf), size_t(err_off));
    }
    Regex r;
    r.code_ = std::make_unique<Code>();
    r.code_->code = code;
    // JIT is an optimisation only: fall back to the interpreter where it is unavailable
    r.code_->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    return r;
}

void Regex::find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& out) const {
    if (!code_) return;
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_->code, nullptr);
    if (!md) throw std::bad_alloc();
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> guard(md, &pcre2_match_data_free);
    // The default limit (10M steps) trips on a long whitespace run: `\s*[\r\n]+` walks the run and
    // backs off it before `\s+(?!\S)` takes it. Tokenizer patterns backtrack at most linearly.
    pcre2_match_context* ctx = pcre2_match_context_create(nullptr);
    if (!ctx) throw std::bad_alloc();
    std::unique_ptr<pcre2_match_context, decltype(&pcre2_match_context_free)> ctx_guard(
        ctx, &pcre2_match_context_free);
    pcre2_set_match_limit(ctx, ~uint32_t(0));
    const auto* subj = reinterpret_cast<PCRE2_SPTR>(subject.data());
    size_t pos = 0;
    while (pos <= subject.size()) {
        // the subject was validated once by the caller; skip PCRE2's per-call UTF check
        const int rc =
            code_->jit ? pcre2_jit_match(code_->code, subj, subject.size(), pos, PCRE2_NO_UTF_CHECK, md, ctx)
                       : pcre2_match(code_->code, subj, subject.size(), pos, PCRE2_NO_UTF_CHECK, md, ctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR buf[256];
            pcre2_get_error_message(rc, buf, sizeof buf);
            fail("tokenizer: pre-tokenizer regex failed: {}", reinterpret_cast<const char*>(buf));
        }
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        const size_t s = ov[0], e = ov[1];
        out.emplace_back(s, e);
        if (e > s) {
            pos = e;
        } else {
            // empty match: step over one character so the scan always advances
            if (e >= subject.size()) break;
            pos = e + utf8_step(subject, e).len;
        }
    }
}

}  // namespace lmscope::tok
