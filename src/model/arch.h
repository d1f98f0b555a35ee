// What differs between the supported decoder architectures. Each architecture is one small file
// (arch_qwen3.cpp, arch_qwen2.cpp, arch_llama.cpp) defining its traits; the forward pass
// (decoder.cpp) is shared and reads only ModelConfig flags.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "model/config.h"

namespace lmscope {

struct ArchTraits {
    Arch arch;
    const char* hf_architecture;  // config.json "architectures"[0]
    const char* model_type;       // config.json "model_type"
    double default_rope_theta;    // transformers' config-class defaults, used when a field is absent
    double default_rms_norm_eps;
    /** Sets the architecture's bias / norm flags from the parsed json. */
    void (*apply_flags)(const nlohmann::json& j, ModelConfig& cfg, const std::string& label);
};

extern const ArchTraits kQwen3Traits;
extern const ArchTraits kQwen2Traits;
extern const ArchTraits kLlamaTraits;

/** Traits for an "architectures" entry, or nullptr. */
const ArchTraits* find_arch(std::string_view hf_architecture);

/** Optional boolean field; Error naming the field if present with another type. */
bool json_bool(const nlohmann::json& j, const char* key, bool fallback, const std::string& label);

}  // namespace lmscope
