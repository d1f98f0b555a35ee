// AWQ int4 decode GEMV on tensor cores (gemv_tc.cuh's format with tc::AwqDecoder, quant_tc.cuh), beside
// linear_awq.cu's row-per-lane loader, which it replaces when `in` and the group are multiples of 128
// (quant::awq_tiled: every AutoAWQ gemm checkpoint of group 128; the upload then writes qw tiled).
#include "cuda/common.cuh"
#include "ops/cuda/gemv_tc.cuh"
#include "ops/cuda/linear_quant.cuh"
#include "ops/cuda/quant_tc.cuh"

namespace lmscope::cuda {

void gemv_awq_tc_cuda(const float* x, int64_t T, const DeviceLinear& w, const GemvIn& in, float* y, int64_t y_stride,
                      bool accumulate, cudaStream_t stream) {
    gemv::run_tc<tc::AwqDecoder>(tc::AwqDecoder::params(w), x, T, w, in, y, y_stride, accumulate, stream);
}

}  // namespace lmscope::cuda
