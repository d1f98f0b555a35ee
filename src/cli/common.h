// Small helpers shared by the CLI commands.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lmscope {

struct ModelWeights;

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
/**
 * --bf16-activations: the prefill linears over BF16 and AWQ int4 weights round x to bf16 and multiply with
 * vdpbf16ps (ops.h, set_bf16_activation_mode). `weights` of the loaded model (null for a GPT folder): a note
 * when none of its linears is BF16 or AWQ, and one when the CPU lacks AVX512-BF16 (the same rounding through
 * the f32 kernels, no speed-up). CPU only: `device` "cuda" is an error.
 */
void apply_bf16_activations_flag(bool on, const ModelWeights* weights, const std::string& device, const char* command);
inline constexpr const char* kBf16ActivationsHelp =
    "BF16 and AWQ int4 checkpoints: round the prefill linears' activations to bf16 (vdpbf16ps with AVX512-BF16, "
    "~2x the f32 GEMM); decode stays f32; default: f32 activations";
/** "1.19 GB", "256 B" ... */
std::string human_bytes(double bytes);
/** "596.0M", "1.2B" ... */
std::string human_count(double n);

}  // namespace lmscope
