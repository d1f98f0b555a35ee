// Added-token matching. There are few added tokens (tens to a few hundred), so a first-byte index
// with candidates sorted longest first gives leftmost-longest matches without an automaton.
#include "tokenizer/added_tokens.h"

#include <utf8proc.h>

#include <algorithm>

#include "core/error.h"
#include "tokenizer/unicode_tables.h"
#include "tokenizer/utf8.h"

namespace lmscope::tok {

namespace {

// Rust regex \s: the Unicode White_Space property.
bool is_white_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

// Rust regex \w (Unicode 16): Alphabetic, marks, decimal digits, connector punctuation, join
// controls. Letters and digits come from the pinned tables; Alphabetic adds Nl and a few symbols.
bool is_word_char(uint32_t cp) {
    if (cp < 0x80)
        return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
    if (is_letter(cp) || is_decimal(cp)) return true;
    if (cp == 0x200C || cp == 0x200D || (cp >= 0x24B6 && cp <= 0x24E9) || (cp >= 0x1F130 && cp <= 0x1F149) ||
        (cp >= 0x1F150 && cp <= 0x1F169) || (cp >= 0x1F170 && cp <= 0x1F189))
        return true;
    switch (utf8proc_category(utf8proc_int32_t(cp))) {
        case UTF8PROC_CATEGORY_MN:
        case UTF8PROC_CATEGORY_MC:
        case UTF8PROC_CATEGORY_ME:
        case UTF8PROC_CATEGORY_NL:
        case UTF8PROC_CATEGORY_PC:
            return true;
        default:
            return false;
    }
}

// Code point ending at byte `end` of valid UTF-8.
uint32_t code_point_before(std::string_view s, size_t end) {
    size_t b = end - 1;
    while (b > 0 && (uint8_t(s[b]) & 0xC0) == 0x80) --b;
    return next_code_point(s, b);
}

uint32_t code_point_at(std::string_view s, size_t at) { return next_code_point(s, at); }

// Start of the whitespace run that ends at `end`.
size_t white_space_run_start(std::string_view s, size_t end) {
    while (end > 0) {
        size_t b = end - 1;
        while (b > 0 && (uint8_t(s[b]) & 0xC0) == 0x80) --b;
        size_t i = b;
        if (!is_white_space(next_code_point(s, i))) break;
        end = b;
    }
    return end;
}

// End of the whitespace run that starts at `begin`.
size_t white_space_run_end(std::string_view s, size_t begin) {
    while (begin < s.size()) {
        size_t i = begin;
        if (!is_white_space(next_code_point(s, i))) break;
        begin = i;
    }
    return begin;
}

}  // namespace

void AddedVocab::Matcher::build() {
    for (auto& v : by_first_byte) v.clear();
    for (size_t k = 0; k < patterns.size(); ++k) {
        if (!patterns[k].empty()) by_first_byte[uint8_t(patterns[k][0])].push_back(k);
    }
    for (auto& v : by_first_byte) {
        // longest first; among equal lengths, the earlier pattern (lower index) wins
        std::stable_sort(v.begin(), v.end(),
                         [&](size_t a, size_t b) { return patterns[a].size() > patterns[b].size(); });
    }
}

AddedVocab AddedVocab::from_json(const Json* j, const BpeModel& model, const Normalizer& normalizer,
                                 const std::string& label) {
    AddedVocab av;
    if (!j) return av;
    if (!j->is_array()) fail("{}: added_tokens: expected an array, found {}", label, json_kind(*j));
    const auto model_size = int64_t(model.vocab_count());
    int64_t max_added = -1;
    for (size_t i = 0; i < j->size(); ++i) {
        const std::string path = fmt::format("added_tokens[{}]", i);
        const Json& e = (*j)[i];
        need_object(e, label, path);
        AddedToken t;
        t.content = string_field(e, "content", label, path);
        const Json& idj = need_field(e, "id", label, path);
        if (!idj.is_number_integer())
            fail("{}: {}.id: expected an integer, found {}", label, path, json_kind(idj));
        t.single_word = bool_field(e, "single_word", false, label, path);
        t.lstrip = bool_field(e, "lstrip", false, label, path);
        t.rstrip = bool_field(e, "rstrip", false, label, path);
        t.normalized = bool_field(e, "normalized", true, label, path);
        t.special = bool_field(e, "special", false, label, path);
        if (t.content.empty()) continue;  // tokenizers ignores empty added tokens
        if (!is_valid_utf8(t.content)) fail("{}: {}.content: not valid UTF-8", label, path);

        // tokenizers does not trust the "id" field: a token already known keeps its id, a new one
        // gets the next free id after the model vocab (it only warns when the file disagrees)
        int64_t id;
        if (auto it = av.by_content_.find(t.content); it != av.by_content_.end()) {
            id = av.tokens_[it->second].id;
        } else if (auto mid = model.token_to_id(t.content)) {
            id = *mid;
        } else if (max_added < 0) {
            id = model_size;
        } else {
            id = (max_added >= model_size || model_size == 0) ? max_added + 1 : model_size;
        }
        if (id >= (int64_t(1) << 24)) fail("{}: {}: id {} is out of range", label, path, id);
        t.id = int32_t(id);
        max_added = std::max(max_added, id);
        if (auto it = av.by_content_.find(t.content); it != av.by_content_.end()) {
            av.tokens_[it->second] = t;  // a later entry for the same content replaces the earlier
        } else {
            av.by_content_.emplace(t.content, av.tokens_.size());
            av.tokens_.push_back(t);
        }
    }
    // tokenizers matches special tokens first, then the others, each in file order
    std::vector<size_t> order;
    for (size_t k = 0; k < av.tokens_.size(); ++k)
        if (av.tokens_[k].special) order.push_back(k);
    for (size_t k = 0; k < av.tokens_.size(); ++k)
        if (!av.tokens_[k].special) order.push_back(k);
    for (size_t k : order) {
        const AddedToken& t = av.tokens_[k];
        av.by_id_[t.id] = k;
        Matcher& m = t.normalized ? av.normalized_ : av.raw_;
        m.patterns.push_back(t.normalized ? normalizer.apply(t.content) : t.content);
        m.token_index.push_back(k);
    }
    av.raw_.build();
    av.normalized_.build();
    return av;
}

const AddedToken* AddedVocab::by_id(int32_t id) const {
    auto it = by_id_.find(id);
    return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocab::by_content(std::string_view content) const {
    auto it = by_content_.find(content);
    return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

int32_t AddedVocab::max_id() const {
    int32_t m = -1;
    for (const AddedToken& t : tokens_) m = std::max(m, t.id);
    return m;
}

void AddedVocab::split(std::string_view text, bool normalized_set, std::vector<Segment>& out) const {
    const Matcher& m = normalized_set ? normalized_ : raw_;
    if (m.patterns.empty()) {
        if (!text.empty()) out.push_back({0, text.size(), -1});
        return;
    }
    size_t start_offset = 0;  // end of what has been emitted
    size_t pos = 0;           // where the scan for the next match resumes
    while (pos < text.size()) {
        // leftmost-longest: the first position where any pattern matches, its longest pattern
        size_t hit_at = text.size(), hit = 0;
        for (size_t p = pos; p < text.size() && hit_at == text.size(); ++p) {
            for (size_t k : m.by_first_byte[uint8_t(text[p])]) {
                if (text.compare(p, m.patterns[k].size(), m.patterns[k]) == 0) {
                    hit_at = p;
                    hit = k;
                    break;
                }
            }
        }
        if (hit_at == text.size()) break;
        size_t start = hit_at, stop = hit_at + m.patterns[hit].size();
        pos = stop;  // like aho-corasick's iterator, a skipped match still consumes its text
        const AddedToken& t = tokens_[m.token_index[hit]];
        if (t.single_word) {
            const bool start_ok = start == 0 || !is_word_char(code_point_before(text, start));
            const bool stop_ok = stop == text.size() || !is_word_char(code_point_at(text, stop));
            if (!start_ok || !stop_ok) continue;
        }
        if (t.lstrip) start = std::max(white_space_run_start(text, start), start_offset);
        if (t.rstrip) stop = white_space_run_end(text, stop);
        if (start_offset < start) out.push_back({start_offset, start, -1});
        // an lstrip clamped to the previous token's rstrip can leave nothing: tokenizers drops
        // empty splits, token and all
        if (start < stop) out.push_back({start, stop, t.id});
        start_offset = stop;
    }
    if (start_offset < text.size()) out.push_back({start_offset, text.size(), -1});
}

}  // namespace lmscope::tok
