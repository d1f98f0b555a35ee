// Shared CUDA helpers: CUDA_CHECK / CUBLAS_CHECK (statement, file, line -> lmscope::Error),
// an owning device buffer, bf16/f16 load/store helpers and warp reductions.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "core/dtype.h"
#include "cuda/errors.h"


#define CUDA_CHECK(stmt)                                                                         \
    do {                                                                                         \
        cudaError_t err_ = (stmt);                                                               \
        if (err_ != cudaSuccess)                                                                 \
            ::lmscope::cuda::cuda_fail(cudaGetErrorString(err_), #stmt, __FILE__, __LINE__);     \
    } while (0)

#define CUBLAS_CHECK(stmt)                                                                       \
    do {                                                                                         \
        cublasStatus_t st_ = (stmt);                                                             \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                                        \
            ::lmscope::cuda::cuda_fail(cublasGetStatusString(st_), #stmt, __FILE__, __LINE__);   \
    } while (0)

// after every launch
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

namespace lmscope::cuda {

/** Owning device allocation (cudaMalloc; never managed memory). */
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(size_t bytes) { resize(bytes); }
    ~DeviceBuffer() { release(); }
    DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
        if (this != &o) { release(); p_ = o.p_; n_ = o.n_; o.p_ = nullptr; o.n_ = 0; }
        return *this;
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    /** Reallocates (contents lost) when `bytes` exceeds the current size. Returns true if it moved. */
    bool reserve(size_t bytes) {
        if (bytes <= n_) return false;
        resize(bytes);
        return true;
    }
    void resize(size_t bytes) {
        release();
        if (bytes) CUDA_CHECK(cudaMalloc(&p_, bytes));
        n_ = bytes;
    }
    void release() {
        if (p_) cudaFree(p_);
        p_ = nullptr;
        n_ = 0;
    }
    void upload(const void* host, size_t bytes, size_t offset = 0) {
        CUDA_CHECK(cudaMemcpy(static_cast<char*>(p_) + offset, host, bytes, cudaMemcpyHostToDevice));
    }
    void download(void* host, size_t bytes) const {
        CUDA_CHECK(cudaMemcpy(host, p_, bytes, cudaMemcpyDeviceToHost));
    }
    template <typename T = void>
    T* get() const { return static_cast<T*>(p_); }
    size_t size() const { return n_; }

private:
    void* p_ = nullptr;
    size_t n_ = 0;
};

// ---- element access, any stored float dtype -> f32 ----
__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
template <typename T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/** Block-wide sum for blockDim.x a multiple of 32 (<= 1024); every thread gets the result. */
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float part[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // part may still be read by a previous call
    if (lane == 0) part[warp] = v;
    __syncthreads();
    v = lane < nw ? part[lane] : 0.0f;
    return warp_sum(v);
}

/** Position and sequence of row r (see RowPos in ops/cuda/ops_cuda.h). */
template <typename RP>
__device__ __forceinline__ int64_t row_pos(const RP& rp, int64_t r) { return rp.pos ? rp.pos[r] : rp.pos0 + r; }
template <typename RP>
__device__ __forceinline__ int64_t row_seq(const RP& rp, int64_t r) {
    return rp.seq ? rp.seq[r] : (rp.seq_is_row ? r : rp.seq0);
}

/** Multiprocessors of the current device (read once). */
inline int sm_count() {
    static const int n = [] {
        int dev = 0, v = 0;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
        return v;
    }();
    return n;
}

/**
 * The cudaLaunchKernelEx configuration of a launch: programmatic dependent launch when `pdl` (see
 * launch_kernel), a thread-block cluster of cluster_z blocks along z when cluster_z > 1. cfg points into
 * the object, so it is neither copied nor moved.
 */
struct LaunchConfig {
    cudaLaunchConfig_t cfg{};
    cudaLaunchAttribute attr[2]{};
    LaunchConfig(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, bool pdl, unsigned cluster_z = 1) {
        cfg.gridDim = grid;
        cfg.blockDim = block;
        cfg.dynamicSmemBytes = smem;
        cfg.stream = stream;
        cfg.attrs = attr;
        if (pdl) {
            attr[cfg.numAttrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
            attr[cfg.numAttrs++].val.programmaticStreamSerializationAllowed = 1;
        }
        if (cluster_z > 1) {
            attr[cfg.numAttrs].id = cudaLaunchAttributeClusterDimension;
            attr[cfg.numAttrs++].val.clusterDim = {1, 1, cluster_z};
        }
    }
    LaunchConfig(const LaunchConfig&) = delete;
    LaunchConfig& operator=(const LaunchConfig&) = delete;
};

/**
 * kernel<<<grid, block, smem, stream>>>(args...), as a programmatic dependent launch when `pdl`: the
 * kernel may then start while the one before it runs, so before its `griddepcontrol.wait` (which
 * returns once the previous grid has completed and its writes are visible) it may only read memory
 * that no kernel of the sequence writes (weights, KV rows of earlier steps) and write nothing.
 */
template <typename... P, typename... A>
void launch_kernel(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, bool pdl, A&&... args) {
    const LaunchConfig lc(grid, block, smem, stream, pdl);
    CUDA_CHECK(cudaLaunchKernelEx(&lc.cfg, kernel, std::forward<A>(args)...));
}

/**
 * The kernel prefers the largest shared-memory carveout (the split of an SM's on-chip memory between L1
 * and shared memory). Asked for by the dense decode GEMV (and the opt-in attention block, which needs
 * it): measured on an H100 (cuda_notes, eighth session), 0.6B BF16 batch-1 decode 1088 -> 1111 tok/s at
 * P = 512, 1125 -> 1162 at P = 64; 8B BF16 162.6-162.8 -> 161.7-161.8 (-0.6%, the price of the 0.6B gain,
 * kept since the 0.6B step is the one below its goal). The same preference for the FP8 GEMVs cost 2.5-3.5% of
 * 0.6B FP8 decode and for the cluster attention nothing measurable, so they keep the driver's choice.
 */
inline void prefer_shared_carveout(const void* kernel) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                    cudaSharedmemCarveoutMaxShared));
}

inline unsigned ceil_div(int64_t a, int64_t b) { return static_cast<unsigned>((a + b - 1) / b); }

/** Calls f with a typed null pointer of the element type of a float dtype (F32, BF16, F16). */
template <typename F>
void dispatch_float(DType dt, F&& f) {
    switch (dt) {
        case DType::F32: f(static_cast<float*>(nullptr)); break;
        case DType::BF16: f(static_cast<__nv_bfloat16*>(nullptr)); break;
        case DType::F16: f(static_cast<__half*>(nullptr)); break;
        default: cuda_fail("unsupported dtype", dtype_name(dt), __FILE__, __LINE__);
    }
}

}  // namespace lmscope::cuda
