// Tokenizer::load / from_json: reads tokenizer.json and builds each pipeline stage, rejecting
// what is not supported with one error line naming the file and the field. truncation, padding
// and post_processor are not read: encode() never adds special tokens, truncates or pads.
#include <filesystem>

#include "core/error.h"
#include "io/atomic_file.h"
#include "tokenizer/tokenizer_impl.h"

namespace lmscope {

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::load(const std::string& path) {
    std::error_code ec;
    std::string file = path;
    if (std::filesystem::is_directory(path, ec))
        file = (std::filesystem::path(path) / "tokenizer.json").string();
    return from_json(read_file(file), file);
}

Tokenizer Tokenizer::from_json(const std::string& json_text, const std::string& label) {
    tok::Json root;
    try {
        root = tok::Json::parse(json_text);
    } catch (const tok::Json::exception& e) {
        fail("{}: not valid JSON: {}", label, e.what());
    }
    if (!root.is_object())
        fail("{}: expected a JSON object at the top level, found {}", label, tok::json_kind(root));

    auto impl = std::make_unique<Impl>();
    impl->label = label;
    try {
        impl->normalizer = tok::Normalizer::from_json(tok::find_field(root, "normalizer"), label);
        impl->model = tok::BpeModel::from_json(tok::need_field(root, "model", label, "(root)"), label);
        impl->pre_tokenizer = tok::PreTokenizer::from_json(tok::find_field(root, "pre_tokenizer"), label);
        impl->added = tok::AddedVocab::from_json(tok::find_field(root, "added_tokens"), impl->model,
                                                 impl->normalizer, label);
        if (const tok::Json* dec = tok::find_field(root, "decoder")) {
            tok::need_object(*dec, label, "decoder");
            const std::string type = tok::string_field(*dec, "type", label, "decoder");
            if (type != "ByteLevel")
                fail("{}: decoder.type: {} is not supported (only ByteLevel)", label, tok::json_quote(type));
        } else {
            impl->byte_level_decoder = false;
        }
    } catch (const tok::Json::exception& e) {
        // nlohmann type errors we did not anticipate still become one line naming the file
        fail("{}: unexpected JSON content: {}", label, e.what());
    }
    impl->vocab_size = std::max(impl->model.max_id(), impl->added.max_id()) + 1;
    Tokenizer t;
    t.impl_ = std::move(impl);
    return t;
}

}  // namespace lmscope
