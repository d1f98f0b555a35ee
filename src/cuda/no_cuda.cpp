// The CUDA backend's entry points in a build without nvcc (mlx-style stub): device_count() is 0,
// everything else throws Error("built without CUDA"). Compiled to nothing when CUDA is on.
#ifndef LMSCOPE_HAVE_CUDA

#include "core/error.h"
#include "cuda/cuda_api.h"

namespace lmscope::cuda {

namespace {
[[noreturn]] void no_cuda() {
    throw Error("built without CUDA: reconfigure with nvcc on the PATH (cmake -DLMSCOPE_CUDA=ON)");
}
}  // namespace

bool built_with_cuda() { return false; }
int device_count() { return 0; }
std::string device_description() { no_cuda(); }

struct CudaDecoder::Impl {};
CudaDecoder::CudaDecoder(const DecoderModel&, CudaOptions) { no_cuda(); }
CudaDecoder::~CudaDecoder() = default;
const ModelConfig& CudaDecoder::config() const { no_cuda(); }
size_t CudaDecoder::weight_bytes() const { no_cuda(); }
size_t CudaDecoder::kv_bytes_per_position() const { no_cuda(); }
std::string CudaDecoder::batch1_step() const { no_cuda(); }
void CudaDecoder::reset(int, int64_t) { no_cuda(); }
void CudaDecoder::clear() { no_cuda(); }
int64_t CudaDecoder::length(int) const { no_cuda(); }
void CudaDecoder::prefill(int, const int32_t*, int64_t, float*, bool, TensorObserver*) { no_cuda(); }
void CudaDecoder::decode(const int32_t*, float*) { no_cuda(); }
void CudaDecoder::decode_greedy(const int32_t*, int, int32_t*) { no_cuda(); }
void CudaDecoder::sample_next(const SamplingParams&, const double*, int32_t*) { no_cuda(); }
void CudaDecoder::synchronize() { no_cuda(); }

GpuTimer::GpuTimer() { no_cuda(); }
GpuTimer::~GpuTimer() = default;
void GpuTimer::start() { no_cuda(); }
double GpuTimer::stop_ms() { no_cuda(); }

}  // namespace lmscope::cuda

#endif  // LMSCOPE_HAVE_CUDA
