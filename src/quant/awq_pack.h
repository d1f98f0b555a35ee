// AWQ int4 group quantisation and the AutoAWQ "gemm" packing (WQLinear_GEMM).
//
// Quantiser (llm-awq / AutoAWQ pseudo_quantize_tensor, w_bit 4, zero_point true): groups of
// `group` consecutive INPUT channels of each output row of W (out, in):
//   s = max(max - min, 1e-5) / 15;  z = clamp(-round(min / s), 0, 15);  q = clamp(round(w / s) + z, 0, 15)
//   W' = (q - z) * s            (round = half to even, like torch.round)
// Packing (from_linear): Wt = W^T (in, out); nibble i (bits 4i..4i+3) of qweight[k, c] holds logical
// output column 8c + kAwqOrder[i]; qzeros packs z^T (in/g, out) the same way; scales = s^T as F16.
// Dequantisation: Wt[k, n] = (q[k, n] - z[k/g, n]) * s[k/g, n].
// See docs/awq.md and ../shared/reference/quant-formats.md section 1.7 / 1.9.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace lmscope {

inline constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};
/** Logical column c (0..7) of a packed int32 sits at bits 4 * kAwqReverseOrder[c]. */
inline constexpr int kAwqReverseOrder[8] = {0, 4, 1, 5, 2, 6, 3, 7};

/**
 * Arithmetic of the quantiser. F32: every step in float32 (the search; torch on f32 tensors).
 * F16: the weight is rounded to float16 first and every step is rounded to float16, like AutoAWQ's
 * final quantisation of a `.half()` linear (what ends up in the checkpoint).
 */
enum class AwqMath { F32, F16 };

/** Result of quantising W (out, in): codes and per-(row, group) parameters, row-major. */
struct AwqQuantized {
    int64_t out = 0, in = 0, group = 0;
    std::vector<uint8_t> q;      // (out, in) codes 0..15
    std::vector<float> scales;   // (out, in/group)  (exactly representable in f16 when AwqMath::F16)
    std::vector<uint8_t> zeros;  // (out, in/group)  0..15
    int64_t n_groups() const { return in / group; }
};

/** Error unless group > 0 divides in (names `what`, e.g. the tensor). */
void awq_check_group(int64_t in, int64_t group, const std::string& what);

/**
 * Fake-quantises w (out, in) in place: w <- (q - z) * s (in `math`'s precision). When `res` is not
 * null it receives the codes and parameters. NaN/inf in w is an Error naming `what`.
 */
void awq_pseudo_quantize(float* w, int64_t out, int64_t in, int64_t group, AwqMath math, AwqQuantized* res = nullptr,
                         const std::string& what = "weight");

/** Packs codes q (out, in) into qweight (in, out/8) int32 with the AWQ order. out % 8 == 0. */
std::vector<int32_t> awq_pack_qweight(const uint8_t* q, int64_t out, int64_t in);
/** Packs zeros (out, n_groups) into qzeros (n_groups, out/8). */
std::vector<int32_t> awq_pack_qzeros(const uint8_t* zeros, int64_t out, int64_t n_groups);
/** scales (out, n_groups) f32 -> F16 bits (n_groups, out). */
std::vector<uint16_t> awq_pack_scales(const float* scales, int64_t out, int64_t n_groups);

/** The three checkpoint tensors of one linear. */
struct AwqPacked {
    Tensor qweight;  // I32 (in, out/8)
    Tensor qzeros;   // I32 (in/g, out/8)
    Tensor scales;   // F16 (in/g, out)
};
AwqPacked awq_pack(const AwqQuantized& qr);

/** Output columns per tile and input rows per block of awq_tile_qweight's layout (one 64-byte block). */
inline constexpr int64_t kAwqTileCols = 16;
inline constexpr int64_t kAwqTileRows = 8;
/**
 * qweight (in, pc) I32 regrouped for the CPU decode GEMV's integer dot products (ops/cpu/awq_rows_avx512.cpp):
 * tile t = output columns 16 t .. 16 t + 15, block b = input rows 8 b .. 8 b + 7; int32 lane j of block (t, b)
 * holds the 8 codes of column 16 t + j, row 8 b + i at bits 4 i (logical column order, no AWQ permutation):
 * out[(t * in / 8 + b) * 16 + j]; shape (ceil(out / 16), in / 8, 16), columns past out are code 0. The same
 * bytes as qweight; a tile's blocks are contiguous, so a column range streams sequentially. An undefined
 * tensor when in % 8 != 0 (the GEMV then reads the gemm layout).
 */
Tensor awq_tile_qweight(const Tensor& qweight);
/**
 * Each tile's zero points and scales, group by group, for the same GEMV: record (t, gi) = the two qzeros
 * int32 of columns 16 t .. 16 t + 15 (packed as in qzeros), then their 16 scales (F16 bits, two a lane, or
 * F32), I32 (ceil(out / 16), in / g, 2 + 8 or 2 + 16); values past out are 0. In qzeros / scales a group's
 * row is out values long, so a tile read one line of each per group, lines `out` x 2 bytes apart that
 * fell into 1-2 L1 sets for out = 1024 / 2048 (cpu_notes v19); here they follow each other.
 */
Tensor awq_tile_groups(const Tensor& qzeros, const Tensor& scales);

/** Code of packed column n (logical) from a packed row: (packed[n/8] >> 4*kAwqReverseOrder[n%8]) & 15. */
inline int awq_unpack_nibble(const int32_t* packed_row, int64_t n) {
    return static_cast<int>((static_cast<uint32_t>(packed_row[n / 8]) >> (4 * kAwqReverseOrder[n % 8])) & 15u);
}
/** qweight (rows, cols/8) -> codes (rows, cols) in logical order. */
std::vector<uint8_t> awq_unpack(const int32_t* packed, int64_t rows, int64_t cols);

/**
 * Dequantises packed tensors to Wt (in, out) f32: (q - z) * s with s read from `scales` (F16/F32/BF16).
 * Shapes are validated (Error naming `name`, expected and found shapes).
 */
std::vector<float> awq_dequantize_t(const Tensor& qweight, const Tensor& qzeros, const Tensor& scales,
                                    int64_t group, const std::string& name);

/**
 * "" when the three tensors have the AutoAWQ gemm shapes/dtypes for group `group`, else a message
 * naming the tensor (`name`.qweight / .qzeros / .scales) with expected and found shape.
 * in/out are taken from qweight unless given (>= 0).
 */
std::string awq_shape_problem(const std::string& name, const Tensor& qweight, const Tensor& qzeros,
                              const Tensor& scales, int64_t group, int64_t in = -1, int64_t out = -1);

}  // namespace lmscope
