// Pre-tokenization: applies the Split steps to a normalized span, recursing piece by piece so no
// list of all pre-tokens is ever built, then the ByteLevel step.
#include "tokenizer/pretokenize.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"

namespace lmscope::tok {

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

PreTokenizer::PreTokenizer() = default;
PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

namespace {

SplitBehavior parse_behavior(const std::string& s, const std::string& label, const std::string& path) {
    if (s == "Removed") return SplitBehavior::Removed;
    if (s == "Isolated") return SplitBehavior::Isolated;
    if (s == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
    if (s == "MergedWithNext") return SplitBehavior::MergedWithNext;
    if (s == "Contiguous") return SplitBehavior::Contiguous;
    fail("{}: {}.behavior: unknown value {}", label, path, json_quote(s));
}

}  // namespace

PreTokenizer PreTokenizer::from_json(const Json* j, const std::string& label) {
    if (!j) fail("{}: pre_tokenizer: missing (a ByteLevel pre-tokenizer is required)", label);
    need_object(*j, label, "pre_tokenizer");
    std::vector<std::pair<const Json*, std::string>> items;
    if (string_field(*j, "type", label, "pre_tokenizer") == "Sequence") {
        const Json& list = need_field(*j, "pretokenizers", label, "pre_tokenizer");
        if (!list.is_array())
            fail("{}: pre_tokenizer.pretokenizers: expected an array, found {}", label, json_kind(list));
        for (size_t i = 0; i < list.size(); ++i)
            items.emplace_back(&list[i], fmt::format("pre_tokenizer.pretokenizers[{}]", i));
    } else {
        items.emplace_back(j, "pre_tokenizer");
    }

    PreTokenizer pt;
    bool have_byte_level = false;
    for (const auto& [item, path] : items) {
        need_object(*item, label, path);
        const std::string type = string_field(*item, "type", label, path);
        if (have_byte_level)
            fail("{}: {}: {} after ByteLevel is not supported (ByteLevel must be the last step)", label, path,
                 json_quote(type));
        if (type == "Split") {
            Step st;
            const Json& pat = need_field(*item, "pattern", label, path);
            if (const Json* re = find_field(pat, "Regex")) {
                if (!re->is_string())
                    fail("{}: {}.pattern.Regex: expected a string, found {}", label, path, json_kind(*re));
                st.regex = Regex::compile(re->get<std::string>(), label, path + ".pattern.Regex");
            } else if (const Json* lit = find_field(pat, "String")) {
                if (!lit->is_string())
                    fail("{}: {}.pattern.String: expected a string, found {}", label, path, json_kind(*lit));
                st.literal = lit->get<std::string>();
            } else {
                fail("{}: {}.pattern: expected {{\"Regex\": ...}} or {{\"String\": ...}}", label, path);
            }
            st.behavior = parse_behavior(string_field(*item, "behavior", label, path), label, path);
            st.invert = bool_field(*item, "invert", false, label, path);
            pt.steps_.push_back(std::move(st));
        } else if (type == "ByteLevel") {
            have_byte_level = true;
            pt.add_prefix_space_ = bool_field(*item, "add_prefix_space", false, label, path);
            if (bool_field(*item, "use_regex", true, label, path)) {
                Step st;
                st.regex = Regex::compile(kGpt2Pattern, label, path);
                pt.byte_level_regex_ = std::move(st);
            }
        } else {
            fail("{}: {}.type: {} is not supported (supported: Split, ByteLevel, Sequence)", label, path,
                 json_quote(type));
        }
    }
    if (!have_byte_level)
        fail("{}: pre_tokenizer: a ByteLevel step is required (only byte-level BPE is supported)", label);
    return pt;
}

std::vector<std::pair<size_t, size_t>> PreTokenizer::split_one(const Step& st, std::string_view piece) {
    // 1. matches and the gaps between them, each flagged as delimiter or not
    std::vector<std::pair<size_t, size_t>> found;
    if (st.regex) {
        st.regex->find_all(piece, found);
    } else if (!st.literal.empty()) {
        for (size_t at = piece.find(st.literal); at != std::string_view::npos;
             at = piece.find(st.literal, at + st.literal.size()))
            found.emplace_back(at, at + st.literal.size());
    }
    struct Span {
        size_t b, e;
        bool delim;
    };
    std::vector<Span> spans;
    spans.reserve(found.size() * 2 + 1);
    size_t prev = 0;
    for (auto [s, e] : found) {
        if (prev != s) spans.push_back({prev, s, st.invert});
        spans.push_back({s, e, !st.invert});
        prev = e;
    }
    if (prev != piece.size()) spans.push_back({prev, piece.size(), st.invert});

    // 2. tokenizers' SplitDelimiterBehavior
    std::vector<std::pair<size_t, size_t>> out;
    out.reserve(spans.size());
    switch (st.behavior) {
        case SplitBehavior::Removed:
            for (const Span& sp : spans)
                if (!sp.delim) out.emplace_back(sp.b, sp.e);
            break;
        case SplitBehavior::Isolated:
            for (const Span& sp : spans) out.emplace_back(sp.b, sp.e);
            break;
        case SplitBehavior::MergedWithPrevious: {
            bool prev_delim = false;
            for (const Span& sp : spans) {
                if (sp.delim && !prev_delim && !out.empty()) {
                    out.back().second = sp.e;
                } else {
                    out.emplace_back(sp.b, sp.e);
                }
                prev_delim = sp.delim;
            }
            break;
        }
        case SplitBehavior::MergedWithNext: {
            bool prev_delim = false;
            for (size_t k = spans.size(); k-- > 0;) {
                const Span& sp = spans[k];
                if (sp.delim && !prev_delim && !out.empty()) {
                    out.back().first = sp.b;
                } else {
                    out.emplace_back(sp.b, sp.e);
                }
                prev_delim = sp.delim;
            }
            std::reverse(out.begin(), out.end());
            break;
        }
        case SplitBehavior::Contiguous: {
            bool prev_delim = false;
            for (const Span& sp : spans) {
                if (sp.delim == prev_delim && !out.empty()) {
                    out.back().second = sp.e;
                } else {
                    out.emplace_back(sp.b, sp.e);
                }
                prev_delim = sp.delim;
            }
            break;
        }
    }
    return out;
}

void PreTokenizer::run(size_t step, std::string_view piece,
                       const std::function<void(std::string_view)>& emit) const {
    if (piece.empty()) return;
    if (step == steps_.size()) {
        byte_level(piece, emit);
        return;
    }
    for (auto [b, e] : split_one(steps_[step], piece)) run(step + 1, piece.substr(b, e - b), emit);
}

void PreTokenizer::byte_level(std::string_view piece,
                              const std::function<void(std::string_view)>& emit) const {
    std::string prefixed;
    if (add_prefix_space_ && piece.front() != ' ') {
        prefixed.reserve(piece.size() + 1);
        prefixed.push_back(' ');
        prefixed.append(piece.data(), piece.size());
        piece = prefixed;
    }
    if (!byte_level_regex_) {
        emit(piece);
        return;
    }
    for (auto [b, e] : split_one(*byte_level_regex_, piece)) {
        if (e > b) emit(piece.substr(b, e - b));
    }
}

void PreTokenizer::split(std::string_view text, const std::function<void(std::string_view)>& emit) const {
    run(0, text, emit);
}

}  // namespace lmscope::tok
