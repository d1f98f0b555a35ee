// Block-FP8 (E4M3, DeepSeek-V3 / Qwen3-FP8 layout) linears on the GPU, beside ops/ref/linear_fp8.cpp
// and ops/cpu/linear_fp8.cpp. The weight stays 1 byte per element in device memory:
//   decode GEMV (gemv.cuh skeleton): each lane streams 16 codes per 16-byte load, two output rows
//     per warp (x read once from shared memory for both), converts them with the hardware
//     e4m3x2 -> f16x2 instruction (exact) and then to f32, sums the 16 products in f32 and scales
//     the partial sum by its block's f32 scale (one scale per load: 16 | block_in).
//   prefill: dequant_fp8_cuda writes code * scale as bf16/f16 (one rounding) for cuBLAS.
// When in and block_in are multiples of 64 and the matrix is large (quant::fp8_tiled), the codes are
// stored in the tensor-core GEMV's tiled order (quant::fp8_byte, gemv_tc.cuh, linear_fp8_tc.cu), rows
// padded to 16, and the decode GEMV above is only used for other shapes.
// Scale rows come through DeviceLinear::scale_row, so q|k|v or gate|up concatenated along `out`
// stay exact whatever their sizes (a part's last block row may be partial).

#include "cuda/common.cuh"
#include "ops/cuda/gemv.cuh"
#include "ops/cuda/linear_quant.cuh"
#include "ops/cuda/quant_decode.cuh"

namespace lmscope::cuda {

namespace {

constexpr int kUnroll = 2;  // x 2 rows: 4 loads of 16 bytes in flight per lane (4 measured slower: fewer blocks fit)

using quant::fp8_to_f32;
using quant::fp8x4_to_f32;

struct Fp8Fmt : gemv::LaneFormat<2> {
    static constexpr int kPerPass = kUnroll * 32;
    struct Params {
        const uint8_t* codes;  // (out, in)
        const float* scale;    // (scale rows, nbi)
        const int32_t* srow;   // (out)
        int nbi, bi;
        int kshift;            // log2(bi / 16) when that is a power of two (16-byte load k -> block k >> kshift), else -1
    };
    // the first 16-byte loads of the warp's row pair, issued before the block stages x (gemv.cuh)
    static constexpr int kPre = kUnroll * kRows;
    /** 16-byte vectors per row, or 0 when rows are read element by element (split-K needs the former). */
    __host__ __device__ static int vectors(const Params& p, int in) { return in % 16 == 0 && p.bi % 16 == 0 ? in / 16 : 0; }
    __device__ static void preload(const Params& p, int row0, int out, int in, int lane, uint4 (&pre)[kPre], int kb, int ke) {
        if (vectors(p, in) > 0)
            gemv::preload_rows<kUnroll, kRows>(reinterpret_cast<const char*>(p.codes), in, row0, out, kb, ke, lane, pre);
    }

    template <int NT>
    __device__ static void rows_dot(const Params& p, int row0, int out, int in, const gemv::Xs& X, int lane,
                                    Acc<NT>& acc, const uint4 (&pre)[kPre], int kb, int ke) {
        const uint8_t* wr[kRows];
        const float* sr[kRows];
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
            const int row = min(row0 + r, out - 1);  // a tail warp reads a real row twice, stores once
            wr[r] = p.codes + static_cast<int64_t>(row) * in;
            sr[r] = p.scale + static_cast<int64_t>(p.srow[row]) * p.nbi;
        }
        if (vectors(p, in) > 0) {
            const uint4* w4[kRows];
#pragma unroll
            for (int r = 0; r < kRows; ++r) w4[r] = reinterpret_cast<const uint4*>(wr[r]);
            for (int k0 = kb + lane; k0 < ke; k0 += 32 * kUnroll) {
                uint4 raw[kUnroll][kRows];
                gemv::load_pass<kUnroll, kRows>(raw, w4, k0, ke, pre, k0 == kb + lane);
#pragma unroll
                for (int u = 0; u < kUnroll; ++u) {
                    const int k = k0 + u * 32;
                    if (k >= ke) break;
                    const int blk = p.kshift >= 0 ? k >> p.kshift : k * 16 / p.bi;  // no division per load
                    float part[kRows][NT];
#pragma unroll
                    for (int r = 0; r < kRows; ++r)
#pragma unroll
                        for (int t = 0; t < NT; ++t) part[r][t] = 0.0f;
#pragma unroll
                    for (int q = 0; q < 4; ++q) {
                        float wf[kRows][4];
#pragma unroll
                        for (int r = 0; r < kRows; ++r) fp8x4_to_f32(gemv::word(raw[u][r], q), wf[r]);
#pragma unroll
                        for (int t = 0; t < NT; ++t) {
                            const float4 a = X.at4(t, k * 4 + q);
#pragma unroll
                            for (int r = 0; r < kRows; ++r)
                                part[r][t] += wf[r][0] * a.x + wf[r][1] * a.y + wf[r][2] * a.z + wf[r][3] * a.w;
                        }
                    }
#pragma unroll
                    for (int r = 0; r < kRows; ++r) {
                        const float s = __ldg(sr[r] + blk);
#pragma unroll
                        for (int t = 0; t < NT; ++t) acc.v[r][t] = fmaf(s, part[r][t], acc.v[r][t]);
                    }
                }
            }
        } else {
            for (int k = lane; k < in; k += 32) {
                const int blk = k / p.bi;
#pragma unroll
                for (int r = 0; r < kRows; ++r) {
                    const float wv = fp8_to_f32(wr[r][k]) * __ldg(sr[r] + blk);
#pragma unroll
                    for (int t = 0; t < NT; ++t) acc.v[r][t] += wv * X.at(t, k);
                }
            }
        }
    }
};

// 8 codes per thread (in % 8 == 0, block_in % 8 == 0): one 8-byte load, one 16-byte store
template <typename OT>
__global__ void dequant8_kernel(const uint8_t* codes, const float* scale, const int32_t* srow, int nbi, int bi,
                                int64_t out, int64_t in, bool tiled, OT* dst) {
    const int64_t n8 = in / 8, total = out * n8;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t row = i / n8, c = (i % n8) * 8;
        const uint2 raw = *reinterpret_cast<const uint2*>(codes + quant::fp8_byte(row, c, in, tiled));
        const float s = scale[static_cast<int64_t>(srow[row]) * nbi + c / bi];
        float f[8];
        fp8x4_to_f32(raw.x, f);
        fp8x4_to_f32(raw.y, f + 4);
        alignas(16) OT o[8];
#pragma unroll
        for (int e = 0; e < 8; ++e) o[e] = from_f32<OT>(f[e] * s);
        reinterpret_cast<uint4*>(dst)[i] = *reinterpret_cast<const uint4*>(o);
    }
}

template <typename OT>
__global__ void dequant1_kernel(const uint8_t* codes, const float* scale, const int32_t* srow, int nbi, int bi,
                                int64_t out, int64_t in, OT* dst) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < out * in; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t row = i / in, c = i % in;
        dst[i] = from_f32<OT>(fp8_to_f32(codes[i]) * scale[static_cast<int64_t>(srow[row]) * nbi + c / bi]);
    }
}

// one 16-byte unit per thread, row-major -> tiled
__global__ void tile_codes_kernel(const uint4* src, int64_t rows, int64_t in, int64_t row_off, uint8_t* dst) {
    const int64_t upr = in / 16;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows * upr; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = i / upr, u = i % upr;
        *reinterpret_cast<uint4*>(dst + quant::fp8_tiled_byte(row_off + r, 16 * u, in)) = src[i];
    }
}

unsigned grid_for(int64_t n) {
    return static_cast<unsigned>(std::clamp<int64_t>((n + 255) / 256, 1, int64_t{gemv::sm_count()} * 16));
}

}  // namespace

void gemv_fp8_cuda(const float* x, int64_t T, const DeviceLinear& w, const GemvIn& in, float* y, int64_t y_stride,
                   bool accumulate, cudaStream_t stream) {
    if (quant::fp8_tiled(w.out, w.in, w.block)) {  // the tiled layout: tensor cores
        gemv_fp8_tc_cuda(x, T, w, in, y, y_stride, accumulate, stream);
        return;
    }
    const int bi = static_cast<int>(w.block);
    const Fp8Fmt::Params p{static_cast<const uint8_t*>(w.weight), static_cast<const float*>(w.scale), w.scale_row,
                           static_cast<int>((w.in + bi - 1) / bi), bi, quant::pow2_shift(bi, 16)};
    gemv::run<Fp8Fmt>(p, x, T, w, in, y, y_stride, accumulate, stream);
}

void dequant_fp8_cuda(const DeviceLinear& w, void* dst, cudaStream_t stream) {
    const int bi = static_cast<int>(w.block), nbi = static_cast<int>((w.in + bi - 1) / bi);
    const auto* codes = static_cast<const uint8_t*>(w.weight);
    const auto* scale = static_cast<const float*>(w.scale);
    const bool vec = w.in % 8 == 0 && bi % 8 == 0;
    auto go = [&](auto* tp) {
        using OT = std::remove_pointer_t<decltype(tp)>;
        if (vec)
            dequant8_kernel<OT><<<grid_for(w.out * w.in / 8), 256, 0, stream>>>(
                codes, scale, w.scale_row, nbi, bi, w.out, w.in, quant::fp8_tiled(w.out, w.in, bi), static_cast<OT*>(dst));
        else
            dequant1_kernel<OT><<<grid_for(w.out * w.in), 256, 0, stream>>>(codes, scale, w.scale_row, nbi, bi, w.out, w.in,
                                                                            static_cast<OT*>(dst));
    };
    if (w.dtype == DType::F16)
        go(static_cast<__half*>(nullptr));
    else
        go(static_cast<__nv_bfloat16*>(nullptr));
    CUDA_CHECK_LAUNCH();
}

void fp8_tile_codes_cuda(const uint8_t* src, int64_t rows, int64_t in, int64_t row_off, uint8_t* dst, cudaStream_t stream) {
    tile_codes_kernel<<<grid_for(rows * in / 16), 256, 0, stream>>>(reinterpret_cast<const uint4*>(src), rows, in, row_off, dst);
    CUDA_CHECK_LAUNCH();
}

}  // namespace lmscope::cuda
