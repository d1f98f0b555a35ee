// Block-wise FP8 (E4M3FN) weights in the DeepSeek-V3 / Qwen3-FP8 layout:
//   <module>.weight            F8_E4M3 (out, in)
//   <module>.weight_scale_inv  F32/BF16/F16 (ceil(out/bo), ceil(in/bi)), bo x bi = weight_block_size
// and W[i, j] = fp8(W)[i, j] * weight_scale_inv[i / bo, j / bi]: despite its name the scale is the
// dequantisation MULTIPLIER (amax/448 of the block), as in DeepSeek's weight_dequant, transformers'
// Fp8Dequantize and vLLM. Blocks at the right / bottom edge are partial (the producer zero-pads to a
// full block before taking amax, which does not change amax); dequantisation crops.
// See docs/fp8.md and ../shared/reference/quant-formats.md section 2.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"

namespace lmscope {

class Checkpoint;
struct ModelConfig;

inline constexpr float kFp8Max = 448.0f;

struct Fp8BlockSize {
    int64_t out = 128;  // weight_block_size[0]: rows (output features) per block
    int64_t in = 128;   // weight_block_size[1]: columns (input features) per block
};

/** quantization_config of a config.json, as far as block FP8 is concerned. */
struct Fp8QuantConfig {
    bool present = false;      // config.json has a quantization_config object
    std::string quant_method;  // "fp8" for block FP8
    std::string fmt = "e4m3";
    std::string activation_scheme = "dynamic";
    Fp8BlockSize block;        // weight_block_size, default [128, 128]
    bool block_from_config = false;
    std::vector<std::string> modules_to_not_convert;  // also read from the alias "ignored_layers"
    bool is_fp8() const { return present && quant_method == "fp8"; }
};

/** Reads raw["quantization_config"]; Error naming `label` and the field when a field is malformed. */
Fp8QuantConfig parse_fp8_quant_config(const nlohmann::json& raw, const std::string& label);

/**
 * True when `pattern`'s dotted segments occur as a run of whole segments of `module`:
 * "self_attn" and "layers.0.self_attn" match "model.layers.0.self_attn.q_proj"; "mlp.gate" does
 * not match "model.layers.0.mlp.gate_proj" and "layers.1" does not match "model.layers.10.mlp".
 */
bool skip_pattern_matches(std::string_view module, std::string_view pattern);
/** The first pattern of `patterns` that matches `module`, if any. */
std::optional<std::string> matching_skip_pattern(std::string_view module, const std::vector<std::string>& patterns);

/** Scale shape of a block-FP8 weight: [ceil(out/bo), ceil(in/bi)]. */
Shape fp8_scale_shape(const Shape& weight_shape, Fp8BlockSize b);
/**
 * "" when `scale_shape` fits `weight_shape` with blocks `b`, else what is wrong, e.g.
 * "scale [6144] for weight [6144, 3072] with 128x128 blocks: expected [48, 24] (one scale per block:
 * ceil(6144/128), ceil(3072/128)); [6144] is a per-row (per-output-channel) scale, not a block scale".
 */
std::string fp8_scale_shape_problem(const Shape& weight_shape, const Shape& scale_shape, Fp8BlockSize b);

/**
 * Reference block quantisation of w (out, in) f32: per block, scale = amax / 448 in f32 (an all-zero
 * block gets scale 1.0, its codes are all 0); code = RNE(clamp(w / scale, -448, 448)) to E4M3FN.
 * codes (out * in), scales (ceil(out/bo) * ceil(in/bi)). Error when w holds NaN or infinity.
 */
void fp8_block_quantize_ref(const float* w, int64_t out, int64_t in, Fp8BlockSize b, uint8_t* codes,
                            float* scales);
/** w (out, in) = f32(code) * scale of its block. */
void fp8_block_dequantize_ref(const uint8_t* codes, const float* scales, int64_t out, int64_t in, Fp8BlockSize b,
                              float* w);

/**
 * The fast path of the quantiser for rows [r0, r1) of a weight stored as any float dtype: computes
 * the scales of the block rows covering them (r0 must be a multiple of b.out) and the codes. Same
 * results as fp8_block_quantize_ref, bit for bit.
 */
void fp8_block_quantize_rows(const void* w, DType dt, int64_t out, int64_t in, Fp8BlockSize b, int64_t r0,
                             int64_t r1, uint8_t* codes, float* scales, const std::string& tensor_name);

/** How one linear module of a checkpoint is stored. */
struct Fp8ModuleLayout {
    std::string module;          // e.g. "model.layers.0.self_attn.q_proj"
    bool fp8 = false;            // F8_E4M3 weight with a block scale
    DType weight_dtype = DType::F32;
    Shape weight_shape;
    std::string scale_name;      // "" when dense
    DType scale_dtype = DType::F32;
    Shape scale_shape;
    std::optional<std::string> skip_match;  // the modules_to_not_convert entry that names it
};

struct Fp8Problem {
    std::string rule;    // "fp8-missing-scale" | "fp8-scale-shape" | "fp8-scale-dtype" | ...
    std::string tensor;  // the tensor concerned
    std::string message;
};

/** What the checkpoint's tensors say about FP8, checked against the config's quantization_config. */
struct Fp8Layout {
    Fp8QuantConfig qc;
    std::vector<Fp8ModuleLayout> modules;  // every linear the config implies that exists in the checkpoint
    std::vector<std::string> scale_tensors;  // names of the scale tensors that belong to an FP8 weight
    std::vector<std::string> warnings;       // one per kind of contradiction
    std::vector<Fp8Problem> errors;          // bad / missing scales: loading fails on the first
    int num_fp8() const;
};

/** Analyses every linear of `cfg` in `ckpt` (does not read tensor data). Never throws for tensor problems. */
Fp8Layout analyze_fp8_layout(const Checkpoint& ckpt, const ModelConfig& cfg);

/** Name of the scale tensor for `weight_name` ("x.weight" -> "x.weight_scale_inv" or "x.weight_scale"), or "". */
std::string find_fp8_scale_name(const Checkpoint& ckpt, const std::string& weight_name);

/** The linear modules of a decoder config (q/k/v/o, gate/up/down per layer, then lm_head), in checkpoint naming. */
std::vector<std::string> linear_module_names(const ModelConfig& cfg);

}  // namespace lmscope
