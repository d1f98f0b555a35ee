// CUDA linear layers. Decode: the GEMV skeleton of gemv.cuh (x staged once per block in shared
// memory with the input transform fused, weights streamed once per up to 8 activation rows with
// 16-byte loads, warp-shuffle sums, residual add fused into the store) with the dense loader below;
// FP8-block and AWQ int4 loaders live in linear_fp8.cu / linear_awq.cu. Prefill / large batches:
// cuBLAS GEMM on 16-bit activations, f32 accumulate; quantized weights go through the tensor-core
// GEMM of linear_qgemm.cu for T <= 64 (weight read once) and are dequantised into a scratch for
// cuBLAS above. Beside ops/ref/linear*.cpp and ops/cpu/linear*.cpp.

#include <type_traits>

#include "cuda/common.cuh"
#include "cuda/tma.cuh"
#include "ops/cuda/gemv.cuh"
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

// Dense weight (out, in) in WT: one output row per warp, 4 loads of 16 bytes in flight per lane.
template <typename WT>
struct DenseFmt : gemv::LaneFormat<1> {
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

// Batch 1 (GemvIn::smem, which the decoder sets unless LMSCOPE_CUDA_GEMV_SMEM=0), a weight small enough
// that each block's share of its rows fits in shared memory (a Qwen3-0.6B layer: at most 94 KB a block on
// 132 SMs). The rows come in by TMA bulk copies issued before griddepcontrol.wait, and a block takes part
// of an SM (16 warps, 48 registers, <= ~110 KB), so under PDL it is resident while the kernel before it
// runs and its weights arrive meanwhile (the row GEMV above holds the whole register file, so its loads
// start only as the previous kernel's blocks leave). The dot products then read shared memory only;
// they take 1-2 us of a GEMV's ~5 (its bandwidth, shared with the TMA writes of the next kernel's
// weights). H100, 0.6B BF16 b=1: 1107 -> 1155 tok/s at P = 512 (bench/cuda_notes.md, ninth session).
constexpr int kSmemWarps = 16;
constexpr int64_t kSmemSliceMax = 100 * 1024;  // weight bytes a block may hold
constexpr int kSmemRowsMax = 512;              // rows a block may hold (the split-K sums' space)

// Partial dot products of m <= 8 rows of the block's slice (rows starting at `rows`, each `in` long) with
// x over the 16-byte vectors [jb, je), summed over the warp. x is read from shared memory once for all m
// rows (x in f32 is twice the bytes of a bf16 row); the rows past m are neither read nor summed. One
// transposing butterfly reduces the 8 sums (9 shuffles instead of 8 x 5). Returns the sum of row
// 4 * bit 4 + 2 * bit 3 + bit 2 of the lane.
template <typename WT>
__device__ __forceinline__ float smem_dot8(const WT* rows, int in, int m, const gemv::Xs& X, int lane, int jb,
                                           int je) {
    constexpr int VN = Vec16<WT>::N;
    const uint4* w = reinterpret_cast<const uint4*>(rows);
    const int nvr = in / VN;  // vectors a row
    float acc[8][2] = {};
    for (int j = jb + lane; j < je; j += 32) {
        float4 xv[VN / 4];
#pragma unroll
        for (int e = 0; e < VN / 4; ++e) xv[e] = X.at4(0, j * (VN / 4) + e);
#pragma unroll
        for (int r = 0; r < 8; ++r) {
            // (all 8 loads issued first, predicated, was slower: 2270 cycles a call against 2150)
            if (r >= m) break;
            const uint4 wv = w[r * nvr + j];
            if constexpr (std::is_same_v<WT, __nv_bfloat16>) {
                gemv::fma_bf16x8(wv, xv[0], xv[1], acc[r][0], acc[r][1]);
            } else {
                float f[VN];
                Vec16<WT>::unpack(wv, f);
#pragma unroll
                for (int e = 0; e < VN / 4; ++e) {
                    acc[r][e & 1] = fmaf(f[4 * e], xv[e].x, acc[r][e & 1]);
                    acc[r][e & 1] = fmaf(f[4 * e + 1], xv[e].y, acc[r][e & 1]);
                    acc[r][e & 1] = fmaf(f[4 * e + 2], xv[e].z, acc[r][e & 1]);
                    acc[r][e & 1] = fmaf(f[4 * e + 3], xv[e].w, acc[r][e & 1]);
                }
            }
        }
    }
    // bit 4: lanes with it keep rows 4..7 and hand 0..3 to their partner; then bits 3 and 2 likewise
    float v[8];
#pragma unroll
    for (int r = 0; r < 8; ++r) v[r] = acc[r][0] + acc[r][1];
#pragma unroll
    for (int half = 4, bit = 16; half >= 1; half /= 2, bit /= 2) {
        const bool hi = lane & bit;
#pragma unroll
        for (int r = 0; r < half; ++r) {
            const float keep = hi ? v[r + half] : v[r], send = hi ? v[r] : v[r + half];
            v[r] = keep + __shfl_xor_sync(0xffffffffu, send, bit);
        }
    }
    v[0] += __shfl_xor_sync(0xffffffffu, v[0], 2);
    v[0] += __shfl_xor_sync(0xffffffffu, v[0], 1);
    return v[0];
}

template <typename WT, GemvInput MODE>
__global__ void __launch_bounds__(kSmemWarps * 32, 2)
    gemv_smem_kernel(const WT* __restrict__ w, gemv::Args a, int rows_max) {
    extern __shared__ __align__(128) unsigned char smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    // the block's rows [r0, r0 + n) (out split evenly over the grid). Each group of ks warps takes a
    // contiguous run of rows; its ks warps split each row's vectors (at least one a lane), so that x is
    // read from shared memory once per 8 rows of a group, not once per row
    const int r0 = static_cast<int>(static_cast<int64_t>(blockIdx.x) * a.out / gridDim.x);
    const int n = static_cast<int>(static_cast<int64_t>(blockIdx.x + 1) * a.out / gridDim.x) - r0;
    constexpr int VN = Vec16<WT>::N;
    const int nv = a.in / VN;  // 16-byte vectors a row
    int ks = 1;
    while (ks < kSmemWarps && nv >= 64 * ks) ks *= 2;
    const int groups = kSmemWarps / ks, grp = warp / ks, part = warp % ks;
    const int q0 = n * grp / groups, q1 = n * (grp + 1) / groups;  // the group's rows
    const int jb = nv * part / ks, je = nv * (part + 1) / ks;
    uint64_t* mbar = reinterpret_cast<uint64_t*>(smem) + grp;  // the group's rows' copy completes here
    float* part_sums = reinterpret_cast<float*>(smem + 128);   // (kSmemWarps, rows_max) split-K sums
    float* xs = part_sums + kSmemWarps * rows_max;             // (in) f(x)
    WT* ws = reinterpret_cast<WT*>(xs + a.in);                 // (n, in) the block's rows
    // the weights do not depend on the kernel before: the group's rows are copied before the wait
    if (part == 0 && lane == 0 && q1 > q0) {
        const uint32_t bytes = static_cast<uint32_t>(q1 - q0) * static_cast<uint32_t>(a.in) * sizeof(WT);
        tma::init(mbar, 1);
        tma::fence_init();
        tma::expect_bytes(mbar, bytes);
        tma::copy(ws + static_cast<int64_t>(q0) * a.in, w + (static_cast<int64_t>(r0) + q0) * a.in, bytes,
                  mbar);
    }
    if (threadIdx.x == 0) gemv::prefetch_l2(a.l2);
    if (a.pdl) {
        asm volatile("griddepcontrol.wait;" ::: "memory");
        // the next kernel may start once every block is past its wait, not before: allowed at the
        // start, 3-4 kernels were resident at once and the 0.6B chain of four GEMVs took 7.4-7.8 us a
        // GEMV instead of 4.8 (bench/cuda_notes.md, ninth session)
        asm volatile("griddepcontrol.launch_dependents;");
    }
    const gemv::Xs X(xs, a.in);
    gemv::stage_x<1, MODE>(a, X);
    __syncthreads();  // x staged; also orders the mbarrier inits before the other warps' waits
    uint32_t parity = 0;
    if (q1 > q0) tma::wait(mbar, parity);
    const int rr = 4 * ((lane >> 4) & 1) + 2 * ((lane >> 3) & 1) + ((lane >> 2) & 1);  // this lane's row of 8
    for (int q = q0; q < q1; q += 8) {
        const int m = min(8, q1 - q);
        const float sum = smem_dot8(ws + static_cast<int64_t>(q) * a.in, a.in, m, X, lane, jb, je);
        if ((lane & 3) != 0 || rr >= m) continue;
        if (ks > 1) {
            part_sums[warp * rows_max + (q - q0) + rr] = sum;
        } else {
            const int row = r0 + q + rr;
            float* dst = a.y + row;
            *dst = (a.acc ? *dst : 0.0f) + sum + (a.bias ? a.bias[row] : 0.0f);
        }
    }
    if (ks > 1) {  // the parts' sums added in part order: the same result whatever the timing
        __syncthreads();
        if (part == 0)
            for (int i = lane; i < q1 - q0; i += 32) {
                float sum = 0.0f;
                for (int p = 0; p < ks; ++p) sum += part_sums[(warp + p) * rows_max + i];
                const int row = r0 + q0 + i;
                float* dst = a.y + row;
                *dst = (a.acc ? *dst : 0.0f) + sum + (a.bias ? a.bias[row] : 0.0f);
            }
    }
}

template <GemvInput M>
using Mode = std::integral_constant<GemvInput, M>;

/** Launches the shared-memory GEMV where it applies; false when the row GEMV must run. */
template <typename WT>
bool gemv_smem(const WT* w, const gemv::Args& a, GemvInput mode, cudaStream_t stream) {
    if (a.T != 1 || a.out <= 0) return false;
    if ((static_cast<int64_t>(a.in) * sizeof(WT)) % 16 != 0 || reinterpret_cast<uintptr_t>(w) % 16 != 0)
        return false;
    const int64_t grid = std::min<int64_t>(sm_count(), a.out);
    const int64_t rows_max = (a.out + grid - 1) / grid;
    const int64_t slice = rows_max * a.in * static_cast<int64_t>(sizeof(WT));
    if (slice > kSmemSliceMax || rows_max > kSmemRowsMax) return false;
    const size_t smem =
        128 + sizeof(float) * (kSmemWarps * static_cast<size_t>(rows_max) + static_cast<size_t>(a.in)) +
        static_cast<size_t>(slice);
    if (smem > gemv::max_smem_optin()) return false;
    const auto go = [&](auto mode_tag) {
        constexpr GemvInput kMode = decltype(mode_tag)::value;
        static std::once_flag once;  // one per kernel: the lambda is instantiated per mode
        std::call_once(once, [] {
            CUDA_CHECK(cudaFuncSetAttribute(gemv_smem_kernel<WT, kMode>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(gemv::max_smem_optin())));
            prefer_shared_carveout(reinterpret_cast<const void*>(gemv_smem_kernel<WT, kMode>));
        });
        launch_kernel(gemv_smem_kernel<WT, kMode>, dim3(static_cast<unsigned>(grid)), dim3(kSmemWarps * 32),
                      smem, stream, a.pdl, w, a, static_cast<int>(rows_max));
        CUDA_CHECK_LAUNCH();
    };
    switch (mode) {
        case GemvInput::Plain:
            go(Mode<GemvInput::Plain>{});
            break;
        case GemvInput::RmsNorm:
            go(Mode<GemvInput::RmsNorm>{});
            break;
        case GemvInput::SiluMul:
            go(Mode<GemvInput::SiluMul>{});
            break;
    }
    return true;
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
    switch (w.format) {
        case LinearFormat::Fp8Block: gemv_fp8_cuda(x, T, w, in, y, y_stride, accumulate, stream); return;
        case LinearFormat::AwqInt4: gemv_awq_cuda(x, T, w, in, y, y_stride, accumulate, stream); return;
        case LinearFormat::Dense: break;
    }
    dispatch_float(w.dtype, [&](auto* tp) {
        using WT = std::remove_pointer_t<decltype(tp)>;
        const WT* wp = static_cast<const WT*>(w.weight);
        if (in.smem && gemv_smem(wp, gemv::make_args(x, T, w, in, y, y_stride, accumulate), in.mode, stream))
            return;
        gemv::run<DenseFmt<WT>>({wp}, x, T, w, in, y, y_stride, accumulate, stream);
    });
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
