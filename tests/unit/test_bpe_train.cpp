// BPE training (src/train/bpe_train.h): merges happen as counted, the tokenizer.json it writes is read
// back by src/tokenizer's Tokenizer with exactly the ids of our own encoder (plain text, unseen text,
// Unicode, digits, whitespace runs, contractions), specials get the ids after the merges, decode
// round-trips, bad UTF-8 is refused, and training on the Brown corpus (when fetched) takes < 60 s.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>

#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "train/bpe_train.h"
#include "train/data.h"

using namespace lmscope;
using namespace lmscope::train;

namespace {

std::string sample_text() {
    std::string t;
    for (int i = 0; i < 40; ++i)
        t += "The quick brown fox doesn't jump over the lazy dog; it's 1995 and they'll say 12345 words.\n"
             "  Indented line\twith tabs,   spaces and punctuation!!! (really?) \"quoted\" -- dashes...\n\n";
    t += "Caf\xC3\xA9 na\xC3\xAFve \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x98\x80 r\xC3\xA9sum\xC3\xA9\n";
    return t;
}

}  // namespace

TEST(BpeTrain, HfTokenizerReadsBackSameIds) {
    const std::string text = sample_text();
    BpeTrainStats st;
    BpeTokenizer tk = BpeTokenizer::train({text}, 256 + 9 + 120, &st);
    EXPECT_EQ(tk.vocab_size(), 256 + 9 + 120);
    EXPECT_GE(st.merges, 120);
    Tokenizer hf = Tokenizer::from_json(tk.to_hf_json(), "trained tokenizer.json");
    EXPECT_EQ(hf.vocab_size(), tk.vocab_size());
    const std::vector<std::string> probes = {
        text,
        "unseen words: zebra quixotic xylophone",
        "numbers 1 22 333 4444 55555",
        "  leading and trailing   \n\n\n",
        "they're we've I'm you'd she'll DON'T",
        "\xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80\xF0\x9F\x98\x80 caf\xC3\xA9",
        "a",
        "",
    };
    for (const std::string& p : probes) {
        const std::vector<int32_t> ours = tk.encode(p);
        EXPECT_EQ(hf.encode(p, false), ours) << p.substr(0, 40);
        EXPECT_EQ(hf.decode(ours), p);
    }
    // merges compress: fewer tokens than bytes on the training text
    EXPECT_LT(tk.encode(text).size(), text.size() / 2);
    // specials follow the ordinary tokens
    ASSERT_TRUE(hf.token_to_id("<|bos|>").has_value());
    EXPECT_EQ(*hf.token_to_id("<|bos|>"), tk.bos_id());
    EXPECT_EQ(*hf.token_to_id("<|output_end|>"), tk.vocab_size() - 1);
    const std::vector<int32_t> with_bos = hf.encode("<|bos|>The fox", true);
    ASSERT_FALSE(with_bos.empty());
    EXPECT_EQ(with_bos[0], tk.bos_id());
}

TEST(BpeTrain, RejectsBadInput) {
    EXPECT_THROW(BpeTokenizer::train({std::string("ok \xFF bad")}, 400), Error);
    EXPECT_THROW(BpeTokenizer::train({std::string("text")}, 100), Error);  // below 256 + 9
    // a tiny corpus stops when no pair is left
    BpeTokenizer tk = BpeTokenizer::train({std::string("abab")}, 1000);
    EXPECT_LT(tk.vocab_size(), 1000);
}

TEST(BpeTrain, BrownTrainsInUnderAMinute) {
    std::string dir;
    try {
        dir = find_brown_dir();
    } catch (const Error&) {
        GTEST_SKIP() << "Brown corpus not available (tools/fetch_assets.sh)";
    }
    Corpus c = load_brown();
    std::vector<std::string_view> texts;
    for (const Document& d : c.train) texts.push_back(d.text);
    BpeTrainStats st;
    BpeTokenizer tk = BpeTokenizer::train(texts, 8192, &st);
    std::printf("BPE: %.1f MB, %lld unique pre-tokens, %lld merges in %.2f s\n", double(st.bytes) / 1e6,
                (long long)st.unique_words, (long long)st.merges, st.seconds);
    EXPECT_EQ(tk.vocab_size(), 8192);
    EXPECT_LT(st.seconds, 60.0);
    Tokenizer hf = Tokenizer::from_json(tk.to_hf_json(), "brown tokenizer.json");
    EXPECT_EQ(hf.encode(c.val[0].text, false), tk.encode(c.val[0].text));
}
