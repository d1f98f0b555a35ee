// AWQ int4 linears (AutoAWQ gemm checkpoints) on the GPU, beside ops/ref/linear_awq.cpp and
// ops/cpu/linear_awq.cpp. The checkpoint layout qweight (in, out/8) packs 8 OUTPUT columns per
// word, which suits a GEMV over input rows but not one warp per output row; at upload the weight is
// repacked on the GPU (awq_repack_cuda) into rows of the output: qw (out, in/8) u32, 8 consecutive
// input columns per word in AutoAWQ's interleave (nibble p holds column 2p for p < 4, 2(p-4)+1 for
// p >= 4), and the group's f16 scale and zero in one u32 per (row, group): sz (out, in/g). Bytes per
// weight: 0.5 + 4/g (0.53 for g = 128; the checkpoint has 0.5 + 2.5/g). When in and g are multiples
// of 128 (quant::awq_tiled: AutoAWQ's group 128), qw's 16-byte units are stored in the order of the
// tensor-core GEMV instead (quant::awq_word, gemv_tc.cuh, linear_awq_tc.cu), rows padded to 16.
//   decode GEMV (other shapes): each lane streams 32 nibbles per 16-byte load, two output rows per warp; a word
//     becomes f16 pairs (1024 + q) with one LOP3 per pair ((w >> 4j) & 0x000F000F | 0x64006400),
//     minus (1024 + z) in f16 (exact: q - z is a small integer), then f32; the 32 products are summed
//     in f32 and scaled by s once per load (g % 32 == 0); words of other groups one at a time.
//   prefill: dequant_awq_cuda writes (q - z) * s (f32, one rounding) as bf16/f16 for cuBLAS.

#include "cuda/common.cuh"
#include "ops/cuda/gemv.cuh"
#include "ops/cuda/linear_quant.cuh"
#include "ops/cuda/quant_decode.cuh"

namespace lmscope::cuda {

namespace {

constexpr int kUnroll = 2;  // x 2 rows: 4 loads of 16 bytes in flight per lane (4 measured slower: fewer blocks fit)

using quant::awq_word_to_f32;
using quant::sz_scale;
using quant::sz_zero2;

struct AwqFmt : gemv::LaneFormat<2> {
    static constexpr int kPerPass = kUnroll * 32;
    struct Params {
        const uint32_t* qw;  // (out, in/8)
        const uint32_t* sz;  // (out, ng)
        int ng, group;
        int kshift;          // log2(group / 32) when that is a power of two (16-byte load k -> group k >> kshift), else -1
    };
    // the first 16-byte loads of the warp's row pair, issued before the block stages x (gemv.cuh)
    static constexpr int kPre = kUnroll * kRows;
    /** 16-byte vectors per row, or 0 when rows are read element by element (split-K needs the former). */
    __host__ __device__ static int vectors(const Params& p, int in) { return in % 32 == 0 && p.group % 32 == 0 ? in / 32 : 0; }
    __device__ static void preload(const Params& p, int row0, int out, int in, int lane, uint4 (&pre)[kPre], int kb, int ke) {
        if (vectors(p, in) > 0)
            gemv::preload_rows<kUnroll, kRows>(reinterpret_cast<const char*>(p.qw), in / 2, row0, out, kb, ke, lane, pre);
    }

    template <int NT>
    __device__ static void rows_dot(const Params& p, int row0, int out, int in, const gemv::Xs& X, int lane,
                                    Acc<NT>& acc, const uint4 (&pre)[kPre], int kb, int ke) {
        const uint32_t* wr[kRows];
        const uint32_t* szr[kRows];
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
            const int row = min(row0 + r, out - 1);  // a tail warp reads a real row twice, stores once
            wr[r] = p.qw + static_cast<int64_t>(row) * (in / 8);
            szr[r] = p.sz + static_cast<int64_t>(row) * p.ng;
        }
        if (vectors(p, in) > 0) {
            const uint4* w4[kRows];
#pragma unroll
            for (int r = 0; r < kRows; ++r) w4[r] = reinterpret_cast<const uint4*>(wr[r]);
            for (int k0 = kb + lane; k0 < ke; k0 += 32 * kUnroll) {
                uint4 raw[kUnroll][kRows];
                uint32_t szw[kUnroll][kRows];
                gemv::load_pass<kUnroll, kRows>(raw, w4, k0, ke, pre, k0 == kb + lane);
#pragma unroll
                for (int u = 0; u < kUnroll; ++u)
#pragma unroll
                    for (int r = 0; r < kRows; ++r) {
                        const int k = k0 + u * 32;
                        if (k < ke) szw[u][r] = __ldg(szr[r] + (p.kshift >= 0 ? k >> p.kshift : k * 32 / p.group));
                    }
#pragma unroll
                for (int u = 0; u < kUnroll; ++u) {
                    const int k = k0 + u * 32;
                    if (k >= ke) break;
                    __half2 z2[kRows];
#pragma unroll
                    for (int r = 0; r < kRows; ++r) z2[r] = sz_zero2(szw[u][r]);
                    float part[kRows][NT];
#pragma unroll
                    for (int r = 0; r < kRows; ++r)
#pragma unroll
                        for (int t = 0; t < NT; ++t) part[r][t] = 0.0f;
#pragma unroll
                    for (int q = 0; q < 4; ++q) {
                        float wf[kRows][8];
#pragma unroll
                        for (int r = 0; r < kRows; ++r) awq_word_to_f32(gemv::word(raw[u][r], q), z2[r], wf[r]);
#pragma unroll
                        for (int t = 0; t < NT; ++t) {
                            const float4 a = X.at4(t, k * 8 + 2 * q), b = X.at4(t, k * 8 + 2 * q + 1);
#pragma unroll
                            for (int r = 0; r < kRows; ++r)
                                part[r][t] += wf[r][0] * a.x + wf[r][1] * a.y + wf[r][2] * a.z + wf[r][3] * a.w +
                                              wf[r][4] * b.x + wf[r][5] * b.y + wf[r][6] * b.z + wf[r][7] * b.w;
                        }
                    }
#pragma unroll
                    for (int r = 0; r < kRows; ++r) {
                        const float s = sz_scale(szw[u][r]);
#pragma unroll
                        for (int t = 0; t < NT; ++t) acc.v[r][t] = fmaf(s, part[r][t], acc.v[r][t]);
                    }
                }
            }
        } else {  // one word (8 columns, one group: g % 8 == 0) per lane
            const int nw = in / 8;
            for (int kw = lane; kw < nw; kw += 32) {
                const int g = kw * 8 / p.group;
#pragma unroll
                for (int r = 0; r < kRows; ++r) {
                    const uint32_t sz = __ldg(szr[r] + g);
                    float wf[8];
                    awq_word_to_f32(__ldg(wr[r] + kw), sz_zero2(sz), wf);
                    const float s = sz_scale(sz);
#pragma unroll
                    for (int t = 0; t < NT; ++t) {
                        float part = 0.0f;
#pragma unroll
                        for (int e = 0; e < 8; ++e) part += wf[e] * X.at(t, kw * 8 + e);
                        acc.v[r][t] = fmaf(s, part, acc.v[r][t]);
                    }
                }
            }
        }
    }
};

// one word (8 weights) per thread -> one 16-byte store
template <typename OT>
__global__ void dequant_kernel(const uint32_t* qw, const uint32_t* szp, int64_t out, int64_t in, int ng, int group,
                               bool tiled, OT* dst) {
    const int64_t nw = in / 8, total = out * nw;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t row = i / nw, kw = i % nw;
        const uint32_t sz = szp[row * ng + kw * 8 / group];
        float f[8];
        awq_word_to_f32(qw[quant::awq_word(row, kw, in, tiled)], sz_zero2(sz), f);
        const float s = sz_scale(sz);
        alignas(16) OT o[8];
#pragma unroll
        for (int e = 0; e < 8; ++e) o[e] = from_f32<OT>(f[e] * s);
        reinterpret_cast<uint4*>(dst)[i] = *reinterpret_cast<const uint4*>(o);
    }
}

// AutoAWQ: logical column c (0..7) of a packed word sits at bits 4 * kRev[c]
__device__ __forceinline__ uint32_t awq_nibble(const uint32_t* packed_row, int64_t n) {
    constexpr int kRev[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    return (packed_row[n / 8] >> (4 * kRev[n % 8])) & 15u;
}

__global__ void repack_weight_kernel(const uint32_t* qweight, int64_t in, int64_t out, bool tiled, int64_t row_off,
                                     uint32_t* qw) {
    const int64_t nw = in / 8, pc = out / 8;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < nw * out; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t kw = i / out, n = i % out;  // n fastest: neighbours share the source word
        uint32_t v = 0;
#pragma unroll
        for (int e = 0; e < 8; ++e) {
            const int pos = (e & 1) ? 4 + e / 2 : e / 2;  // column e of the word -> nibble pos
            v |= awq_nibble(qweight + (kw * 8 + e) * pc, n) << (4 * pos);
        }
        qw[quant::awq_word(row_off + n, kw, in, tiled)] = v;
    }
}

template <typename ST>
__global__ void repack_scales_kernel(const uint32_t* qzeros, const ST* scales, int64_t ng, int64_t out, uint32_t* sz) {
    const int64_t pc = out / 8;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < ng * out; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t g = i / out, n = i % out;
        const uint32_t z = awq_nibble(qzeros + g * pc, n);
        const uint32_t s = __half_as_ushort(__float2half_rn(to_f32(scales[g * out + n])));
        sz[n * ng + g] = s | ((0x6400u | z) << 16);
    }
}

unsigned grid_for(int64_t n) {
    return static_cast<unsigned>(std::clamp<int64_t>((n + 255) / 256, 1, int64_t{gemv::sm_count()} * 16));
}

}  // namespace

void gemv_awq_cuda(const float* x, int64_t T, const DeviceLinear& w, const GemvIn& in, float* y, int64_t y_stride,
                   bool accumulate, cudaStream_t stream) {
    if (quant::awq_tiled(w.in, w.block)) {  // the tiled layout: tensor cores
        gemv_awq_tc_cuda(x, T, w, in, y, y_stride, accumulate, stream);
        return;
    }
    const AwqFmt::Params p{static_cast<const uint32_t*>(w.weight), static_cast<const uint32_t*>(w.scale),
                           static_cast<int>(w.in / w.block), static_cast<int>(w.block),
                           quant::pow2_shift(static_cast<int>(w.block), 32)};
    gemv::run<AwqFmt>(p, x, T, w, in, y, y_stride, accumulate, stream);
}

void dequant_awq_cuda(const DeviceLinear& w, void* dst, cudaStream_t stream) {
    const auto* qw = static_cast<const uint32_t*>(w.weight);
    const auto* sz = static_cast<const uint32_t*>(w.scale);
    const int ng = static_cast<int>(w.in / w.block), g = static_cast<int>(w.block);
    const unsigned grid = grid_for(w.out * w.in / 8);
    const bool tiled = quant::awq_tiled(w.in, w.block);
    if (w.dtype == DType::F16)
        dequant_kernel<__half><<<grid, 256, 0, stream>>>(qw, sz, w.out, w.in, ng, g, tiled, static_cast<__half*>(dst));
    else
        dequant_kernel<__nv_bfloat16><<<grid, 256, 0, stream>>>(qw, sz, w.out, w.in, ng, g, tiled,
                                                               static_cast<__nv_bfloat16*>(dst));
    CUDA_CHECK_LAUNCH();
}

void awq_repack_cuda(const void* qweight, const void* qzeros, const void* scales, DType sdt, int64_t in, int64_t out,
                     int64_t group, int64_t row_off, uint32_t* qw, uint32_t* sz, cudaStream_t stream) {
    const int64_t nw = in / 8, ng = in / group;
    repack_weight_kernel<<<grid_for(nw * out), 256, 0, stream>>>(static_cast<const uint32_t*>(qweight), in, out,
                                                                 quant::awq_tiled(in, group), row_off, qw);
    CUDA_CHECK_LAUNCH();
    dispatch_float(sdt, [&](auto* tp) {
        using ST = std::remove_pointer_t<decltype(tp)>;
        repack_scales_kernel<ST><<<grid_for(ng * out), 256, 0, stream>>>(static_cast<const uint32_t*>(qzeros),
                                                                         static_cast<const ST*>(scales), ng, out,
                                                                         sz + row_off * ng);
    });
    CUDA_CHECK_LAUNCH();
}

}  // namespace lmscope::cuda
