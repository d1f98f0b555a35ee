// FP8-block (E4M3) decode GEMV on tensor cores (gemv_tc.cuh's format with tc::Fp8Decoder, quant_tc.cuh),
// beside linear_fp8.cu's row-per-lane loader, which it replaces when `in` and block_in are multiples of
// 64 and the matrix has at least 8M weights (quant::fp8_tiled: the DeepSeek-V3 / Qwen3-FP8 128 x 128
// blocks of 8B-class models; the upload then writes the codes tiled, fp8_tile_codes_cuda).
#include "cuda/common.cuh"
#include "ops/cuda/gemv_tc.cuh"
#include "ops/cuda/linear_quant.cuh"
#include "ops/cuda/quant_tc.cuh"

namespace lmscope::cuda {

void gemv_fp8_tc_cuda(const float* x, int64_t T, const DeviceLinear& w, const GemvIn& in, float* y, int64_t y_stride,
                      bool accumulate, cudaStream_t stream) {
    gemv::run_tc<tc::Fp8Decoder>(tc::Fp8Decoder::params(w), x, T, w, in, y, y_stride, accumulate, stream);
}

}  // namespace lmscope::cuda
