// The tensors of a decoder checkpoint, bound by role and validated against the config.
// Weights stay in their stored dtype and borrow the mmap'ed file bytes (no conversion at load).
#pragma once

#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/safetensors.h"
#include "model/config.h"

namespace lmscope {

/** How a linear layer's weight is stored. */
enum class LinearFormat {
    Dense,     // weight (out, in) F32/F16/BF16
    Fp8Block,  // weight (out, in) F8_E4M3 codes; scale = weight_scale_inv (ceil(out/bo), ceil(in/bi)) float
    AwqInt4,   // AutoAWQ gemm: weight = qweight I32 (in, out/8); qzeros I32 (in/g, out/8); scale F16 (in/g, out)
};

/** y = x W^T (+ b). The weight stays in its stored format; the matmul dequantises on the fly. */
struct Linear {
    std::string name;  // module path, e.g. "model.layers.0.self_attn.q_proj"
    LinearFormat format = LinearFormat::Dense;
    Tensor weight;
    Tensor bias;    // (out) optional
    Tensor scale;   // Fp8Block / AwqInt4 only
    Tensor qzeros;  // AwqInt4 only
    Tensor qweight_tiles;  // AwqInt4: weight regrouped by column tile for the CPU GEMV (awq_tile_qweight), optional
    Tensor group_tiles;    // AwqInt4, with qweight_tiles: zero points and scales per tile (awq_tile_groups)
    Tensor fp8_rows4;      // Fp8Block: the codes in the 4-row layout (ops/cpu/fp8_rows.h), optional
    int64_t block_out = 128, block_in = 128;  // Fp8Block block size
    int64_t group_size = 128;                 // AwqInt4 group size along in
    int64_t in_features = 0, out_features = 0;
    int64_t in() const { return in_features; }
    int64_t out() const { return out_features; }
    /** Dense linear over a float weight (out, in). */
    static Linear dense(std::string name, Tensor weight, Tensor bias = Tensor());
};

struct LayerWeights {
    Tensor input_norm;  // (H)
    Tensor post_norm;   // (H)
    Tensor q_norm;      // (head_dim), Qwen3 only
    Tensor k_norm;      // (head_dim), Qwen3 only
    Linear q, k, v, o;
    Linear gate, up, down;
};

struct ModelWeights {
    Tensor embed;       // (V, H)
    Tensor final_norm;  // (H)
    Linear lm_head;     // (V, H); the embedding table when tied
    std::vector<LayerWeights> layers;
    size_t bytes = 0;   // total bytes of the tensors used (FP8 codes and their scales included)
    int num_fp8_linears = 0;            // linears stored as block FP8 (LinearFormat::Fp8Block)
    std::vector<std::string> warnings;  // config vs tensors contradictions (printed once at load)
};

/**
 * Binds and validates every tensor the config implies. Errors name the tensor, the file, the
 * expected shape with the config fields it comes from, and the found shape or dtype.
 * A linear whose weight is F8_E4M3 with a `weight_scale_inv` (or `weight_scale`) tensor becomes
 * LinearFormat::Fp8Block (block size from quantization_config.weight_block_size, default 128x128);
 * the tensors decide, not modules_to_not_convert. Contradictions with the config are collected in
 * ModelWeights::warnings and printed to stderr (one line per kind) unless `print_warnings` is false.
 * cpu_copies: the CPU decode's own copies of quantized weights (AWQ column tiles, the FP8 4-row layout);
 * false for a model that only feeds a GPU upload.
 */
ModelWeights load_weights(const Checkpoint& ckpt, const ModelConfig& cfg, bool print_warnings = true,
                          bool cpu_copies = true);

}  // namespace lmscope
