// lmscope tokenize --tokenizer PATH (--text T | --text-file F | --decode IDS) [--json] [--no-special]
// Encodes text with a Hugging Face tokenizer.json (or a model folder holding one) and prints the ids
// on one line (or a JSON array with --json); --decode turns ids back into text. No BOS/EOS is
// added: the ids are what tokenizers' encode(text, add_special_tokens=False) gives.
#include <fmt/format.h>

#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "tokenizer/tokenizer.h"

namespace lmscope {

namespace {

struct TokenizeArgs {
    std::string tokenizer;
    std::string text;
    std::string text_file;
    std::string decode;
    bool json = false;
    bool no_special = false;
};

void run_tokenize(const TokenizeArgs& a, const CLI::App& sub) {
    const bool has_text = sub.count("--text") > 0, has_file = sub.count("--text-file") > 0,
               has_decode = sub.count("--decode") > 0;
    if (int(has_text) + int(has_file) + int(has_decode) != 1)
        throw UsageError("tokenize: give exactly one of --text, --text-file or --decode");
    // ids are checked before the (slower) tokenizer load so bad arguments fail fast
    std::vector<int32_t> ids;
    if (has_decode) ids = parse_id_list(a.decode, "--decode");
    std::string text;
    if (has_text) text = a.text;
    if (has_file) {
        if (a.text_file == "-") {
            text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
        } else {
            text = read_file(a.text_file);
        }
    }

    const Tokenizer tok = Tokenizer::load(a.tokenizer);
    if (has_decode) {
        const std::string out = tok.decode(ids, a.no_special);
        if (a.json) {
            fmt::print("{}\n", nlohmann::json(out).dump());
        } else {
            fmt::print("{}\n", out);
        }
        return;
    }
    ids = tok.encode(text, !a.no_special);
    if (a.json) {
        fmt::print("{}\n", nlohmann::json(ids).dump());
    } else {
        fmt::print("{}\n", fmt::join(ids, " "));
    }
}

}  // namespace

void register_tokenize(CLI::App& app) {
    auto a = std::make_shared<TokenizeArgs>();
    CLI::App* sub =
        app.add_subcommand("tokenize", "Token ids of a text (Hugging Face tokenizer.json), or text of ids");
    sub->add_option("--tokenizer", a->tokenizer, "tokenizer.json, or a model folder that holds one")
        ->required();
    sub->add_option("--text", a->text, "Text to encode");
    sub->add_option("--text-file", a->text_file, "File whose bytes are encoded ('-': standard input)");
    sub->add_option("--decode", a->decode, "Ids to decode instead (\"1,2,3\" or \"1 2 3\")");
    sub->add_flag("--json", a->json, "Print a JSON array of ids (a JSON string with --decode)");
    sub->add_flag(
        "--no-special", a->no_special,
        "Encode added tokens such as <|im_start|> as plain text; with --decode, drop special tokens");
    sub->callback([a, sub]() { run_tokenize(*a, *sub); });
}

}  // namespace lmscope
