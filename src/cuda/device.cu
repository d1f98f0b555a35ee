// Device queries, the CUDA error path and the event timer of the CUDA backend.

#include "cuda/common.cuh"
#include "cuda/cuda_api.h"

namespace lmscope::cuda {

bool built_with_cuda() { return true; }

int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();  // clear the sticky "no driver" error
        return 0;
    }
    return n;
}

std::string device_description() {
    cudaDeviceProp p{};
    CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
    int drv = 0, rt = 0;
    CUDA_CHECK(cudaDriverGetVersion(&drv));
    CUDA_CHECK(cudaRuntimeGetVersion(&rt));
    return format_msg("{}, {} SMs, {} GiB, cc {}.{}, L2 {} MiB, driver {}, runtime {}", p.name,
                       p.multiProcessorCount, static_cast<int>(static_cast<double>(p.totalGlobalMem) / (1u << 30) * 10) / 10.0, p.major, p.minor,
                       p.l2CacheSize >> 20, drv, rt);
}

GpuTimer::GpuTimer() {
    cudaEvent_t a, b;
    CUDA_CHECK(cudaEventCreate(&a));
    CUDA_CHECK(cudaEventCreate(&b));
    a_ = a;
    b_ = b;
}
GpuTimer::~GpuTimer() {
    cudaEventDestroy(static_cast<cudaEvent_t>(a_));
    cudaEventDestroy(static_cast<cudaEvent_t>(b_));
}
void GpuTimer::start() {
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(a_), nullptr));
}
double GpuTimer::stop_ms() {
    // CudaDecoder calls return after their stream is done, so this event follows their work
    CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(b_), nullptr));
    CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(b_)));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(a_), static_cast<cudaEvent_t>(b_)));
    return ms;
}

}  // namespace lmscope::cuda
