// `lmscope dequantize`: the inverse of `quantize --fp8`, as DeepSeek's fp8_cast_bf16.py does: every
// F8_E4M3 weight becomes dtype(f32(code) * scale of its block), its scale tensor is dropped (static
// activation `input_scale` tensors too) and config.json loses quantization_config; other tensors
// are copied unchanged.
#pragma once

#include <string>

#include "quant/fp8_quantize.h"

namespace lmscope {

struct Fp8DequantizeOptions {
    DType dtype = DType::BF16;
    uint64_t max_shard_bytes = 5000000000ull;
    bool progress = true;
};

Fp8ConvertStats fp8_dequantize_checkpoint(const std::string& in, const std::string& out,
                                          const Fp8DequantizeOptions& opt);

}  // namespace lmscope
