// The Qwen3 chat template for plain conversations (no tools, no reasoning content in history).
#include "tokenizer/tokenizer.h"

namespace lmscope {

std::string apply_chat_template_qwen3(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                      bool enable_thinking) {
    std::string out;
    for (const ChatMessage& m : messages) {
        out += "<|im_start|>";
        out += m.role;
        out += '\n';
        out += m.content;
        out += "<|im_end|>\n";
    }
    if (add_generation_prompt) {
        out += "<|im_start|>assistant\n";
        // Qwen3's template closes an empty think block so the model answers directly
        if (!enable_thinking) out += "<think>\n\n</think>\n\n";
    }
    return out;
}

}  // namespace lmscope
