// Register-level decoding of the quantized weight formats (DeviceLinear layouts in ops_cuda.h),
// shared by the GEMV loaders (linear_fp8.cu, linear_awq.cu), their dequantisation kernels and the
// small-batch tensor-core GEMM (linear_qgemm.cu).
#pragma once

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

namespace lmscope::cuda::quant {

/** log2(block / unit) when block / unit is a whole power of two, else -1 (host and device). */
__host__ __device__ constexpr int pow2_shift(int block, int unit) {
    if (block <= 0 || block % unit) return -1;
    const int r = block / unit;
    if (r & (r - 1)) return -1;
    int s = 0;
    while ((1 << s) < r) ++s;
    return s;
}

// ---- FP8 E4M3: the hardware e4m3x2 -> f16x2 conversion (exact), then f32 ----
__device__ __forceinline__ float2 fp8x2_to_f32(uint32_t v16) {
    const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(v16), __NV_E4M3);
    return __half22float2(__half2(h));
}
/** 4 codes (lowest byte first) -> f32. */
__device__ __forceinline__ void fp8x4_to_f32(uint32_t v, float* f) {
    const float2 a = fp8x2_to_f32(v & 0xffffu), b = fp8x2_to_f32(v >> 16);
    f[0] = a.x;
    f[1] = a.y;
    f[2] = b.x;
    f[3] = b.y;
}
__device__ __forceinline__ float fp8_to_f32(uint8_t c) {
    return __half2float(__half(__nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(c), __NV_E4M3)));
}

// ---- AWQ int4, repacked word (8 consecutive input columns, AutoAWQ interleave) ----
/**
 * The tensor-core GEMVs' weight layout (gemv_tc.cuh): a row's 16-byte units u (upr of them) reordered
 * as (16-row tile, group of 4 units, (row % 16) / 8, 4 (row % 8) + u % 4), so that each of a warp's
 * two loads per chunk reads 512 contiguous bytes and a tile's chunks follow each other. Rows are
 * padded to a multiple of 16. Used when in and the group (block) are multiples of the chunk.
 */
template <typename I = int64_t>  // unsigned 32-bit where it is evaluated per load (linear_qgemm.cu): shifts only
__host__ __device__ inline I tiled_unit(I row, I u, I upr) {
    return (((row / 16) * (upr / 4) + u / 4) * 2 + (row % 16) / 8) * 32 + (row % 8) * 4 + u % 4;
}
/** AWQ qw (4 words of 8 nibbles a unit, 128-k chunks) in the tiled layout when in and the group are multiples of 128. */
__host__ __device__ constexpr bool awq_tiled(int64_t in, int64_t group) { return in % 128 == 0 && group % 128 == 0; }
/** Word index of (row, kw): tiled (awq_tiled, decided once on the host) or row-major. */
__host__ __device__ inline int64_t awq_word(int64_t row, int64_t kw, int64_t in, bool tiled) {
    return tiled ? tiled_unit(row, kw / 4, in / 32) * 4 + kw % 4 : row * (in / 8) + kw;
}
/**
 * FP8 codes (16 a unit, 64-k chunks) in the tiled layout when in and block_in are multiples of 64 and
 * the matrix has at least 8M weights (H100 probe: the tensor-core GEMV took 1.5-19% less time on the
 * 8B shapes, 17-100M weights, and 1-23% more on the 0.6B ones, 2-6M; bench/cuda_notes.md v20).
 */
__host__ __device__ constexpr bool fp8_tiled(int64_t out, int64_t in, int64_t block_in) {
    return in % 64 == 0 && block_in % 64 == 0 && out * in >= (int64_t{8} << 20);
}
/** Byte index of code (row, k) of the tiled layout. */
__host__ __device__ inline int64_t fp8_tiled_byte(int64_t row, int64_t k, int64_t in) {
    return tiled_unit(row, k / 16, in / 16) * 16 + k % 16;
}
/** Byte index of code (row, k): tiled (fp8_tiled, decided once on the host) or row-major. */
__host__ __device__ inline int64_t fp8_byte(int64_t row, int64_t k, int64_t in, bool tiled) {
    return tiled ? fp8_tiled_byte(row, k, in) : row * in + k;
}

/** q - z of the 8 columns of a word as f32: f16 (1024 + q) by one LOP3 per pair, minus f16 (1024 + z) (exact). */
__device__ __forceinline__ void awq_word_to_f32(uint32_t w, __half2 z2, float* f) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const uint32_t b = ((w >> (4 * j)) & 0x000F000Fu) | 0x64006400u;  // f16 (1024 + q) in each half
        const float2 v = __half22float2(__hsub2(*reinterpret_cast<const __half2*>(&b), z2));
        f[2 * j] = v.x;
        f[2 * j + 1] = v.y;
    }
}
/** The group's f16 scale (low half of a scale word) as f32. */
__device__ __forceinline__ float sz_scale(uint32_t sz) {
    return __half2float(__ushort_as_half(static_cast<unsigned short>(sz & 0xffffu)));
}
/** f16 (1024 + zero) (high half of a scale word) in both lanes. */
__device__ __forceinline__ __half2 sz_zero2(uint32_t sz) {
    return __half2half2(__ushort_as_half(static_cast<unsigned short>(sz >> 16)));
}

}  // namespace lmscope::cuda::quant
