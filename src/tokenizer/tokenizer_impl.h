// Private state of lmscope::Tokenizer, shared by the loader (load.cpp) and encode/decode
// (tokenizer.cpp).
#pragma once

#include <string>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/normalize.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

namespace lmscope {

struct Tokenizer::Impl {
    std::string label;  // names the source in errors
    tok::Normalizer normalizer;
    tok::PreTokenizer pre_tokenizer;
    tok::BpeModel model;
    tok::AddedVocab added;
    bool byte_level_decoder = true;  // false: no decoder, tokens are joined with spaces (as tokenizers does)
    int32_t vocab_size = 0;
};

}  // namespace lmscope
