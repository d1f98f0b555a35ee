// The decode GEMV skeleton every weight format shares (linear.cu: dense, linear_fp8.cu, linear_awq.cu).
// A block of kWarps warps stages f(x) for NT <= 8 rows in shared memory once (RMSNorm or SwiGLU
// fused into the staging), then each warp takes F::kRows output rows at a time and asks the
// format's rows_dot for their NT dot products (16-byte streamed weight loads, dequantised in
// registers; x read once from shared memory for all kRows rows); warp-shuffle sums; bias and the
// residual add in the store. The format F provides:
//   struct Params;                       device pointers of the weight
//   static constexpr int kRows;          output rows per warp pass
//   row_base(p, row, in), row_bytes(in)  the weight bytes of one row (PDL prefetch)
//   rows_dot<NT>(p, row0, out, in, X, lane, accu[kRows][NT])   this lane's partial sums
// x rows in shared memory are swizzled when in % 32 == 0: 16-byte unit u of a 128-byte line is
// stored at u ^ (line % 8), so the lanes of a quarter warp that each read a contiguous 16..128-byte
// run (bf16: 32 B, FP8: 64 B, AWQ: 128 B of x per 16-byte weight load) hit distinct banks.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <mutex>

#include "cuda/common.cuh"
#include "ops/cuda/ops_cuda.h"

namespace lmscope::cuda::gemv {

constexpr int kWarps = 8;

// streamed once: keep it out of L1
__device__ __forceinline__ uint4 load_stream(const uint4* p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
}

/** Word q (compile-time after unrolling) of a 16-byte load. */
__device__ __forceinline__ uint32_t word(const uint4& v, int q) { return q == 0 ? v.x : q == 1 ? v.y : q == 2 ? v.z : v.w; }

/** What one launch computes: y (T, out) (+)= f(x) W^T + b for T <= NT rows. */
struct Args {
    int in = 0, out = 0, T = 0;
    const float* x = nullptr;
    int64_t x_stride = 0, up_off = 0;
    const float* nw = nullptr;
    float eps = 1e-6f;
    const float* bias = nullptr;
    float* y = nullptr;
    int64_t y_stride = 0;
    bool acc = false;
};

/** The staged rows f(x) (NT, in) in shared memory, read through the swizzle. */
struct Xs {
    const float* p;
    int in;
    bool swz;
    __device__ __forceinline__ int unit(int i4) const { return swz ? (i4 ^ ((i4 >> 3) & 7)) : i4; }
    __device__ __forceinline__ int pos(int i) const { return (unit(i >> 2) << 2) | (i & 3); }
    /** Element i of row t. */
    __device__ __forceinline__ float at(int t, int i) const { return p[t * in + pos(i)]; }
    /** Elements 4 i4 .. 4 i4 + 3 of row t (in % 4 == 0). */
    __device__ __forceinline__ float4 at4(int t, int i4) const {
        return reinterpret_cast<const float4*>(p + t * in)[unit(i4)];
    }
};

template <int NT, GemvInput MODE>
__device__ __forceinline__ void stage_x(float* xs, const Args& a, const Xs& X) {
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        const float* xr = a.x + static_cast<int64_t>(t) * a.x_stride;
        float inv = 1.0f;
        if (MODE == GemvInput::RmsNorm && t < a.T) {
            float ss = 0;
            for (int i = threadIdx.x; i < a.in; i += blockDim.x) ss += xr[i] * xr[i];
            ss = block_sum(ss);
            inv = rsqrtf(ss / static_cast<float>(a.in) + a.eps);
        }
        for (int i = threadIdx.x; i < a.in; i += blockDim.x) {
            float v = 0.0f;
            if (t < a.T) {
                if (MODE == GemvInput::Plain) {
                    v = xr[i];
                } else if (MODE == GemvInput::RmsNorm) {
                    v = xr[i] * inv;
                    if (a.nw) v *= a.nw[i];
                } else {
                    const float g = xr[i];
                    v = g / (1.0f + expf(-g)) * xr[a.up_off + i];
                }
            }
            xs[t * a.in + X.pos(i)] = v;
        }
    }
}

template <class F, int NT, GemvInput MODE>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(typename F::Params w, Args a, bool pdl) {
    extern __shared__ float4 xs4[];
    float* xs = reinterpret_cast<float*>(xs4);  // (NT, in) transformed inputs
    constexpr int RPW = F::kRows;
    // Programmatic dependent launch (LMSCOPE_CUDA_PDL=1, off by default: slower in bench/cuda_notes.md
    // v2): this grid may start while the previous kernel still runs. The weights do not depend on it:
    // pull this warp's first rows into L2 now, then wait for the inputs.
    if (pdl) {
        const int lane0 = threadIdx.x & 31, warp0 = threadIdx.x >> 5;
        const int64_t row_bytes = F::row_bytes(a.in);
        int n = 0;
        for (int row = (blockIdx.x * kWarps + warp0) * RPW; row < a.out && n < 4; row += gridDim.x * kWarps * RPW, ++n) {
            for (int r = 0; r < RPW && row + r < a.out; ++r) {
                const char* base = F::row_base(w, row + r, a.in);
                for (int64_t off = lane0 * 128; off < row_bytes; off += 32 * 128)
                    asm volatile("prefetch.global.L2 [%0];" ::"l"(base + off));
            }
        }
        asm volatile("griddepcontrol.wait;" ::: "memory");
        asm volatile("griddepcontrol.launch_dependents;");
    }
    const Xs X{xs, a.in, a.in % 32 == 0};
    stage_x<NT, MODE>(xs, a, X);
    __syncthreads();

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int row0 = (blockIdx.x * kWarps + warp) * RPW; row0 < a.out; row0 += gridDim.x * kWarps * RPW) {
        float accu[RPW][NT];
#pragma unroll
        for (int r = 0; r < RPW; ++r)
#pragma unroll
            for (int t = 0; t < NT; ++t) accu[r][t] = 0.0f;
        F::template rows_dot<NT>(w, row0, a.out, a.in, X, lane, accu);
#pragma unroll
        for (int r = 0; r < RPW; ++r)
#pragma unroll
            for (int t = 0; t < NT; ++t) accu[r][t] = warp_sum(accu[r][t]);
        if (lane == 0) {
#pragma unroll
            for (int r = 0; r < RPW; ++r) {
                const int row = row0 + r;
                if (row >= a.out) break;
                const float b = a.bias ? a.bias[row] : 0.0f;
#pragma unroll
                for (int t = 0; t < NT; ++t)
                    if (t < a.T) {
                        float* dst = a.y + static_cast<int64_t>(t) * a.y_stride + row;
                        *dst = (a.acc ? *dst : 0.0f) + accu[r][t] + b;
                    }
            }
        }
    }
}

inline int sm_count() {
    static int n = [] {
        int dev = 0, v = 0;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
        return v;
    }();
    return n;
}

// dynamic shared memory a GEMV block may take: the opt-in limit less room for static shared memory
inline size_t max_smem_optin() {
    static size_t n = [] {
        int dev = 0, v = 0;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
        return static_cast<size_t>(v) - 1024;
    }();
    return n;
}

inline bool pdl_enabled() {
    static const bool on = [] {
        const char* e = std::getenv("LMSCOPE_CUDA_PDL");
        return e && std::atoi(e) == 1;
    }();
    return on;
}

template <class F, int NT, GemvInput MODE>
void launch(const typename F::Params& w, const Args& a, cudaStream_t stream) {
    const size_t smem = sizeof(float) * NT * static_cast<size_t>(a.in);
    static std::once_flag once;
    std::call_once(once, [] {
        cudaFuncAttributes fa{};
        CUDA_CHECK(cudaFuncGetAttributes(&fa, gemv_kernel<F, NT, MODE>));
        const size_t dyn = max_smem_optin() + 1024 - fa.sharedSizeBytes;
        CUDA_CHECK(cudaFuncSetAttribute(gemv_kernel<F, NT, MODE>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(dyn)));
    });
    const int64_t rows_per_block = kWarps * F::kRows;
    // enough blocks to fill every SM several times; each block stages x once and loops over rows
    const int64_t per_sm = std::max<int64_t>(1, std::min<int64_t>(8, static_cast<int64_t>(200 * 1024 / (smem + 1024))));
    const int64_t grid = std::min<int64_t>((a.out + rows_per_block - 1) / rows_per_block, sm_count() * per_sm);
    if (!pdl_enabled()) {
        gemv_kernel<F, NT, MODE><<<static_cast<unsigned>(grid), kWarps * 32, smem, stream>>>(w, a, false);
        CUDA_CHECK_LAUNCH();
        return;
    }
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(static_cast<unsigned>(grid));
    cfg.blockDim = dim3(kWarps * 32);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, gemv_kernel<F, NT, MODE>, w, a, true));
    CUDA_CHECK_LAUNCH();
}

// T rows in passes of 8 / 4 / 2 / 1 (as many as fit in shared memory)
template <class F, GemvInput MODE>
void rows(const typename F::Params& w, const Args& a0, cudaStream_t stream) {
    const size_t cap = max_smem_optin() / (sizeof(float) * static_cast<size_t>(a0.in));
    if (cap < 1) fail_rt("linear_gemv_cuda: in_features {} too large for shared memory", a0.in);
    for (int t0 = 0; t0 < a0.T;) {
        const int left = a0.T - t0;
        Args a = a0;
        a.x = a0.x + t0 * a0.x_stride;
        a.y = a0.y + t0 * a0.y_stride;
        if (left >= 8 && cap >= 8) {
            a.T = 8;
            launch<F, 8, MODE>(w, a, stream);
        } else if (left > 2 && cap >= 4) {
            a.T = std::min(left, 4);
            launch<F, 4, MODE>(w, a, stream);
        } else if (left == 2 && cap >= 2) {
            a.T = 2;
            launch<F, 2, MODE>(w, a, stream);
        } else {
            a.T = 1;
            launch<F, 1, MODE>(w, a, stream);
        }
        t0 += a.T;
    }
}

/** linear_gemv_cuda for the format F with its device pointers `p`. */
template <class F>
void run(const typename F::Params& p, const float* x, int64_t T, const DeviceLinear& w, const GemvIn& in, float* y,
         int64_t y_stride, bool accumulate, cudaStream_t stream) {
    Args a;
    a.in = static_cast<int>(w.in);
    a.out = static_cast<int>(w.out);
    a.T = static_cast<int>(T);
    a.x = x;
    a.x_stride = in.x_stride ? in.x_stride : w.in;
    a.up_off = in.up_offset;
    a.nw = in.norm_weight;
    a.eps = in.eps;
    a.bias = w.bias;
    a.y = y;
    a.y_stride = y_stride;
    a.acc = accumulate;
    switch (in.mode) {
        case GemvInput::Plain: rows<F, GemvInput::Plain>(p, a, stream); break;
        case GemvInput::RmsNorm: rows<F, GemvInput::RmsNorm>(p, a, stream); break;
        case GemvInput::SiluMul: rows<F, GemvInput::SiluMul>(p, a, stream); break;
    }
}

}  // namespace lmscope::cuda::gemv
