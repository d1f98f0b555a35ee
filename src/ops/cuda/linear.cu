// CUDA linear layers. Decode: the GEMV skeleton of gemv.cuh (x staged once per block in shared
// memory with the input transform fused, weights streamed once per up to 8 activation rows with
// 16-byte loads, warp-shuffle sums, residual add fused into the store) with the dense loader below, or,
// at batch 1 for weights whose share per block fits (GemvIn::smem), the shared-memory GEMV of
// gemv_smem.cuh with the dense format below; FP8-block and AWQ int4 loaders live in linear_fp8.cu /
// linear_awq.cu. Prefill / large batches:
// cuBLAS GEMM on 16-bit activations, f32 accumulate; quantized weights go through the tensor-core
// GEMM of linear_qgemm.cu for T <= 64 (weight read once) and are dequantised into a scratch for
// cuBLAS above. Beside ops/ref/linear*.cpp and ops/cpu/linear*.cpp.

#include <type_traits>

#include "cuda/common.cuh"
#include "ops/cuda/gemv.cuh"
#include "ops/cuda/gemv_smem.cuh"
#include "ops/cuda/linear_quant.cuh"
#include "ops/cuda/ops_cuda.h"

namespace lmscope::cuda {

namespace {

constexpr int kUnroll = 4;  // 16-byte loads in flight per lane

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

// Dense weight (out, in) in WT: one output row per warp, 4 loads of 16 bytes in flight per lane; the batch-1
// kernel in blocks of W1 warps, B1 resident per SM
template <typename WT, int W1 = gemv::kWarps, int B1 = 3>
struct DenseFmt : gemv::LaneFormat<1> {
    static constexpr int kWarps1 = W1;
    static constexpr int kBlocks1 = B1;
    static constexpr bool kPreferShared = true;
    static constexpr int kPerPass = kUnroll * 32;
    struct Params {
        const WT* w;
    };
    // the first kUnroll 16-byte loads of a row, issued before the block stages x (gemv.cuh): the
    // weights' DRAM latency then overlaps the staging
    static constexpr int kPre = kUnroll;
    /** 16-byte vectors per row, or 0 when rows are read element by element (split-K needs the former). */
    __host__ __device__ static int vectors(const Params&, int in) { return in % Vec16<WT>::N == 0 ? in / Vec16<WT>::N : 0; }
    __device__ static void preload(const Params& p, int row0, int out, int in, int lane, uint4 (&pre)[kPre], int kb, int ke) {
        if (vectors(p, in) > 0)
            gemv::preload_rows<kUnroll, 1>(reinterpret_cast<const char*>(p.w), int64_t{in} * sizeof(WT), row0, out, kb, ke,
                                           lane, pre);
    }

    template <int NT>
    __device__ static void rows_dot(const Params& p, int row0, int /*out*/, int in, const gemv::Xs& X, int lane,
                                    Acc<NT>& acc, const uint4 (&pre)[kPre], int kb, int ke) {
        const WT* wr = p.w + static_cast<int64_t>(row0) * in;
        constexpr int VN = Vec16<WT>::N;
        if (vectors(p, in) > 0) {
            const uint4* w4 = reinterpret_cast<const uint4*>(wr);
            for (int k0 = kb + lane; k0 < ke; k0 += 32 * kUnroll) {
                uint4 raw[kUnroll];
#pragma unroll
                for (int u = 0; u < kUnroll; ++u)
                    if (k0 + u * 32 < ke) raw[u] = k0 == kb + lane ? pre[u] : gemv::load_stream(w4 + k0 + u * 32);
#pragma unroll
                for (int u = 0; u < kUnroll; ++u) {
                    const int k = k0 + u * 32;
                    if (k < ke) {
                        float wf[VN];
                        Vec16<WT>::unpack(raw[u], wf);
#pragma unroll
                        for (int t = 0; t < NT; ++t) {
#pragma unroll
                            for (int e = 0; e < VN / 4; ++e) {
                                const float4 a = X.at4(t, k * (VN / 4) + e);
                                acc.v[0][t] += wf[4 * e] * a.x + wf[4 * e + 1] * a.y + wf[4 * e + 2] * a.z +
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
                for (int t = 0; t < NT; ++t) acc.v[0][t] += wv * X.at(t, k);
            }
        }
    }
};

// Dense rows for the shared-memory GEMV (gemv_smem.cuh)
template <typename WT>
struct DenseSmem {
    struct Params {};
    static constexpr int kVN = Vec16<WT>::N;
    static bool fits(const Params&, int) { return true; }
    __device__ static void dot(const Params&, const uint4& wv, int /*row*/, int /*j*/,
                               const float4 (&xv)[kVN / 4], float& a0, float& a1) {
        if constexpr (std::is_same_v<WT, __nv_bfloat16>) {
            gemv::fma_bf16x8(wv, xv[0], xv[1], a0, a1);
        } else {
            float f[kVN];
            Vec16<WT>::unpack(wv, f);
#pragma unroll
            for (int e = 0; e < kVN / 4; ++e) {
                float& acc = e & 1 ? a1 : a0;
                acc = fmaf(f[4 * e], xv[e].x, acc);
                acc = fmaf(f[4 * e + 1], xv[e].y, acc);
                acc = fmaf(f[4 * e + 2], xv[e].z, acc);
                acc = fmaf(f[4 * e + 3], xv[e].w, acc);
            }
        }
    }
};

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
    switch (w.format) {
        case LinearFormat::Fp8Block: gemv_fp8_cuda(x, T, w, in, y, y_stride, accumulate, stream); return;
        case LinearFormat::AwqInt4: gemv_awq_cuda(x, T, w, in, y, y_stride, accumulate, stream); return;
        case LinearFormat::Dense: break;
    }
    dispatch_float(w.dtype, [&](auto* tp) {
        using WT = std::remove_pointer_t<decltype(tp)>;
        const WT* wp = static_cast<const WT*>(w.weight);
        if (in.smem && gemv::run_smem<DenseSmem<WT>>(
                           {}, wp, gemv::make_args(x, T, w, in, y, y_stride, accumulate), in.mode, stream))
            return;
        // batch 1 with rows of >= 4096: one block of 24 warps per SM instead of 3 of 8, so that x is staged
        // once per SM, not three times (H100 probe, 8B: down 44.6 -> 42.3 us, qkv 19.3 -> 18.8, gate_up 69.5
        // -> 68.9, o 15.7 -> 16.2; 8B bf16 b=1 161.7 -> 165.3 tok/s; tenth session). Shorter rows (the 0.6B
        // head) stage little and keep 3 blocks.
        if (T == 1 && w.in >= 4096) {
            gemv::run<DenseFmt<WT, 3 * gemv::kWarps, 1>>({wp}, x, T, w, in, y, y_stride, accumulate, stream);
            return;
        }
        gemv::run<DenseFmt<WT>>({wp}, x, T, w, in, y, y_stride, accumulate, stream);
    });
}

int linear_gemv_smem_grid(const DeviceLinear& w, int64_t T) {
    if (w.format != LinearFormat::Dense || T != 1) return 0;
    int grid = 0;
    dispatch_float(w.dtype, [&](auto* tp) {
        using WT = std::remove_pointer_t<decltype(tp)>;
        grid = static_cast<int>(
            gemv::smem_plan<DenseSmem<WT>>({}, w.weight, static_cast<int>(w.in), static_cast<int>(w.out), 1)
                .grid);
    });
    return grid;
}

int64_t linear_read_bytes(const DeviceLinear& w) {
    switch (w.format) {
        case LinearFormat::Dense: return w.out * w.in * static_cast<int64_t>(dtype_size(w.dtype));
        case LinearFormat::Fp8Block:  // scale rows: at least ceil(out / 128) (more when parts were concatenated)
            return w.out * w.in + (w.out + 127) / 128 * ((w.in + w.block - 1) / w.block) * 4;
        case LinearFormat::AwqInt4: return w.out * w.in / 2 + w.out * (w.in / w.block) * 4;
    }
    return 0;
}

bool l2_prefetch_add(L2Prefetch& pf, const DeviceLinear& w, int64_t max_bytes) {
    const int64_t total = linear_read_bytes(w);
    const int64_t wb = w.format == LinearFormat::Dense ? total
                       : w.format == LinearFormat::Fp8Block ? w.out * w.in
                                                            : w.out * w.in / 2;
    const bool scales = w.format != LinearFormat::Dense && max_bytes > wb;
    if (pf.n + (scales ? 2 : 1) > L2Prefetch::kMax) return false;
    pf.p[pf.n] = w.weight;
    pf.bytes[pf.n++] = std::min(wb, max_bytes);
    if (scales) {
        pf.p[pf.n] = w.scale;
        pf.bytes[pf.n++] = std::min(total - wb, max_bytes - wb);
    }
    return true;
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

void linear_gemm_cuda(cublasHandle_t handle, const void* x, int64_t T, const DeviceLinear& w_in, void* y, DType y_dtype,
                      bool accumulate, cudaStream_t stream, void* scratch) {
    if (T <= 0) return;
    if (w_in.format != LinearFormat::Dense && qgemm_supported(w_in, T, y_dtype)) {  // small T: read the weight once
        if (w_in.bias && y_dtype != DType::F32) fail_rt("linear_gemm_cuda: a bias needs an f32 output ({})", "y");
        qgemm_cuda(x, T, w_in, y, y_dtype, accumulate, stream);
        return;
    }
    if (w_in.format != LinearFormat::Dense && !scratch)
        fail_rt("linear_gemm_cuda: {} weights need a dequantisation scratch", w_in.format == LinearFormat::Fp8Block ? "FP8-block" : "AWQ int4");
    const DeviceLinear w = dequantize_linear_cuda(w_in, scratch, stream);
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

DeviceLinear dequantize_linear_cuda(const DeviceLinear& w, void* dst, cudaStream_t stream) {
    if (w.format == LinearFormat::Dense) return w;
    if (w.dtype != DType::BF16 && w.dtype != DType::F16)
        fail_rt("dequantize_linear_cuda: target dtype {} (BF16 or F16 only)", dtype_name(w.dtype));
    if (w.format == LinearFormat::Fp8Block)
        dequant_fp8_cuda(w, dst, stream);
    else
        dequant_awq_cuda(w, dst, stream);
    DeviceLinear d = w;
    d.format = LinearFormat::Dense;
    d.weight = dst;
    d.scale = nullptr;
    d.scale_row = nullptr;
    return d;
}

}  // namespace lmscope::cuda
