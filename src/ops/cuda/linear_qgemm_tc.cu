// Small-batch GEMM on quantized weights in the tiled layouts (quant::tiled_unit: FP8 codes of >= 8M
// weights, AWQ with groups of 128), bf16 or f16 activations (T16): y (T, out) (+)= x (T, in) W^T + b, 8 < T
// <= 64.
//
// Why: linear_qgemm.cu's kernel dequantises each 64 x 128 weight tile to f32, scales it, rounds it to
// bf16 and stores it in shared memory, then the tensor cores read it back (wmma): ~4 instructions and a
// shared-memory round trip per weight, 128 registers a thread, 25% occupancy, DRAM 18-26% busy at batch
// 32 (ncu, bench/cuda_notes.md, tenth session); 8B FP8 decodes at 0.98x BF16 there. Here the weights
// never touch shared memory: as in the batch <= 8 GEMV (gemv_tc.cuh), a warp owns a 16-row tile, each
// lane loads its two 16-byte units of a chunk straight into registers, the decoder (quant_tc.cuh) turns
// them into T16 A fragments exactly, and the row's scale multiplies the chunk's f32 mma sums once.
// Only x goes through shared memory: 128 k of the T (padded to 8 NB) rows per step, by cp.async, three
// stages, one barrier a step; lane (g, c)'s B fragment of k-tile pair jj is 16 contiguous bytes of x row
// 8 b + g at k = c kChunk / 4 + 8 jj of its chunk (gemv_tc.cuh's k slots), read with one 16-byte load.
// The weights of the next step are in flight (registers) while this step's mma run. Split-K in whole
// waves of resident blocks (qgemm_split): f32 outputs of several K chunks are summed with 16-byte
// reductions (red.global.add.v4.f32) after a pass through shared memory.
#include <cuda_bf16.h>

#include <algorithm>

#include "cuda/common.cuh"
#include "cuda/mma.cuh"
#include "ops/cuda/gemv.cuh"
#include "ops/cuda/linear_quant.cuh"
#include "ops/cuda/quant_tc.cuh"

namespace lmscope::cuda {

namespace {

constexpr int kWarpsTc = 4, kThreadsTc = 32 * kWarpsTc;  // a block: 4 tiles of 16 rows
constexpr int kStepK = 128;                              // k per step: one AWQ chunk, two FP8 chunks
constexpr int kStages = 3;                               // x stages in flight: this step, the next two

/**
 * Shared x tile of one step: (8 NB, 128) T16, 16 units of 16 bytes a row. Where a quarter warp's
 * B-fragment loads fall (rows g, g + 1; units u = (k of lane c) / 8 + jj for c = 0..3) decides the row
 * pitch and swizzle: FP8 (chunks of 64: u = 8 h + 2 c + jj) with a pitch of 17 units puts them in 8
 * distinct 16-byte bank groups; AWQ (u = 4 c + jj) needs unit u ^ (u / 8 % 2) and a pitch of 18.
 */
template <int kChunk>
struct XTile {
    static constexpr int kPitch = kChunk == 64 ? 17 : 18;  // units a row
    __device__ static int unit(int row, int u) {
        return row * kPitch + (kChunk == 64 ? u : u ^ ((u >> 3) & 1));
    }
};

template <class D, int NB, typename OutT>
__global__ void __launch_bounds__(kThreadsTc)
    qgemm_tc_kernel(typename D::Params p, const typename D::Elem* __restrict__ x, int T, int in, int out,
                    int steps_per_split, const float* __restrict__ bias, OutT* y, bool acc, bool atomic) {
    constexpr int kChunk = D::kChunk, kCps = kStepK / kChunk,
                  kJ = kChunk / 16;                                  // chunks a step, k-tiles a chunk
    constexpr int kRowsX = 8 * NB, kUnitsX = kRowsX * (kStepK / 8);  // x rows, x units a step
    using X = XTile<kChunk>;
    extern __shared__ __align__(16) uint4 xs[];  // kStages x (kRowsX, X::kPitch) units
    constexpr int kStageUnits = kRowsX * X::kPitch;

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    const int tiles = (out + 15) / 16, tile = blockIdx.x * kWarpsTc + warp, row0 = tile * 16;
    const bool live = tile < tiles;  // a warp past the last tile still takes part in the barriers
    const int steps = in / kStepK;
    const int s0 = blockIdx.y * steps_per_split, s1 = min(steps, s0 + steps_per_split);

    // x of step s into stage s % kStages; rows >= T zero-filled (cp.async with source size 0)
    auto stage_x = [&](int s) {
        if (s < s1) {
            uint4* dst = xs + (s % kStages) * kStageUnits;
            for (int i = threadIdx.x; i < kUnitsX; i += kThreadsTc) {
                const int r = i / (kStepK / 8), u = i % (kStepK / 8);
                const bool valid = r < T;
                mma::cp_async16(dst + X::unit(r, u),
                                x + (valid ? static_cast<int64_t>(r) * in + s * kStepK + 8 * u : 0), valid);
            }
        }
        mma::cp_async_commit();  // an empty group past the end keeps the wait count uniform
    };
    stage_x(s0);
    stage_x(s0 + 1);

    // lane's units of chunk ch: rows g and g + 8 at w + 64 ch and + 32 (padded rows: whole tiles)
    const uint4* w = D::weights(p) + static_cast<int64_t>(live ? tile : 0) * (in / kChunk) * 64 + lane;
    const uint32_t* sa = D::scale_row(p, min(row0 + g, out - 1));
    const uint32_t* sb = D::scale_row(p, min(row0 + g + 8, out - 1));
    uint4 raw[kCps][2];
    uint32_t sw[kCps][2];  // the two rows' scale words of each chunk
    auto load_w = [&](int s, uint4(&r)[kCps][2], uint32_t(&sc)[kCps][2]) {
        if (!live || s >= s1) return;
#pragma unroll
        for (int h = 0; h < kCps; ++h) {
            const int ch = s * kCps + h;
            r[h][0] = gemv::load_stream(w + 64 * ch);
            r[h][1] = gemv::load_stream(w + 64 * ch + 32);
            sc[h][0] = __ldg(sa + D::scale_index(p, ch));
            sc[h][1] = __ldg(sb + D::scale_index(p, ch));
        }
    };
    load_w(s0, raw, sw);

    float accum[NB]
               [4];  // lane (g, c): rows g (0, 1) and g + 8 (2, 3) of tokens 8 b + 2 c (0, 2) and + 1 (1, 3)
#pragma unroll
    for (int b = 0; b < NB; ++b) accum[b][0] = accum[b][1] = accum[b][2] = accum[b][3] = 0.0f;

    for (int s = s0; s < s1; ++s) {
        uint4 nraw[kCps][2];
        uint32_t nsw[kCps][2];
        load_w(s + 1, nraw, nsw);  // in flight during this step's mma
        mma::cp_async_wait<1>();   // this step's x is in (the next one's may not be)
        __syncthreads();
        const uint4* xst = xs + (s % kStages) * kStageUnits;
        if (live) {
#pragma unroll
            for (int h = 0; h < kCps; ++h) {
                const typename D::Ctx cx = D::ctx(sw[h][0], sw[h][1]);
                float c4[NB][4];
#pragma unroll
                for (int b = 0; b < NB; ++b) c4[b][0] = c4[b][1] = c4[b][2] = c4[b][3] = 0.0f;
#pragma unroll
                for (int jj = 0; jj < kJ / 2; ++jj) {
                    const int u = (h * kChunk + c * (kChunk / 4)) / 8 + jj;
                    uint4 bf[NB];
#pragma unroll
                    for (int b = 0; b < NB; ++b) bf[b] = xst[X::unit(8 * b + g, u)];
                    tc::mma_ktile_pair<D, NB>(raw[h][0], raw[h][1], jj, cx, bf, c4);
                }
                const float ra = D::scale(sw[h][0]), rb = D::scale(sw[h][1]);
#pragma unroll
                for (int b = 0; b < NB; ++b) {
                    accum[b][0] = fmaf(ra, c4[b][0], accum[b][0]);
                    accum[b][1] = fmaf(ra, c4[b][1], accum[b][1]);
                    accum[b][2] = fmaf(rb, c4[b][2], accum[b][2]);
                    accum[b][3] = fmaf(rb, c4[b][3], accum[b][3]);
                }
            }
        }
        // stage (s + 2) % 3 held step s - 1, which every warp finished before the barrier above
        stage_x(s + 2);
#pragma unroll
        for (int h = 0; h < kCps; ++h)
            raw[h][0] = nraw[h][0], raw[h][1] = nraw[h][1], sw[h][0] = nsw[h][0], sw[h][1] = nsw[h][1];
    }
    mma::cp_async_wait<0>();
    // the block's (T, 64) sums through shared memory (the x stages are free now), then 4 consecutive
    // rows of one token a thread: one 16-byte reduction (red.global.add.v4.f32) or store instead of 4
    constexpr int kLdT = 16 * kWarpsTc + 4;  // f32 a token row, a multiple of 4
    static_assert(kRowsX * kLdT <= kStages * kStageUnits * 4, "the sums fit the x stages");
    float* sums = reinterpret_cast<float*>(xs);
    __syncthreads();  // every warp is done with the x stages
#pragma unroll
    for (int b = 0; b < NB; ++b)
#pragma unroll
        for (int e = 0; e < 4; ++e)
            sums[(8 * b + 2 * c + (e & 1)) * kLdT + warp * 16 + g + (e >> 1) * 8] = accum[b][e];
    __syncthreads();
    const int rb = blockIdx.x * 16 * kWarpsTc;
    for (int i = threadIdx.x; i < kRowsX * 4 * kWarpsTc; i += kThreadsTc) {
        const int t = i / (4 * kWarpsTc), r = 4 * (i % (4 * kWarpsTc)), row = rb + r;
        if (t >= T || row >= out) continue;
        float4 v = *reinterpret_cast<const float4*>(sums + t * kLdT + r);
        float* vv = &v.x;
        const int n = min(4, out - row);
        if (bias && blockIdx.y == 0)
            for (int k = 0; k < n; ++k) vv[k] += bias[row + k];
        OutT* dst = y + static_cast<int64_t>(t) * out + row;
        if constexpr (std::is_same_v<OutT, float>) {
            if (atomic) {
                if (n == 4 && out % 4 == 0)
                    asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(dst), "f"(v.x),
                                 "f"(v.y), "f"(v.z), "f"(v.w)
                                 : "memory");
                else
                    for (int k = 0; k < n; ++k) atomicAdd(dst + k, vv[k]);
                continue;
            }
        }
        for (int k = 0; k < n; ++k) dst[k] = from_f32<OutT>((acc ? to_f32(dst[k]) : 0.0f) + vv[k]);
    }
}

template <class D, int NB, typename OutT>
void launch(const DeviceLinear& w, const void* x, int64_t T, void* y, bool acc, cudaStream_t stream) {
    const int steps = static_cast<int>(w.in / kStepK);
    const int tiles = static_cast<int>((w.out + 15) / 16), mblocks = (tiles + kWarpsTc - 1) / kWarpsTc;
    constexpr size_t smem = size_t{kStages} * 8 * NB * XTile<D::kChunk>::kPitch * 16;
    auto* kernel = qgemm_tc_kernel<D, NB, OutT>;
    static const int resident = [&] {  // blocks an SM holds (registers, shared memory)
        if (smem > 48 * 1024)
            CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem)));
        int n = 0;
        CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, kThreadsTc, smem));
        return std::max(n, 1);
    }();
    const QgemmSplit sp =
        qgemm_split(steps, mblocks, std::is_same_v<OutT, float>, T, w.out, y, acc, stream, resident);
    kernel<<<dim3(static_cast<unsigned>(mblocks), static_cast<unsigned>(sp.splits)), kThreadsTc, smem, stream>>>(
        D::params(w), static_cast<const typename D::Elem*>(x), static_cast<int>(T), static_cast<int>(w.in),
        static_cast<int>(w.out), sp.per, w.bias, static_cast<OutT*>(y), acc, sp.atomic);
    CUDA_CHECK_LAUNCH();
}

template <class D>
void dispatch(const DeviceLinear& w, const void* x, int64_t T, void* y, DType y_dtype, bool acc,
              cudaStream_t stream) {
    auto go = [&](auto* op) {
        using OutT = std::remove_pointer_t<decltype(op)>;
        if (T <= 16)
            launch<D, 2, OutT>(w, x, T, y, acc, stream);
        else if (T <= 32)
            launch<D, 4, OutT>(w, x, T, y, acc, stream);
        else
            launch<D, 8, OutT>(w, x, T, y, acc, stream);
    };
    if (y_dtype == DType::F32)
        go(static_cast<float*>(nullptr));
    else
        go(static_cast<typename D::Elem*>(nullptr));
}

}  // namespace

bool qgemm_tc_supported(const DeviceLinear& w, int64_t T) {
    // read at every call (a getenv beside a kernel launch), so that a bad value is an error each time and
    // tests can switch it within one process
    if (!env_switch("LMSCOPE_CUDA_QGEMM_TC", true) || T < 1 || T > kMaxQgemmRows || w.in % kStepK)
        return false;
    if (w.dtype != DType::BF16 && w.dtype != DType::F16) return false;
    if (w.format == LinearFormat::Fp8Block) return quant::fp8_tiled(w.out, w.in, w.block);
    if (w.format == LinearFormat::AwqInt4) return quant::awq_tiled(w.in, w.block);
    return false;
}

void qgemm_tc_cuda(const void* x, int64_t T, const DeviceLinear& w, void* y, DType y_dtype, bool accumulate,
                   cudaStream_t stream) {
    auto by_t16 = [&](auto* t16) {
        using T16 = std::remove_pointer_t<decltype(t16)>;
        if (w.format == LinearFormat::Fp8Block)
            dispatch<tc::Fp8DecoderT<T16>>(w, x, T, y, y_dtype, accumulate, stream);
        else
            dispatch<tc::AwqDecoderT<T16>>(w, x, T, y, y_dtype, accumulate, stream);
    };
    if (w.dtype == DType::F16)
        by_t16(static_cast<__half*>(nullptr));
    else
        by_t16(static_cast<__nv_bfloat16*>(nullptr));
}

}  // namespace lmscope::cuda
