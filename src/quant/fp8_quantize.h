// `lmscope quantize --fp8`: an F32/F16/BF16 checkpoint to the block-FP8 layout of Qwen3-FP8 /
// DeepSeek-V3: every linear weight of the decoder layers (lm_head only when asked) becomes
// F8_E4M3 codes + `weight_scale_inv` F32 [ceil(out/128), ceil(in/128)] with, per block,
// scale = amax / 448 and code = RNE(clamp(w / scale, +-448)); everything else is copied unchanged.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quant/fp8.h"

namespace lmscope {

struct Fp8QuantizeOptions {
    bool include_lm_head = false;    // also quantise lm_head (a tied head is untied: lm_head.weight is written)
    std::vector<std::string> skip;   // modules_to_not_convert patterns (whole dotted segments)
    Fp8BlockSize block;              // 128 x 128
    uint64_t max_shard_bytes = 5000000000ull;
    bool progress = true;
};

struct Fp8ConvertStats {
    int converted = 0;           // linears quantised (or dequantised)
    int kept = 0;                // tensors copied unchanged
    uint64_t in_bytes = 0;       // tensor bytes read
    uint64_t out_bytes = 0;      // tensor bytes written
    double seconds = 0;
    std::vector<std::string> notes;  // things the user should know (unmatched --skip, untied head, ...)
};

Fp8ConvertStats fp8_quantize_checkpoint(const std::string& in, const std::string& out, const Fp8QuantizeOptions& opt);

}  // namespace lmscope
