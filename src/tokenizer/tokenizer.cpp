// Tokenizer encode/decode: added tokens are split off the raw text, each remaining span is
// normalized, split on normalized added tokens, pre-tokenized and run through BPE.
#include "tokenizer/tokenizer.h"

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"

namespace lmscope {

namespace {

[[noreturn]] void not_loaded() { fail("tokenizer: used before a tokenizer.json was loaded"); }

}  // namespace

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool parse_special) const {
    if (!impl_) not_loaded();
    const Impl& im = *impl_;
    // Text is UTF-8 by contract; broken input is repaired (U+FFFD) rather than rejected, the way
    // a Python caller would have had to decode it with errors="replace" first.
    std::string repaired;
    if (!tok::is_valid_utf8(text)) {
        repaired = tok::utf8_lossy(text);
        text = repaired;
    }
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    auto model_piece = [&](std::string_view piece) { im.model.encode_word(piece, ids); };

    std::vector<tok::Segment> raw;
    if (parse_special) {
        im.added.split(text, /*normalized_set=*/false, raw);
    } else if (!text.empty()) {
        raw.push_back({0, text.size(), -1});
    }
    std::vector<tok::Segment> norm;
    for (const tok::Segment& seg : raw) {
        if (seg.id >= 0) {
            ids.push_back(seg.id);
            continue;
        }
        const std::string normalized = im.normalizer.apply(text.substr(seg.begin, seg.end - seg.begin));
        const std::string_view nv = normalized;
        norm.clear();
        if (parse_special) {
            im.added.split(nv, /*normalized_set=*/true, norm);
        } else if (!nv.empty()) {
            norm.push_back({0, nv.size(), -1});
        }
        for (const tok::Segment& ns : norm) {
            if (ns.id >= 0) {
                ids.push_back(ns.id);
            } else {
                im.pre_tokenizer.split(nv.substr(ns.begin, ns.end - ns.begin), model_piece);
            }
        }
    }
    return ids;
}

std::string Tokenizer::token_bytes(int32_t id) const {
    if (!impl_) not_loaded();
    const Impl& im = *impl_;
    const std::string* tok = nullptr;
    if (const tok::AddedToken* a = im.added.by_id(id)) {
        tok = &a->content;
    } else {
        tok = im.model.id_to_token(id);
    }
    if (!tok) return {};
    if (!im.byte_level_decoder) return *tok;
    // tokenizers' ByteLevel decoder: a token whose characters are not all in the byte table
    // (e.g. an added token with a plain space) passes through as its own UTF-8
    if (auto bytes = tok::byte_level_to_bytes(*tok)) return *bytes;
    return *tok;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
    if (!impl_) not_loaded();
    const Impl& im = *impl_;
    std::string out;
    bool first = true;
    for (int32_t id : ids) {
        const tok::AddedToken* a = im.added.by_id(id);
        const std::string* tok = a ? &a->content : im.model.id_to_token(id);
        if (!tok) continue;  // unknown ids are dropped, as tokenizers does
        if (skip_special) {
            // tokenizers tests the token's string against the special set, not the id
            const tok::AddedToken* s = a ? a : im.added.by_content(*tok);
            if (s && s->special) continue;
        }
        if (!im.byte_level_decoder && !first) out += ' ';
        out += token_bytes(id);
        first = false;
    }
    return tok::utf8_lossy(out);
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
    if (!impl_) not_loaded();
    const Impl& im = *impl_;
    if (const tok::AddedToken* a = im.added.by_content(token)) return a->id;
    return im.model.token_to_id(token);
}

int32_t Tokenizer::vocab_size() const {
    if (!impl_) not_loaded();
    return impl_->vocab_size;
}

bool Tokenizer::is_special(int32_t id) const {
    if (!impl_) not_loaded();
    const tok::AddedToken* a = impl_->added.by_id(id);
    return a && a->special;
}

std::string StreamDecoder::push(int32_t id) {
    pending_ += tok_.token_bytes(id);
    const size_t n = tok::utf8_complete_prefix(pending_);
    std::string out = tok::utf8_lossy(std::string_view(pending_).substr(0, n));
    pending_.erase(0, n);
    return out;
}

std::string StreamDecoder::flush() {
    std::string out = tok::utf8_lossy(pending_);
    pending_.clear();
    return out;
}

}  // namespace lmscope
