// BPE merging (heap of candidate pairs over a doubly linked list of symbols, O(n log n) per
// pre-token) and the vocab/merges loader.
#include "tokenizer/bpe.h"

#include <fmt/format.h>

#include <algorithm>
#include <mutex>
#include <queue>

#include "core/error.h"
#include "tokenizer/byte_level.h"

namespace lmscope::tok {

void PairTable::reserve(size_t n) {
    size_t cap = 16;
    int bits = 4;
    while (cap < n * 2) {
        cap *= 2;
        ++bits;
    }
    keys_.assign(cap, ~0ull);
    vals_.assign(cap, Merge{0, 0});
    shift_ = 64 - bits;
    size_ = 0;
}

void PairTable::insert(int32_t a, int32_t b, Merge m) {
    if ((size_ + 1) * 2 > keys_.size()) {
        // grow: rehash everything into a table twice as large
        std::vector<uint64_t> old_keys = std::move(keys_);
        std::vector<Merge> old_vals = std::move(vals_);
        reserve(std::max<size_t>(16, old_keys.size()));
        for (size_t i = 0; i < old_keys.size(); ++i) {
            if (old_keys[i] != ~0ull)
                insert(int32_t(old_keys[i] >> 32), int32_t(uint32_t(old_keys[i])), old_vals[i]);
        }
    }
    const uint64_t k = key(a, b);
    const size_t mask = keys_.size() - 1;
    for (size_t s = slot(k);; s = (s + 1) & mask) {
        if (keys_[s] == ~0ull) {
            keys_[s] = k;
            vals_[s] = m;
            ++size_;
            return;
        }
        if (keys_[s] == k) {
            vals_[s] = m;
            return;
        }
    }
}

const PairTable::Merge* PairTable::find(int32_t a, int32_t b) const {
    if (keys_.empty()) return nullptr;
    const uint64_t k = key(a, b);
    const size_t mask = keys_.size() - 1;
    for (size_t s = slot(k);; s = (s + 1) & mask) {
        if (keys_[s] == k) return &vals_[s];
        if (keys_[s] == ~0ull) return nullptr;
    }
}

// Pre-token -> ids. Only short pre-tokens are kept (long ones are rare and would bloat it), and
// the map is dropped when it gets large, so memory stays bounded on any input.
struct BpeModel::Cache {
    std::mutex mu;
    std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> map;
    static constexpr size_t kMaxKeyBytes = 256;
    static constexpr size_t kMaxEntries = 200000;
};

BpeModel::BpeModel() : cache_(std::make_unique<Cache>()) {
    std::fill(std::begin(byte_id_), std::end(byte_id_), -1);
}
BpeModel::~BpeModel() = default;
BpeModel::BpeModel(BpeModel&&) noexcept = default;
BpeModel& BpeModel::operator=(BpeModel&&) noexcept = default;

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
    auto it = vocab_.find(token);
    if (it == vocab_.end()) return std::nullopt;
    return it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
    if (id < 0 || size_t(id) >= id_to_token_.size() || !has_id_[size_t(id)]) return nullptr;
    return &id_to_token_[size_t(id)];
}

void BpeModel::encode_word(std::string_view bytes, std::vector<int32_t>& out) const {
    if (bytes.empty()) return;
    if (ignore_merges_) {
        // tokenizers checks the whole (byte-level) pre-token against the vocab before merging
        if (auto id = token_to_id(bytes_to_byte_level(bytes))) {
            out.push_back(*id);
            return;
        }
    }
    if (bytes.size() == 1 && byte_id_[uint8_t(bytes[0])] >= 0) {
        out.push_back(byte_id_[uint8_t(bytes[0])]);
        return;
    }
    const bool cacheable = bytes.size() <= Cache::kMaxKeyBytes;
    if (cacheable) {
        std::lock_guard<std::mutex> lock(cache_->mu);
        auto it = cache_->map.find(bytes);
        if (it != cache_->map.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    std::vector<int32_t> ids;
    merge_word(bytes, ids);
    out.insert(out.end(), ids.begin(), ids.end());
    if (cacheable) {
        std::lock_guard<std::mutex> lock(cache_->mu);
        if (cache_->map.size() >= Cache::kMaxEntries) cache_->map.clear();
        cache_->map.emplace(std::string(bytes), std::move(ids));
    }
}

void BpeModel::merge_word(std::string_view bytes, std::vector<int32_t>& out) const {
    struct Sym {
        int32_t id;
        int32_t prev;
        int32_t next;
        int32_t len;  // bytes covered; 0 once merged into its left neighbour
    };
    std::vector<Sym> syms;
    syms.reserve(bytes.size());
    auto add = [&](int32_t id, int32_t len) {
        const auto n = int32_t(syms.size());
        if (n > 0) syms.back().next = n;
        syms.push_back(Sym{id, n - 1, -1, len});
    };

    // Initial symbols, with tokenizers' rules for characters missing from the vocab: byte
    // fallback tokens <0xXX>, else the unk token (consecutive ones fused when fuse_unk), else drop.
    int32_t unk_len = 0;  // bytes of a pending unk symbol (0: none pending)
    for (char c : bytes) {
        const auto b = uint8_t(c);
        if (byte_id_[b] >= 0) {
            if (unk_len > 0) add(*unk_id_, unk_len);
            unk_len = 0;
            add(byte_id_[b], 1);
            continue;
        }
        if (!byte_fallback_ids_[b].empty()) {
            for (int32_t id : byte_fallback_ids_[b]) add(id, 1);
            continue;
        }
        if (unk_id_) {
            if (unk_len > 0 && !fuse_unk_) {
                add(*unk_id_, unk_len);
                unk_len = 0;
            }
            unk_len += 1;
        }
    }
    if (unk_len > 0) add(*unk_id_, unk_len);

    struct Cand {
        int32_t rank;
        int32_t pos;
        int32_t id;
        bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::vector<Cand> heap_storage;
    heap_storage.reserve(syms.size());
    std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap(std::greater<Cand>{},
                                                                          std::move(heap_storage));
    for (size_t i = 0; i + 1 < syms.size(); ++i) {
        if (const auto* m = merges_.find(syms[i].id, syms[i + 1].id))
            heap.push(Cand{m->rank, int32_t(i), m->id});
    }
    while (!heap.empty()) {
        const Cand top = heap.top();
        heap.pop();
        Sym& left = syms[size_t(top.pos)];
        if (left.len == 0 || left.next < 0) continue;
        const int32_t right_pos = left.next;
        Sym& right = syms[size_t(right_pos)];
        // stale candidate: one side changed since it was pushed
        const auto* m = merges_.find(left.id, right.id);
        if (!m || m->id != top.id) continue;
        left.id = top.id;
        left.len += right.len;
        left.next = right.next;
        right.len = 0;
        if (right.next >= 0) syms[size_t(right.next)].prev = top.pos;
        if (left.prev >= 0) {
            const Sym& p = syms[size_t(left.prev)];
            if (const auto* pm = merges_.find(p.id, left.id)) heap.push(Cand{pm->rank, left.prev, pm->id});
        }
        if (left.next >= 0) {
            const Sym& n = syms[size_t(left.next)];
            if (const auto* nm = merges_.find(left.id, n.id)) heap.push(Cand{nm->rank, top.pos, nm->id});
        }
    }
    for (const Sym& s : syms) {
        if (s.len > 0) out.push_back(s.id);
    }
}

namespace {

// A merge is ["a", "b"] (current files) or "a b" (older files: split at the first space).
std::pair<std::string, std::string> parse_merge(const Json& m, size_t i, const std::string& label) {
    if (m.is_array()) {
        if (m.size() != 2 || !m[0].is_string() || !m[1].is_string())
            fail("{}: model.merges[{}]: expected two strings", label, i);
        return {m[0].get<std::string>(), m[1].get<std::string>()};
    }
    if (m.is_string()) {
        const auto& s = m.get_ref<const std::string&>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos)
            fail("{}: model.merges[{}]: expected \"a b\", found {}", label, i, json_quote(s));
        return {s.substr(0, sp), s.substr(sp + 1)};
    }
    fail("{}: model.merges[{}]: expected an array of two strings or a string, found {}", label, i,
         json_kind(m));
}

}  // namespace

BpeModel BpeModel::from_json(const Json& model, const std::string& label) {
    need_object(model, label, "model");
    // tokenizers omits "type" in some old files; BPE is then inferred from "merges"
    const std::string type = opt_string_field(model, "type", "BPE", label, "model");
    if (type != "BPE") fail("{}: model.type: {} is not supported (only BPE)", label, json_quote(type));
    if (const Json* d = find_field(model, "dropout")) {
        if (!d->is_number()) fail("{}: model.dropout: expected a number, found {}", label, json_kind(*d));
        if (d->get<double>() != 0.0) fail("{}: model.dropout: BPE dropout is not supported", label);
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
        if (!opt_string_field(model, key, "", label, "model").empty())
            fail("{}: model.{}: a non-empty value is not supported", label, key);
    }

    BpeModel bpe;
    bpe.fuse_unk_ = bool_field(model, "fuse_unk", false, label, "model");
    bpe.ignore_merges_ = bool_field(model, "ignore_merges", false, label, "model");
    const bool byte_fallback = bool_field(model, "byte_fallback", false, label, "model");

    const Json& vocab = need_field(model, "vocab", label, "model");
    if (!vocab.is_object()) fail("{}: model.vocab: expected an object, found {}", label, json_kind(vocab));
    constexpr int64_t kMaxId = int64_t(1) << 24;  // far above any real vocab; bounds memory on bad input
    bpe.vocab_.reserve(vocab.size());
    int64_t max_id = -1;
    for (const auto& [tok, idj] : vocab.items()) {
        if (!idj.is_number_integer())
            fail("{}: model.vocab[{}]: expected an integer id, found {}", label, json_quote(tok),
                 json_kind(idj));
        const auto id = idj.get<int64_t>();
        if (id < 0 || id >= kMaxId)
            fail("{}: model.vocab[{}]: id {} is out of range", label, json_quote(tok), id);
        bpe.vocab_.insert_or_assign(tok, int32_t(id));
        max_id = std::max(max_id, id);
    }
    bpe.id_to_token_.resize(size_t(max_id + 1));
    bpe.has_id_.assign(size_t(max_id + 1), false);
    for (const auto& [tok, id] : bpe.vocab_) {
        bpe.id_to_token_[size_t(id)] = tok;
        bpe.has_id_[size_t(id)] = true;
    }

    if (const Json* unk = find_field(model, "unk_token")) {
        if (!unk->is_string())
            fail("{}: model.unk_token: expected a string, found {}", label, json_kind(*unk));
        auto id = bpe.token_to_id(unk->get<std::string>());
        if (!id)
            fail("{}: model.unk_token: {} is not in model.vocab", label, json_quote(unk->get<std::string>()));
        bpe.unk_id_ = *id;
    }

    const ByteLevelTable& table = byte_level_table();
    for (int b = 0; b < 256; ++b) {
        const std::string& ch = table.byte_to_utf8[size_t(b)];
        if (auto id = bpe.token_to_id(ch)) {
            bpe.byte_id_[b] = *id;
        } else if (byte_fallback) {
            // tokenizers spells the fallback from the bytes of the (byte-level) character
            std::vector<int32_t> ids;
            for (char c : ch) {
                auto fid = bpe.token_to_id(fmt::format("<0x{:02X}>", uint8_t(c)));
                if (!fid) {
                    ids.clear();
                    break;
                }
                ids.push_back(*fid);
            }
            bpe.byte_fallback_ids_[b] = std::move(ids);
        }
    }

    const Json& merges = need_field(model, "merges", label, "model");
    if (!merges.is_array()) fail("{}: model.merges: expected an array, found {}", label, json_kind(merges));
    bpe.merges_.reserve(merges.size());
    std::string joined;
    for (size_t i = 0; i < merges.size(); ++i) {
        auto [a, b] = parse_merge(merges[i], i, label);
        auto ia = bpe.token_to_id(a);
        if (!ia) fail("{}: model.merges[{}]: token {} is not in model.vocab", label, i, json_quote(a));
        auto ib = bpe.token_to_id(b);
        if (!ib) fail("{}: model.merges[{}]: token {} is not in model.vocab", label, i, json_quote(b));
        joined.assign(a).append(b);
        auto im = bpe.token_to_id(joined);
        if (!im)
            fail("{}: model.merges[{}]: merged token {} is not in model.vocab", label, i, json_quote(joined));
        bpe.merges_.insert(*ia, *ib, PairTable::Merge{int32_t(i), *im});
    }
    return bpe;
}

}  // namespace lmscope::tok
