// Internal entry points of the quantized linear formats (linear_fp8*.cu, linear_awq*.cu), used by
// linear.cu (dispatch of linear_gemv_cuda / linear_gemm_cuda) and linear_upload.cu. Layouts: see
// DeviceLinear in ops_cuda.h.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"
#include "ops/cuda/ops_cuda.h"

namespace lmscope::cuda {

/** linear_gemv_cuda for w.format == Fp8Block / AwqInt4. */
void gemv_fp8_cuda(const float* x, int64_t T, const DeviceLinear& w, const GemvIn& in, float* y, int64_t y_stride,
                   bool accumulate, cudaStream_t stream);
void gemv_awq_cuda(const float* x, int64_t T, const DeviceLinear& w, const GemvIn& in, float* y, int64_t y_stride,
                   bool accumulate, cudaStream_t stream);

/** The tensor-core GEMVs (gemv_tc.cuh), gemv_{fp8,awq}_cuda's path for the tiled layouts (quant::{fp8,awq}_tiled). */
void gemv_fp8_tc_cuda(const float* x, int64_t T, const DeviceLinear& w, const GemvIn& in, float* y, int64_t y_stride,
                      bool accumulate, cudaStream_t stream);
void gemv_awq_tc_cuda(const float* x, int64_t T, const DeviceLinear& w, const GemvIn& in, float* y, int64_t y_stride,
                      bool accumulate, cudaStream_t stream);

/** Rows up to which linear_gemm_cuda runs quantized weights through qgemm_cuda (linear_qgemm.cu). */
constexpr int64_t kMaxQgemmRows = 64;
/** True when qgemm_cuda takes this weight, T and output dtype (LMSCOPE_CUDA_QGEMM=0 turns it off). */
bool qgemm_supported(const DeviceLinear& w, int64_t T, DType y_dtype);
/**
 * y (T, out) (+)= x (T, in) W^T + b for an FP8 / AWQ weight on tensor cores, the weight read once;
 * x in w.dtype (BF16/F16), y f32 or w.dtype. T <= kMaxQgemmRows.
 */
void qgemm_cuda(const void* x, int64_t T, const DeviceLinear& w, void* y, DType y_dtype, bool accumulate,
                cudaStream_t stream);

/** How a small-batch quantized GEMM splits its K steps (qgemm_split). */
struct QgemmSplit {
    int per = 1;          // K steps a split
    int splits = 1;       // grid.y
    bool atomic = false;  // f32 partial sums added atomically into y
};
/**
 * The small-batch GEMMs' split of `steps` K steps over `mblocks` row blocks (f32 outputs only, at least
 * 2 steps a split). With `resident` (blocks of the kernel that fit an SM) > 0: the split that
 * minimises waves x (steps a split + 2), waves = ceil(blocks / (resident x SMs)), the fewest splits on
 * a tie, so that the grid is whole waves (a tail wave of a few blocks costs as much as a full one);
 * with 0, K is split until about 6 blocks per SM. When it splits and does not accumulate, y (T, out)
 * f32 is zeroed on `stream` first.
 */
QgemmSplit qgemm_split(int steps, int mblocks, bool f32_out, int64_t T, int64_t out, void* y, bool accumulate,
                       cudaStream_t stream, int resident = 0);
/**
 * qgemm_cuda's kernel for the tiled layouts, bf16 or f16 activations (linear_qgemm_tc.cu: the weights go
 * from registers into the tensor cores, never through shared memory): true when it takes w at T
 * (LMSCOPE_CUDA_QGEMM_TC=0 turns it off; a value other than 0 / 1 is a UsageError naming it).
 */
bool qgemm_tc_supported(const DeviceLinear& w, int64_t T);
void qgemm_tc_cuda(const void* x, int64_t T, const DeviceLinear& w, void* y, DType y_dtype, bool accumulate,
                   cudaStream_t stream);

/** dst (out, in) in w.dtype (BF16/F16) = the dequantised weight. */
void dequant_fp8_cuda(const DeviceLinear& w, void* dst, cudaStream_t stream);
void dequant_awq_cuda(const DeviceLinear& w, void* dst, cudaStream_t stream);

/**
 * FP8 codes (rows, in) of one part (device, row-major) -> rows row_off .. row_off + rows of the
 * tiled layout (quant::fp8_tiled_byte; in % 64 == 0).
 */
void fp8_tile_codes_cuda(const uint8_t* src, int64_t rows, int64_t in, int64_t row_off, uint8_t* dst, cudaStream_t stream);

/**
 * AutoAWQ gemm tensors of one linear (device: qweight I32 (in, out/8), qzeros I32 (in/g, out/8),
 * scales (in/g, out) in `sdt` F16/BF16/F32) -> rows row_off .. row_off + out of the DeviceLinear
 * layout: qw (rows, in/8) u32 and sz (rows, in/g) u32 (f16 scale | f16 (1024 + zero) << 16).
 */
void awq_repack_cuda(const void* qweight, const void* qzeros, const void* scales, DType sdt, int64_t in, int64_t out,
                     int64_t group, int64_t row_off, uint32_t* qw, uint32_t* sz, cudaStream_t stream);

}  // namespace lmscope::cuda
