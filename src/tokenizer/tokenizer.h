// Hugging Face tokenizer.json byte-level BPE (Qwen2/Qwen3, Llama 3, GPT-2 style).
// Pipeline: added/special tokens are matched in the raw text first; each remaining span is
// normalized (NFC when the normalizer says so), split by the pre-tokenizer regex (PCRE2, Unicode
// classes), mapped byte -> unicode (GPT-2 table), then merged by BPE rank. Decoding reverses the
// byte mapping; bytes that are not valid UTF-8 become U+FFFD (tokenizers' errors="replace").
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lmscope {

class Tokenizer {
public:
    /** `path`: a tokenizer.json, or a folder that holds one. Error naming the file on bad input. */
    static Tokenizer load(const std::string& path);
    /** Parses tokenizer.json text; `label` names it in errors. */
    static Tokenizer from_json(const std::string& json_text, const std::string& label);
    Tokenizer();
    ~Tokenizer();
    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;

    /** Token ids of `text`; special/added tokens are recognised unless parse_special is false. */
    std::vector<int32_t> encode(std::string_view text, bool parse_special = true) const;
    /** Text of `ids`; special tokens are dropped when skip_special. */
    std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;
    /** Raw bytes a token stands for (special tokens: their content). Empty for unknown ids. */
    std::string token_bytes(int32_t id) const;
    std::optional<int32_t> token_to_id(std::string_view token) const;
    /** Number of ids (base vocab + added tokens, i.e. max id + 1). */
    int32_t vocab_size() const;
    bool is_special(int32_t id) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/** Turns a stream of token ids into text pieces, holding back incomplete UTF-8 sequences. */
class StreamDecoder {
public:
    explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
    /** Text that became printable with this token (may be empty). */
    std::string push(int32_t id);
    /** Whatever is still held back, invalid bytes replaced. */
    std::string flush();

private:
    const Tokenizer& tok_;
    std::string pending_;
};

struct ChatMessage {
    std::string role;  // "system" | "user" | "assistant"
    std::string content;
};

/**
 * Qwen3 chat template, the common case: `<|im_start|>{role}\n{content}<|im_end|>\n` per turn,
 * then `<|im_start|>assistant\n` (+ `<think>\n\n</think>\n\n` when thinking is disabled).
 */
std::string apply_chat_template_qwen3(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                      bool enable_thinking);

}  // namespace lmscope
