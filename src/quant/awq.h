// AWQ int4 linears in the AutoAWQ "gemm" layout: binding them from a checkpoint and the fused
// dequantising matmuls. The quantiser and the packing live in quant/awq_pack.h, the search in
// quant/awq_search.h, the checkpoint writer in quant/awq_quantize.h. See docs/awq.md.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "model/weights.h"

namespace lmscope {

class Checkpoint;

/** quantization_config of a config.json as far as AWQ is concerned. */
struct AwqQuantConfig {
    bool present = false;      // quant_method == "awq" (or an AutoAWQ quant_config.json style block)
    int64_t bits = 4;
    int64_t group_size = 128;
    bool zero_point = true;
    std::string version = "gemm";  // lower-cased
    bool is_awq() const { return present; }
};

/**
 * Reads raw["quantization_config"] (keys bits|w_bit, group_size|q_group_size, zero_point,
 * version|format). present is false unless quant_method is "awq". Error naming `label` for what
 * lmscope cannot run: bits != 4, zero_point false, version other than gemm.
 */
AwqQuantConfig parse_awq_quant_config(const nlohmann::json& raw, const std::string& label);

/**
 * Binds `<module_path>.qweight/.qzeros/.scales` (+ optional `.bias`) as LinearFormat::AwqInt4 and
 * validates dtypes and shapes (qweight I32 [in, out/8], qzeros I32 [in/g, out/8], scales F16
 * [in/g, out]). Errors name the tensor, the expected and the found shape; a missing qzeros says so.
 * expect_in / expect_out (>= 0) are checked against the config-implied shape when given.
 * Scales other than F16/F32 are converted to F32 once. tiles: also the CPU decode's column-tile copy
 * (make_awq_linear); off for a model that only feeds a GPU upload.
 */
Linear bind_awq_linear(const Checkpoint& ckpt, const std::string& module_path, int64_t group_size,
                       int64_t expect_in = -1, int64_t expect_out = -1, bool tiles = true);

/**
 * The AwqInt4 Linear over already checked tensors (qweight I32 [in, out/8], qzeros, scales F16/F32
 * [in/g, out], optional bias [out]), with the CPU's tiled copy of qweight (awq_tile_qweight) unless !tiles.
 */
Linear make_awq_linear(std::string name, Tensor qweight, Tensor qzeros, Tensor scales, int64_t group_size,
                       Tensor bias = Tensor(), bool tiles = true);

/** Whether the checkpoint holds `<module_path>.qweight`. */
bool has_awq_linear(const Checkpoint& ckpt, const std::string& module_path);

/** y (T, out) = x (T, in) Wt + b, Wt[k, n] = (q - z) * s dequantised inside the matmul. Reference: double accumulators. */
void linear_awq_ref(const float* x, int64_t T, const Linear& w, float* y);
/** Fast version: threads over blocks of output columns, group tiles dequantised to f32 in registers / L1, AVX2. */
void linear_awq_cpu(const float* x, int64_t T, const Linear& w, float* y);

}  // namespace lmscope
