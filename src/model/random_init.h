// Writes a Hugging Face layout checkpoint (config.json, model.safetensors or shards + index) with
// random weights of a given config, streaming one tensor at a time, atomically.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace lmscope {

struct RandomInitOptions {
    DType dtype = DType::BF16;
    uint64_t seed = 0;
    std::string tokenizer;              // tokenizer.json to copy in (optional)
    uint64_t max_shard_bytes = 5000000000ull;  // like transformers' "5GB"
    bool progress = true;
};

/**
 * Linear and embedding weights ~ U(-a, a) with std 0.02 (transformers' initializer_range), norm
 * weights ~ U(0.9, 1.1), biases ~ U(-0.02, 0.02). Each tensor's values depend only on (seed, name).
 */
void write_random_checkpoint(const nlohmann::json& config, const std::string& out_dir, const RandomInitOptions& opt);

}  // namespace lmscope
