// Shared by `lmscope quantize --fp8` and `lmscope dequantize`: streaming a converted checkpoint into
// (possibly sharded) safetensors files, one tensor's bytes in memory at a time, and copying the
// tokenizer / generation files beside it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace lmscope {

struct OutTensor {
    std::string name;
    DType dtype = DType::F32;
    Shape shape;
    std::function<void(uint8_t* dst)> produce;
    bool keep_with_next = false;  // e.g. an FP8 weight and its scale go to the same shard
    uint64_t nbytes() const { return static_cast<uint64_t>(shape_numel(shape)) * dtype_size(dtype); }
};

/**
 * Writes `tensors` in order into `dir`/model.safetensors, or into model-0000i-of-0000n.safetensors
 * shards of at most `max_shard_bytes` (a single larger tensor gets its own shard) plus
 * model.safetensors.index.json. Returns the bytes of tensor data written.
 */
uint64_t write_sharded_safetensors(const std::string& dir, const std::vector<OutTensor>& tensors,
                                   uint64_t max_shard_bytes, const std::map<std::string, std::string>& metadata);

/** Copies the tokenizer and generation files that exist in `from` into `to`; returns their names. */
std::vector<std::string> copy_model_side_files(const std::string& from, const std::string& to);

/** The folder of a model path (the path itself when it is a folder). */
std::string model_folder(const std::string& path);

}  // namespace lmscope
