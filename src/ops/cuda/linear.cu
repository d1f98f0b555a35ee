// CUDA linear layers. Decode: a GEMV kernel that streams the weight once per up to 8 activation rows
// (16-byte loads, 4 in flight per lane, one warp per output row, warp-shuffle sums), with the input
// transform (RMSNorm or SwiGLU) fused into the staging of x in shared memory and the residual add
// fused into the store. Prefill / large batches: cuBLAS GEMM on 16-bit activations, f32 accumulate.
// Beside ops/ref/linear.cpp and ops/cpu/linear.cpp. FP8-block / AWQ weights plug in as another
// weight loader in gemv_kernel (see docs/cuda.md); they are rejected with a clear error for now.

#include <cstdlib>
#include <mutex>

#include "cuda/common.cuh"
#include "ops/cuda/ops_cuda.h"

namespace lmscope::cuda {

namespace {

constexpr int kGemvWarps = 8;
constexpr int kUnroll = 4;

// 16 bytes of weights -> f32
template <typename WT>
struct Vec16;
template <>
struct Vec16<__nv_bfloat16> {
    static constexpr int N = 8;
    __device__ static void unpack(const uint4& r, float* f) {
        const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&r);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 v = __bfloat1622float2(h[i]);
            f[2 * i] = v.x;
            f[2 * i + 1] = v.y;
        }
    }
};
template <>
struct Vec16<__half> {
    static constexpr int N = 8;
    __device__ static void unpack(const uint4& r, float* f) {
        const __half2* h = reinterpret_cast<const __half2*>(&r);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 v = __half22float2(h[i]);
            f[2 * i] = v.x;
            f[2 * i + 1] = v.y;
        }
    }
};
template <>
struct Vec16<float> {
    static constexpr int N = 4;
    __device__ static void unpack(const uint4& r, float* f) {
        f[0] = __uint_as_float(r.x);
        f[1] = __uint_as_float(r.y);
        f[2] = __uint_as_float(r.z);
        f[3] = __uint_as_float(r.w);
    }
};

// streamed once: keep it out of L1
__device__ __forceinline__ uint4 load_stream(const uint4* p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
}

template <typename WT, int NT, GemvInput MODE>
__global__ void __launch_bounds__(kGemvWarps * 32) gemv_kernel(const WT* __restrict__ W, const float* __restrict__ bias,
                                                             int in, int out, const float* __restrict__ x,
                                                             int64_t x_stride, int64_t up_off, const float* nw,
                                                             float eps, int T, float* y, int64_t y_stride, bool acc,
                                                             bool pdl) {
    extern __shared__ float4 xs4[];
    float* xs = reinterpret_cast<float*>(xs4);  // (NT, in) transformed inputs
    // Programmatic dependent launch (LMSCOPE_CUDA_PDL=1, off by default: slower in bench/cuda_notes.md
    // v2): this grid may start while the previous kernel still runs. The weights do not depend on it:
    // pull this warp's first rows into L2 now, then wait for the inputs.
    if (pdl) {
        const int lane0 = threadIdx.x & 31, warp0 = threadIdx.x >> 5;
        const int64_t row_bytes = static_cast<int64_t>(in) * sizeof(WT);
        int n = 0;
        for (int row = blockIdx.x * kGemvWarps + warp0; row < out && n < 4; row += gridDim.x * kGemvWarps, ++n) {
            const char* base = reinterpret_cast<const char*>(W) + row * row_bytes;
            for (int64_t off = lane0 * 128; off < row_bytes; off += 32 * 128)
                asm volatile("prefetch.global.L2 [%0];" ::"l"(base + off));
        }
    }
    if (pdl) {
        asm volatile("griddepcontrol.wait;" ::: "memory");
        asm volatile("griddepcontrol.launch_dependents;");
    }
    // ---- stage f(x) ----
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        const float* xr = x + static_cast<int64_t>(t) * x_stride;
        float inv = 1.0f;
        if (MODE == GemvInput::RmsNorm && t < T) {
            float ss = 0;
            for (int i = threadIdx.x; i < in; i += blockDim.x) ss += xr[i] * xr[i];
            ss = block_sum(ss);
            inv = rsqrtf(ss / static_cast<float>(in) + eps);
        }
        for (int i = threadIdx.x; i < in; i += blockDim.x) {
            float v = 0.0f;
            if (t < T) {
                if (MODE == GemvInput::Plain) {
                    v = xr[i];
                } else if (MODE == GemvInput::RmsNorm) {
                    v = xr[i] * inv;
                    if (nw) v *= nw[i];
                } else {
                    const float g = xr[i];
                    v = g / (1.0f + expf(-g)) * xr[up_off + i];
                }
            }
            xs[t * in + i] = v;
        }
    }
    __syncthreads();

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    constexpr int VN = Vec16<WT>::N;
    const bool vec = in % VN == 0;
    for (int row = blockIdx.x * kGemvWarps + warp; row < out; row += gridDim.x * kGemvWarps) {
        float accu[NT];
#pragma unroll
        for (int t = 0; t < NT; ++t) accu[t] = 0.0f;
        const WT* wr = W + static_cast<int64_t>(row) * in;
        if (vec) {
            const uint4* w4 = reinterpret_cast<const uint4*>(wr);
            const int nv = in / VN;
            for (int k0 = lane; k0 < nv; k0 += 32 * kUnroll) {
                uint4 raw[kUnroll];
#pragma unroll
                for (int u = 0; u < kUnroll; ++u)
                    if (k0 + u * 32 < nv) raw[u] = load_stream(w4 + k0 + u * 32);
#pragma unroll
                for (int u = 0; u < kUnroll; ++u) {
                    const int k = k0 + u * 32;
                    if (k < nv) {
                        float wf[VN];
                        Vec16<WT>::unpack(raw[u], wf);
#pragma unroll
                        for (int t = 0; t < NT; ++t) {
                            const float4* xv = reinterpret_cast<const float4*>(xs + t * in + k * VN);
#pragma unroll
                            for (int e = 0; e < VN / 4; ++e) {
                                const float4 a = xv[e];
                                accu[t] += wf[4 * e] * a.x + wf[4 * e + 1] * a.y + wf[4 * e + 2] * a.z +
                                           wf[4 * e + 3] * a.w;
                            }
                        }
                    }
                }
            }
        } else {
            for (int k = lane; k < in; k += 32) {
                const float wv = to_f32(wr[k]);
#pragma unroll
                for (int t = 0; t < NT; ++t) accu[t] += wv * xs[t * in + k];
            }
        }
#pragma unroll
        for (int t = 0; t < NT; ++t) accu[t] = warp_sum(accu[t]);
        if (lane == 0) {
            const float b = bias ? bias[row] : 0.0f;
#pragma unroll
            for (int t = 0; t < NT; ++t)
                if (t < T) {
                    float* dst = y + static_cast<int64_t>(t) * y_stride + row;
                    *dst = (acc ? *dst : 0.0f) + accu[t] + b;
                }
        }
    }
}

int sm_count() {
    static int n = [] {
        int dev = 0, v = 0;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
        return v;
    }();
    return n;
}

// dynamic shared memory a GEMV block may take: the opt-in limit less room for static shared memory
size_t max_smem_optin() {
    static size_t n = [] {
        int dev = 0, v = 0;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
        return static_cast<size_t>(v) - 1024;
    }();
    return n;
}

template <typename WT, int NT, GemvInput MODE>
void launch_gemv(const DeviceLinear& w, const float* x, int64_t T, const GemvIn& in, float* y, int64_t y_stride,
                 bool acc, cudaStream_t stream) {
    const size_t smem = sizeof(float) * NT * static_cast<size_t>(w.in);
    static std::once_flag once;
    std::call_once(once, [] {
        cudaFuncAttributes fa{};
        CUDA_CHECK(cudaFuncGetAttributes(&fa, gemv_kernel<WT, NT, MODE>));
        const size_t dyn = max_smem_optin() + 1024 - fa.sharedSizeBytes;
        CUDA_CHECK(cudaFuncSetAttribute(gemv_kernel<WT, NT, MODE>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(dyn)));
    });
    const int64_t rows_per_block = kGemvWarps;
    // enough blocks to fill every SM several times; each block stages x once and loops over rows
    const int64_t per_sm = std::max<int64_t>(1, std::min<int64_t>(8, static_cast<int64_t>(200 * 1024 / (smem + 1024))));
    const int64_t grid = std::min<int64_t>((w.out + rows_per_block - 1) / rows_per_block, sm_count() * per_sm);
    static const bool pdl = [] {
        const char* e = std::getenv("LMSCOPE_CUDA_PDL");
        return e && std::atoi(e) == 1;
    }();
    const int64_t xstride = in.x_stride ? in.x_stride : w.in;
    if (!pdl) {
        gemv_kernel<WT, NT, MODE><<<static_cast<unsigned>(grid), kGemvWarps * 32, smem, stream>>>(
            static_cast<const WT*>(w.weight), w.bias, static_cast<int>(w.in), static_cast<int>(w.out), x, xstride,
            in.up_offset, in.norm_weight, in.eps, static_cast<int>(T), y, y_stride, acc, false);
        CUDA_CHECK_LAUNCH();
        return;
    }
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(static_cast<unsigned>(grid));
    cfg.blockDim = dim3(kGemvWarps * 32);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, gemv_kernel<WT, NT, MODE>, static_cast<const WT*>(w.weight), w.bias,
                                  static_cast<int>(w.in), static_cast<int>(w.out), x,
                                  static_cast<int64_t>(in.x_stride ? in.x_stride : w.in), static_cast<int64_t>(in.up_offset),
                                  in.norm_weight, in.eps, static_cast<int>(T), y, y_stride, acc, true));
    CUDA_CHECK_LAUNCH();
}

template <typename WT, GemvInput MODE>
void gemv_rows(const DeviceLinear& w, const float* x, int64_t T, const GemvIn& in, float* y, int64_t y_stride,
               bool acc, cudaStream_t stream) {
    const int64_t xs = in.x_stride ? in.x_stride : w.in;
    const size_t cap = max_smem_optin() / (sizeof(float) * static_cast<size_t>(w.in));
    if (cap < 1) fail_rt("linear_gemv_cuda: in_features {} too large for shared memory", w.in);
    for (int64_t t0 = 0; t0 < T;) {
        const int64_t left = T - t0;
        const float* xp = x + t0 * xs;
        float* yp = y + t0 * y_stride;
        if (left >= 8 && cap >= 8) {
            launch_gemv<WT, 8, MODE>(w, xp, 8, in, yp, y_stride, acc, stream), t0 += 8;
        } else if (left > 2 && cap >= 4) {
            const int64_t n = std::min<int64_t>(left, 4);
            launch_gemv<WT, 4, MODE>(w, xp, n, in, yp, y_stride, acc, stream), t0 += n;
        } else if (left == 2 && cap >= 2) {
            launch_gemv<WT, 2, MODE>(w, xp, 2, in, yp, y_stride, acc, stream), t0 += 2;
        } else {
            launch_gemv<WT, 1, MODE>(w, xp, 1, in, yp, y_stride, acc, stream), t0 += 1;
        }
    }
}

void check_dense(const DeviceLinear& w, const char* who) {
    if (w.format != LinearFormat::Dense)
        fail_rt("{}: {} weights have no CUDA kernel yet (dense F32/F16/BF16 only; see docs/cuda.md)", who,
             w.format == LinearFormat::Fp8Block ? "FP8-block" : "AWQ int4");
}

cudaDataType_t cuda_type(DType dt) {
    switch (dt) {
        case DType::F32: return CUDA_R_32F;
        case DType::BF16: return CUDA_R_16BF;
        case DType::F16: return CUDA_R_16F;
        default: fail_rt("cuBLAS: unsupported dtype {}", dtype_name(dt));
    }
}

}  // namespace

void linear_gemv_cuda(const float* x, int64_t T, const DeviceLinear& w, const GemvIn& in, float* y, int64_t y_stride,
                      bool accumulate, cudaStream_t stream) {
    if (T <= 0) return;
    check_dense(w, "linear_gemv_cuda");
    dispatch_float(w.dtype, [&](auto* tp) {
        using WT = std::remove_pointer_t<decltype(tp)>;
        switch (in.mode) {
            case GemvInput::Plain: gemv_rows<WT, GemvInput::Plain>(w, x, T, in, y, y_stride, accumulate, stream); break;
            case GemvInput::RmsNorm: gemv_rows<WT, GemvInput::RmsNorm>(w, x, T, in, y, y_stride, accumulate, stream); break;
            case GemvInput::SiluMul: gemv_rows<WT, GemvInput::SiluMul>(w, x, T, in, y, y_stride, accumulate, stream); break;
        }
    });
}

void linear_cuda(const float* x, int64_t T, const DeviceLinear& w, float* y, cudaStream_t stream) {
    linear_gemv_cuda(x, T, w, GemvIn{}, y, w.out, false, stream);
}

cublasHandle_t default_cublas() {
    static cublasHandle_t h = [] {
        cublasHandle_t hh;
        CUBLAS_CHECK(cublasCreate(&hh));
        static DeviceBuffer ws(size_t(32) << 20);  // fixed workspace: no allocation inside graph capture
        CUBLAS_CHECK(cublasSetWorkspace(hh, ws.get(), ws.size()));
        return hh;
    }();
    return h;
}

void linear_gemm_cuda(cublasHandle_t handle, const void* x, int64_t T, const DeviceLinear& w, void* y, DType y_dtype,
                      bool accumulate, cudaStream_t stream) {
    if (T <= 0) return;
    check_dense(w, "linear_gemm_cuda");
    if (w.bias && y_dtype != DType::F32) fail_rt("linear_gemm_cuda: a bias needs an f32 output ({})", "y");
    CUBLAS_CHECK(cublasSetStream(handle, stream));
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    // column-major view: y^T (out, T) = W (in, out)^T . x^T (in, T)
    CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(w.out), static_cast<int>(T),
                              static_cast<int>(w.in), &alpha, w.weight, cuda_type(w.dtype), static_cast<int>(w.in), x,
                              cuda_type(w.dtype), static_cast<int>(w.in), &beta, y, cuda_type(y_dtype),
                              static_cast<int>(w.out), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    if (w.bias) add_bias_cuda(static_cast<float*>(y), T, w.out, w.bias, stream);
}

}  // namespace lmscope::cuda
