// A 32-row register transpose of 4-byte elements, shared by the GEMMs' weight packing: the f32 GEMM
// (32 columns of f32) and the bf16 one (32 columns of bf16 k-pairs, one pair per 32-bit element).
#pragma once

#include <cstdint>

namespace lmscope {

/**
 * out[k * 32 + j] = rows[j * ld + k] for j < 32, k < n, elements of 4 bytes (bits copied as they are);
 * 16 x 16 blocks transposed in zmm registers. Needs the AVX-512 level (simd::Isa::Avx512).
 */
void transpose_32(const void* rows, int64_t ld, int64_t n, void* out);

}  // namespace lmscope
