// Small helpers shared by the CLI commands.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lmscope {

/** "1,2, 3" or "1 2 3" -> ids; UsageError naming `flag` on anything else. */
std::vector<int32_t> parse_id_list(const std::string& s, const std::string& flag);
/**
 * --fp8-activations: switch the FP8-block matmuls to dynamic per-token 1x128 activation quantisation
 * (DeepSeek / vLLM's scheme). `num_fp8_linears` of the loaded model: 0 prints a note that the flag
 * changes nothing. The CUDA backend computes with f32 activations only, so `device` "cuda" is an error.
 */
void apply_fp8_activations_flag(bool on, int num_fp8_linears, const std::string& device, const char* command);
inline constexpr const char* kFp8ActivationsHelp =
    "FP8-block checkpoints: quantise activations too, per token in 1x128 groups (dynamic, as DeepSeek/vLLM); "
    "default: weight-only, activations stay f32";
/** "1.19 GB", "256 B" ... */
std::string human_bytes(double bytes);
/** "596.0M", "1.2B" ... */
std::string human_count(double n);

}  // namespace lmscope
