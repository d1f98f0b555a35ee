// The batch-1 decode GEMV with each block's rows of the weight in shared memory (GemvIn::smem, which the
// decoder sets unless LMSCOPE_CUDA_GEMV_SMEM=0), for weights small enough that a block's share fits (a
// Qwen3-0.6B layer: at most 94 KB of BF16 a block on 132 SMs). The rows come in by TMA bulk
// copies issued before griddepcontrol.wait, and a block takes part of an SM (16 warps, 56 registers,
// <= ~110 KB), so under PDL it is resident while the kernel before it runs and its weights arrive
// meanwhile (the row GEMV of gemv.cuh holds the whole register file, so its loads start only as the
// previous kernel's blocks leave). The dot products then read shared memory only; they take 1-2 us of a
// GEMV's ~5 (its bandwidth, shared with the TMA writes of the next kernel's weights). H100, 0.6B BF16
// b=1: 1112 -> 1181-1186 tok/s at P = 512, with the o projection's smem_next_early (bench/cuda_notes.md,
// ninth session).
//
// A weight format F provides (linear.cu: dense rows; FP8-block rows through it measured slower than
// FP8's own row GEMV, 1122 against 1132 tok/s for 0.6B at P = 512, and do not use it):
//   struct Params;                          what the dot needs besides the rows (e.g. block scales)
//   static constexpr int kVN;               weights in a 16-byte vector
//   static bool fits(const Params&, int in) (host) whether rows are whole 16-byte vectors
//   dot(p, wv, row, j, xv, a0, a1)          a0 / a1 += the products of vector j of row `row` (wv) with
//                                           f(x) of that vector (xv, kVN / 4 float4)
#pragma once

#include <mutex>
#include <type_traits>

#include "cuda/common.cuh"
#include "cuda/tma.cuh"
#include "ops/cuda/gemv.cuh"

namespace lmscope::cuda::gemv {

constexpr int kSmemWarps = 16;
constexpr int64_t kSmemSliceMax = 100 * 1024;  // weight bytes a block may hold
constexpr int kSmemRowsMax = 512;              // rows a block may hold (the split-K sums' space)

/**
 * The 8 rows' sums of every lane's two chains over the warp: lanes with bit 4 keep rows 4..7 and hand
 * 0..3 to their partner, then bits 3 and 2 likewise (9 shuffles instead of 8 x 5). Returns the sum of row
 * 4 * bit 4 + 2 * bit 3 + bit 2 of the lane.
 */
__device__ __forceinline__ float butterfly8(const float (&acc)[8][2], int lane) {
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

/**
 * Partial dot products of m <= 8 rows of the block's slice (the first at `rows`, global row `row0`) with
 * x over the 16-byte vectors [jb, je), summed over the warp (butterfly8). x is read from shared memory
 * once for all m rows (x in f32 is 2-4x the bytes of a row); the rows past m are neither read nor summed.
 */
template <class F>
__device__ __forceinline__ float smem_dot8(const typename F::Params& p, const uint4* rows, int row0, int nvr,
                                           int m, const Xs& X, int lane, int jb, int je) {
    constexpr int E = F::kVN / 4;  // float4 of x a vector
    float acc[8][2] = {};
    for (int j = jb + lane; j < je; j += 32) {
        float4 xv[E];
#pragma unroll
        for (int e = 0; e < E; ++e) xv[e] = X.at4(0, j * E + e);
#pragma unroll
        for (int r = 0; r < 8; ++r) {
            // (all 8 loads issued first, predicated, was slower: 2270 cycles a call against 2150)
            if (r >= m) break;
            // a copy, not a reference into shared memory: through the reference the bf16 pairs were read
            // by 16-bit loads (4x the instructions; the decode step fell from 1157 to 1071 tok/s)
            const uint4 wv = rows[r * nvr + j];
            F::dot(p, wv, row0 + r, j, xv, acc[r][0], acc[r][1]);
        }
    }
    return butterfly8(acc, lane);
}

template <class F, GemvInput MODE>
__global__ void __launch_bounds__(kSmemWarps * 32, 2)
    gemv_smem_kernel(typename F::Params p, const uint4* __restrict__ w, Args a, int rows_max) {
    extern __shared__ __align__(128) unsigned char smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    // the block's rows [r0, r0 + n) (out split evenly over the grid). Each group of ks warps takes a
    // contiguous run of rows; its ks warps split each row's vectors (at least one a lane), so that x is
    // read from shared memory once per 8 rows of a group, not once per row
    const int r0 = static_cast<int>(static_cast<int64_t>(blockIdx.x) * a.out / gridDim.x);
    const int n = static_cast<int>(static_cast<int64_t>(blockIdx.x + 1) * a.out / gridDim.x) - r0;
    const int nv = a.in / F::kVN;  // 16-byte vectors a row
    int ks = 1;
    while (ks < kSmemWarps && nv >= 64 * ks) ks *= 2;
    const int groups = kSmemWarps / ks, grp = warp / ks, part = warp % ks;
    const int q0 = n * grp / groups, q1 = n * (grp + 1) / groups;  // the group's rows
    const int jb = nv * part / ks, je = nv * (part + 1) / ks;
    uint64_t* mbar = reinterpret_cast<uint64_t*>(smem) + grp;  // the group's rows' copy completes here
    float* part_sums = reinterpret_cast<float*>(smem + 128);   // (kSmemWarps, rows_max) split-K sums
    float* xs = part_sums + kSmemWarps * rows_max;             // (in) f(x)
    uint4* ws = reinterpret_cast<uint4*>(xs + a.in);           // (n, nv) the block's rows
    // GemvIn::smem_next_early (the decoder's o projection): the next kernel may start at once, so that the
    // next weight's copy (gate|up's, the layer's largest) overlaps this whole kernel, not its second half
    if (a.pdl && a.next_early) asm volatile("griddepcontrol.launch_dependents;");
    // the weights do not depend on the kernel before: the group's rows are copied before the wait
    if (part == 0 && lane == 0 && q1 > q0) {
        const uint32_t bytes = static_cast<uint32_t>(q1 - q0) * static_cast<uint32_t>(nv) * 16u;
        tma::init(mbar, 1);
        tma::fence_init();
        tma::expect_bytes(mbar, bytes);
        tma::copy(ws + static_cast<int64_t>(q0) * nv, w + (static_cast<int64_t>(r0) + q0) * nv, bytes, mbar);
    }
    if (threadIdx.x == 0) prefetch_l2(a.l2);
    if (a.pdl) {
        asm volatile("griddepcontrol.wait;" ::: "memory");
        // otherwise the next kernel may start once every block is past its wait, not before: allowed at
        // the start for every GEMV, 3-4 kernels were resident at once and the 0.6B chain of four GEMVs
        // took 7.4-7.8 us a GEMV instead of 4.8 (bench/cuda_notes.md, ninth session)
        if (!a.next_early) asm volatile("griddepcontrol.launch_dependents;");
    }
    const Xs X(xs, a.in);
    stage_x<1, MODE>(a, X);
    __syncthreads();  // x staged; also orders the mbarrier inits before the other warps' waits
    uint32_t parity = 0;
    if (q1 > q0) tma::wait(mbar, parity);
    const int rr = 4 * ((lane >> 4) & 1) + 2 * ((lane >> 3) & 1) + ((lane >> 2) & 1);  // this lane's row of 8
    for (int q = q0; q < q1; q += 8) {
        const int m = min(8, q1 - q);
        const float sum = smem_dot8<F>(p, ws + static_cast<int64_t>(q) * nv, r0 + q, nv, m, X, lane, jb, je);
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
                for (int pt = 0; pt < ks; ++pt) sum += part_sums[(warp + pt) * rows_max + i];
                const int row = r0 + q0 + i;
                float* dst = a.y + row;
                *dst = (a.acc ? *dst : 0.0f) + sum + (a.bias ? a.bias[row] : 0.0f);
            }
    }
}

template <GemvInput M>
using Mode = std::integral_constant<GemvInput, M>;

/** The launch of the shared-memory GEMV for a weight (out, in) at T rows; grid 0 where it does not apply. */
struct SmemPlan {
    int64_t grid = 0, rows_max = 0;
    size_t smem = 0;
};
template <class F>
SmemPlan smem_plan(const typename F::Params& p, const void* w, int in, int out, int T) {
    SmemPlan none, pl;
    if (T != 1 || out <= 0 || in % F::kVN != 0 || !F::fits(p, in) || reinterpret_cast<uintptr_t>(w) % 16 != 0)
        return none;
    pl.grid = std::min<int64_t>(sm_count(), out);
    pl.rows_max = (out + pl.grid - 1) / pl.grid;
    const int64_t slice = pl.rows_max * (in / F::kVN) * 16;
    if (slice > kSmemSliceMax || pl.rows_max > kSmemRowsMax) return none;
    pl.smem = 128 +
              sizeof(float) * (kSmemWarps * static_cast<size_t>(pl.rows_max) + static_cast<size_t>(in)) +
              static_cast<size_t>(slice);
    return pl.smem > max_smem_optin() ? none : pl;
}

/**
 * Launches the shared-memory GEMV of the format F over the rows at `w` where it applies (batch 1, a
 * block's share of the rows at most kSmemSliceMax bytes); false when the row GEMV must run.
 */
template <class F>
bool run_smem(const typename F::Params& p, const void* w, const Args& a, GemvInput mode,
              cudaStream_t stream) {
    const SmemPlan pl = smem_plan<F>(p, w, a.in, a.out, a.T);
    if (pl.grid == 0) return false;
    const int64_t grid = pl.grid, rows_max = pl.rows_max;
    const size_t smem = pl.smem;
    const auto go = [&](auto mode_tag) {
        constexpr GemvInput kMode = decltype(mode_tag)::value;
        static std::once_flag once;  // one per kernel: the lambda is instantiated per mode
        std::call_once(once, [] {
            CUDA_CHECK(cudaFuncSetAttribute(gemv_smem_kernel<F, kMode>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(max_smem_optin())));
            prefer_shared_carveout(reinterpret_cast<const void*>(gemv_smem_kernel<F, kMode>));
        });
        launch_kernel(gemv_smem_kernel<F, kMode>, dim3(static_cast<unsigned>(grid)), dim3(kSmemWarps * 32),
                      smem, stream, a.pdl, p, static_cast<const uint4*>(w), a, static_cast<int>(rows_max));
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

}  // namespace lmscope::cuda::gemv
