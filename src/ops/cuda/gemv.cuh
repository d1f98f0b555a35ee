// The decode GEMV skeleton every weight format shares (linear.cu: dense, linear_fp8.cu, linear_awq.cu).
// One wave of blocks (as many as are resident at once) of kWarps warps each (the batch-1 kernel: F::kWarps1).
// A block stages f(x) for
// NT <= 8 rows in shared memory once (RMSNorm or SwiGLU fused into the staging), then each warp takes
// F::kRows output rows at a time, the next group's first loads in flight meanwhile, and asks the
// format's rows_dot for their NT dot products (16-byte streamed weight loads, dequantised in
// registers; x read once from shared memory for all kRows rows); warp-shuffle sums; bias and the
// residual add in the store. The format F provides:
//   struct Params;                       device pointers of the weight
//   static constexpr int kRows;          output rows per warp pass
//   Acc<NT>, Stage<NT>                   the lane accumulators and the staged-x layout (LaneFormat's
//                                        defaults: every lane sums all kRows x NT outputs, a warp sum
//                                        finishes them; x as f32; the tensor-core formats differ)
//   kBlocks1, kWarps1, kNextEarly        resident blocks per SM the batch-1 kernel is built for, and its
//                                        warps per block (fewer, larger blocks stage x fewer times per SM);
//                                        whether the next row group's preload goes out before this group's
//                                        work
//   kPerPass, kMinPart, vectors(p, in)   units (of a row) one warp pass loads, the fewest a split-K
//                                        part takes, units per row (0: no vector path, no split)
//   kPre, preload(p, row0, out, in, lane, pre[kPre])   the warp's first 16-byte loads, issued before
//                                        the block stages x, so that their latency overlaps it
//   rows_dot<NT>(p, row0, out, in, X, lane, acc, pre)   this lane's partial sums into acc (pre: the
//                                        first pass of this row group, preloaded while the previous one ran)
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

/**
 * A format's preload: the first kU passes over the 16-byte vectors [kb, ke) of kR rows (row r at
 * base + min(row0 + r, out - 1) * row_bytes) into pre[u * kR + r].
 */
template <int kU, int kR>
__device__ __forceinline__ void preload_rows(const char* base, int64_t row_bytes, int row0, int out, int kb, int ke,
                                             int lane, uint4 (&pre)[kU * kR]) {
#pragma unroll
    for (int u = 0; u < kU; ++u)
#pragma unroll
        for (int r = 0; r < kR; ++r)
            if (kb + lane + u * 32 < ke)
                pre[u * kR + r] = load_stream(
                    reinterpret_cast<const uint4*>(base + static_cast<int64_t>(min(row0 + r, out - 1)) * row_bytes) + kb + lane + u * 32);
}

/**
 * One pass of a two-dimensional loader: raw[u][r] = 16-byte vector k0 + 32 u of row r (those < nv),
 * streamed, or taken from `pre` (pre[u * kR + r], the preload of the row group's first pass) when
 * `first`. (`pre` is a reference indexed by constants, never a pointer, so that it stays in registers:
 * a pointer to it put it on the stack, and storing the preload there waited for the loads.)
 */
template <int kU, int kR>
__device__ __forceinline__ void load_pass(uint4 (&raw)[kU][kR], const uint4* const (&rows)[kR], int k0, int nv,
                                          const uint4 (&pre)[kU * kR], bool first) {
#pragma unroll
    for (int u = 0; u < kU; ++u)
#pragma unroll
        for (int r = 0; r < kR; ++r)
            if (k0 + u * 32 < nv) raw[u][r] = first ? pre[u * kR + r] : load_stream(rows[r] + k0 + u * 32);
}

/**
 * a0 += the first 4 BF16 weights of w times xa, a1 += the last 4 times xb (two FMA chains; the caller
 * adds them at the end).
 */
__device__ __forceinline__ void fma_bf16x8(const uint4& w, const float4& xa, const float4& xb, float& a0, float& a1) {
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&w);
    const float2 w0 = __bfloat1622float2(h[0]), w1 = __bfloat1622float2(h[1]), w2 = __bfloat1622float2(h[2]),
                 w3 = __bfloat1622float2(h[3]);
    a0 = fmaf(w0.x, xa.x, a0);
    a1 = fmaf(w2.x, xb.x, a1);
    a0 = fmaf(w0.y, xa.y, a0);
    a1 = fmaf(w2.y, xb.y, a1);
    a0 = fmaf(w1.x, xa.z, a0);
    a1 = fmaf(w3.x, xb.z, a1);
    a0 = fmaf(w1.y, xa.w, a0);
    a1 = fmaf(w3.y, xb.w, a1);
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
    L2Prefetch l2;
    bool pdl = false;
    bool next_early = false;  // GemvIn::smem_next_early
    int ksplit = 1;  // warps per row group (split-K), set by launch
};

// this block's share of each range of pf into L2 (fire and forget: the TMA unit fetches it)
__device__ __forceinline__ void prefetch_l2(const L2Prefetch& pf) {
    for (int i = 0; i < pf.n; ++i) {
        const int64_t chunk = ((pf.bytes[i] + gridDim.x - 1) / gridDim.x + 15) & ~int64_t{15};
        const int64_t off = static_cast<int64_t>(blockIdx.x) * chunk;
        if (off >= pf.bytes[i]) continue;
        const int64_t n = min(chunk, pf.bytes[i] - off) & ~int64_t{15};
        if (n > 0)
            asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(static_cast<const char*>(pf.p[i]) + off),
                         "r"(static_cast<uint32_t>(n))
                         : "memory");
    }
}

__device__ __forceinline__ void prefetch_l1(const float* p) { asm volatile("prefetch.global.L1 [%0];" ::"l"(p)); }

/** The staged rows f(x) (NT, in) in shared memory as f32, read through the swizzle. */
struct Xs {
    float* p;
    int in;
    bool swz;
    __device__ Xs(void* smem, int n) : p(static_cast<float*>(smem)), in(n), swz(n % 32 == 0) {}
    __device__ __forceinline__ int unit(int i4) const { return swz ? (i4 ^ ((i4 >> 3) & 7)) : i4; }
    __device__ __forceinline__ int pos(int i) const { return (unit(i >> 2) << 2) | (i & 3); }
    /** Element i of row t. */
    __device__ __forceinline__ float at(int t, int i) const { return p[t * in + pos(i)]; }
    /** Elements 4 i4 .. 4 i4 + 3 of row t (in % 4 == 0). */
    __device__ __forceinline__ float4 at4(int t, int i4) const {
        return reinterpret_cast<const float4*>(p + t * in)[unit(i4)];
    }
    __device__ __forceinline__ void put(int t, int i, float v) const { p[t * in + pos(i)] = v; }
    __device__ __forceinline__ void put4(int t, int i4, float4 v) const { reinterpret_cast<float4*>(p + t * in)[unit(i4)] = v; }
};

/**
 * x staged for the tensor-core GEMVs (gemv_tc.cuh; mma m16n8k16, bf16): each f(x) value split into
 * bf16 hi + lo (hi + lo = x to 16 significant bits; the weights are exact in bf16, so the products
 * keep f32-like accuracy), stored as the B fragments: column n = 2 t + (0: hi, 1: lo) of token t,
 * n-tiles of 8 columns. 16-byte unit (chunk ch of kChunk k, pair jj of k-tiles, n-tile, column, c)
 * holds x[n][kChunk ch + c kChunk / 4 + 8 jj .. + 7], the eight values lane (n % 8, c) feeds k-tiles
 * 2 jj and 2 jj + 1 (the weight side pairs k slots with the same k); the 8 lanes of a quarter warp
 * read 128 contiguous bytes. The same bytes as Xs: 4 NT per k.
 */
template <int NT, int kChunk>
struct XsBf16 {
    static constexpr int kN = 2 * NT < 8 ? 2 * NT : 8;  // columns stored per n-tile
    static constexpr int kNB = (2 * NT + 7) / 8;         // n-tiles
    static constexpr int kJJ = kChunk / 32;              // k-tile pairs per chunk
    uint4* p;
    int in;
    __device__ XsBf16(void* smem, int n) : p(static_cast<uint4*>(smem)), in(n) {}
    __device__ __forceinline__ static int unit(int ch, int jj, int n, int c) {
        return ((ch * kJJ + jj) * kNB + n / 8) * (kN * 4) + (n % 8) * 4 + c;
    }
    __device__ __forceinline__ static int unit_of(int n, int k) {
        return unit(k / kChunk, (k % (kChunk / 4)) / 8, n, (k % kChunk) / (kChunk / 4));
    }
    __device__ __forceinline__ void put(int t, int i, float v) const {
        const __nv_bfloat16 hi = __float2bfloat16_rn(v), lo = __float2bfloat16_rn(v - __bfloat162float(hi));
        reinterpret_cast<__nv_bfloat16*>(p + unit_of(2 * t, i))[i & 7] = hi;
        reinterpret_cast<__nv_bfloat16*>(p + unit_of(2 * t + 1, i))[i & 7] = lo;
    }
    __device__ __forceinline__ void put4(int t, int i4, float4 v) const {
        const int k = 4 * i4;
        const __nv_bfloat162 h01 = __floats2bfloat162_rn(v.x, v.y), h23 = __floats2bfloat162_rn(v.z, v.w);
        const float2 f01 = __bfloat1622float2(h01), f23 = __bfloat1622float2(h23);
        const __nv_bfloat162 l01 = __floats2bfloat162_rn(v.x - f01.x, v.y - f01.y),
                             l23 = __floats2bfloat162_rn(v.z - f23.x, v.w - f23.y);
        uint2* hi = reinterpret_cast<uint2*>(p + unit_of(2 * t, k)) + ((k >> 2) & 1);
        uint2* lo = reinterpret_cast<uint2*>(p + unit_of(2 * t + 1, k)) + ((k >> 2) & 1);
        *hi = make_uint2(*reinterpret_cast<const uint32_t*>(&h01), *reinterpret_cast<const uint32_t*>(&h23));
        *lo = make_uint2(*reinterpret_cast<const uint32_t*>(&l01), *reinterpret_cast<const uint32_t*>(&l23));
    }
};

/**
 * The accumulators of the row-per-lane formats: every lane holds partial sums of all R x NT outputs
 * of its row group; a warp sum finishes them, and lane 0 stores.
 */
template <int R, int NT>
struct LaneSums {
    float v[R][NT];
    struct Shared {
        float v[R][NT];
    };
    __device__ __forceinline__ void zero() {
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int t = 0; t < NT; ++t) v[r][t] = 0.0f;
    }
    __device__ __forceinline__ void reduce() {
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int t = 0; t < NT; ++t) v[r][t] = warp_sum(v[r][t]);
    }
    __device__ __forceinline__ void save(Shared& s, int lane) const {
        if (lane == 0)
#pragma unroll
            for (int r = 0; r < R; ++r)
#pragma unroll
                for (int t = 0; t < NT; ++t) s.v[r][t] = v[r][t];
    }
    __device__ __forceinline__ void add(const Shared& s, int lane) {
        if (lane == 0)
#pragma unroll
            for (int r = 0; r < R; ++r)
#pragma unroll
                for (int t = 0; t < NT; ++t) v[r][t] += s.v[r][t];
    }
    /** fn(r, t, sum) for the outputs this lane stores (lane 0: all of them). */
    template <class Fn>
    __device__ __forceinline__ void each(int lane, Fn&& fn) const {
        if (lane == 0)
#pragma unroll
            for (int r = 0; r < R; ++r)
#pragma unroll
                for (int t = 0; t < NT; ++t) fn(r, t, v[r][t]);
    }
};

/** The defaults of a format whose lanes each read all R rows of the warp's group (dense, FP8, AWQ). */
template <int R>
struct LaneFormat {
    static constexpr int kRows = R;
    static constexpr int kMinPart = 32;  // split-K: 16-byte vectors a part takes at least (one per lane)
    static constexpr int kBlocks1 = 3;   // blocks per SM the batch-1 kernel's registers must allow
    static constexpr int kWarps1 = kWarps;    // warps per block of the batch-1 kernel
    static constexpr bool kNextEarly = true;  // the next row group's first loads in flight during this one
    static constexpr bool kPreferShared =
        false;  // prefer_shared_carveout (common.cuh): the dense format only
    template <int NT>
    using Acc = LaneSums<R, NT>;
    template <int NT>
    using Stage = Xs;
};

// f(x) element i of row xr (scalar path: in % 4 != 0)
template <GemvInput MODE>
__device__ __forceinline__ float f_in(const float* xr, int i, const Args& a, float inv) {
    if (MODE == GemvInput::Plain) return xr[i];
    if (MODE == GemvInput::RmsNorm) return a.nw ? xr[i] * inv * a.nw[i] : xr[i] * inv;
    const float g = xr[i];
    return g / (1.0f + expf(-g)) * xr[a.up_off + i];
}

template <int NT, GemvInput MODE, class X_>
__device__ __forceinline__ void stage_x_scalar(const Args& a, const X_& X) {
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        const float* xr = a.x + static_cast<int64_t>(t) * a.x_stride;
        float inv = 1.0f;
        if (MODE == GemvInput::RmsNorm) {
            float ss = 0;
            if (t < a.T)
                for (int i = threadIdx.x; i < a.in; i += blockDim.x) ss += xr[i] * xr[i];
            inv = rsqrtf(block_sum(ss) / static_cast<float>(a.in) + a.eps);
        }
        for (int i = threadIdx.x; i < a.in; i += blockDim.x) X.put(t, i, t < a.T ? f_in<MODE>(xr, i, a, inv) : 0.0f);
    }
}

// in, x_stride and up_off multiples of 4: float4 loads, the first kCached float4 of each thread kept in
// registers between the sum of squares and the store (one pass over x for in <= kCached * 4 * threads)
template <int NT, GemvInput MODE, class X_>
__device__ __forceinline__ void stage_x_vec(const Args& a, const X_& X) {
    constexpr int kCached = 4;
    const int n4 = a.in / 4;
    const auto load = [&](const float* xr, int i4) {
        const float4 g = reinterpret_cast<const float4*>(xr)[i4];
        if (MODE != GemvInput::SiluMul) return g;
        const float4 u = reinterpret_cast<const float4*>(xr + a.up_off)[i4];
        return make_float4(g.x / (1.0f + expf(-g.x)) * u.x, g.y / (1.0f + expf(-g.y)) * u.y,
                           g.z / (1.0f + expf(-g.z)) * u.z, g.w / (1.0f + expf(-g.w)) * u.w);
    };
    const auto put = [&](int t, int i4, float4 v, float inv) {
        if (MODE == GemvInput::RmsNorm) {
            const float4 w = a.nw ? reinterpret_cast<const float4*>(a.nw)[i4] : make_float4(1, 1, 1, 1);
            v = make_float4(v.x * inv * w.x, v.y * inv * w.y, v.z * inv * w.z, v.w * inv * w.w);
        }
        X.put4(t, i4, v);
    };
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        const float* xr = a.x + static_cast<int64_t>(t) * a.x_stride;
        const bool live = t < a.T;
        float4 c[kCached];
        float ss = 0.0f;
#pragma unroll
        for (int k = 0; k < kCached; ++k) {
            const int i4 = threadIdx.x + k * blockDim.x;
            c[k] = live && i4 < n4 ? load(xr, i4) : make_float4(0, 0, 0, 0);
            ss += c[k].x * c[k].x + c[k].y * c[k].y + c[k].z * c[k].z + c[k].w * c[k].w;
        }
        if (MODE == GemvInput::RmsNorm && live)
            for (int i4 = threadIdx.x + kCached * blockDim.x; i4 < n4; i4 += blockDim.x) {
                const float4 v = load(xr, i4);
                ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
            }
        float inv = 1.0f;
        if (MODE == GemvInput::RmsNorm) inv = rsqrtf(block_sum(ss) / static_cast<float>(a.in) + a.eps);
#pragma unroll
        for (int k = 0; k < kCached; ++k) {
            const int i4 = threadIdx.x + k * blockDim.x;
            if (i4 < n4) put(t, i4, c[k], inv);
        }
        for (int i4 = threadIdx.x + kCached * blockDim.x; i4 < n4; i4 += blockDim.x)
            put(t, i4, live ? load(xr, i4) : make_float4(0, 0, 0, 0), inv);
    }
}

template <int NT, GemvInput MODE, class X_>
__device__ __forceinline__ void stage_x(const Args& a, const X_& X) {
    const bool vec = a.in % 4 == 0 && a.x_stride % 4 == 0 && a.up_off % 4 == 0 &&
                     (MODE != GemvInput::RmsNorm || !a.nw || reinterpret_cast<uintptr_t>(a.nw) % 16 == 0) &&
                     reinterpret_cast<uintptr_t>(a.x) % 16 == 0;
    if (vec) stage_x_vec<NT, MODE>(a, X);
    else stage_x_scalar<NT, MODE>(a, X);
}

/** Warps per block of the NT-row kernel of format F. */
template <class F, int NT>
constexpr int block_warps() {
    return NT == 1 ? F::kWarps1 : kWarps;
}

// batch 1: at most 80 registers, so that 3 blocks of 8 warps (or one of 24) fit on an SM (89 without the
// bound: 2 blocks, a third fewer warps streaming; 0.6B 944 -> 907 tok/s)
template <class F, int NT, GemvInput MODE>
__global__ void __launch_bounds__(block_warps<F, NT>() * 32, NT == 1 ? F::kBlocks1 : 1)
    gemv_kernel(typename F::Params w, Args a, bool pdl) {
    constexpr int W = block_warps<F, NT>();
    extern __shared__ float4 xs4[];  // (NT, in) transformed inputs, 4 NT bytes per k in either layout
    constexpr int RPW = F::kRows;
    using Acc = typename F::template Acc<NT>;
    __shared__ typename Acc::Shared part_sum[W];  // split-K: each warp's sums, added up by part 0
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    // split-K (a.ksplit warps per row group, a divisor of W): part p of a group takes the 16-byte
    // vectors [kb, ke) of its rows; 1 when the format has no vector path (nv = 0)
    const int ks = a.ksplit, groups = W / ks, grp = warp / ks, part = warp % ks;
    const int nv = F::vectors(w, a.in), kb = nv * part / ks, ke = nv * (part + 1) / ks;
    const int stride = gridDim.x * groups * RPW;
    const int block0 = blockIdx.x * groups * RPW;  // the block's first row; the row loop is uniform over the block
    const int first = block0 + grp * RPW;
    // Programmatic dependent launch (GemvIn::pdl; launch_kernel in common.cuh): this grid may start while
    // the kernel before it still runs, and lets the next one start at once (its blocks only take SM
    // slots once every block of this grid has been placed). The weights do not depend on the
    // previous kernel: this warp's first loads go out now, and only then does it wait for x.
    if (pdl) asm volatile("griddepcontrol.launch_dependents;");
    // this warp's first weight loads are in flight while x is staged
    uint4 pre[F::kPre];
    if (first < a.out) F::preload(w, first, a.out, a.in, lane, pre, kb, ke);
    // into L1 meanwhile: the RMSNorm weights this thread scales x by (read after the block reduction,
    // an L2 round trip on the critical path otherwise); they are constant, so before the wait too
    if (MODE == GemvInput::RmsNorm && a.nw)
        for (int i = 4 * threadIdx.x; i < a.in && i < 4 * 4 * W * 32; i += 4 * W * 32) prefetch_l1(a.nw + i);
    if (pdl) asm volatile("griddepcontrol.wait;" ::: "memory");
    // the residual this warp adds its first rows to (written by an earlier kernel: after the wait)
    if (a.acc && part == 0 && lane < RPW * NT && first + lane % RPW < a.out && lane / RPW < a.T)
        prefetch_l1(a.y + static_cast<int64_t>(lane / RPW) * a.y_stride + first + lane % RPW);
    const typename F::template Stage<NT> X(xs4, a.in);
    stage_x<NT, MODE>(a, X);
    __syncthreads();

    for (int base = block0; base < a.out; base += stride) {
        const int row0 = base + grp * RPW;
        const bool live = row0 < a.out;
        // the next kernels' weights, once this block's last rows are under way (earlier, a long
        // GEMV would evict them again before they are used)
        if (base + stride >= a.out && threadIdx.x == 0) prefetch_l2(a.l2);
        // the first loads of this warp's next row group go out before this one's dot products, so that
        // a warp with several row groups does not wait a whole DRAM latency at the start of each
        // (kNextEarly: formats that double-buffer inside rows_dot, and rarely have a second group, load
        // it after this one instead, leaving the registers to the loop)
        uint4 next[F::kNextEarly ? F::kPre : 1] = {};
        if constexpr (F::kNextEarly)
            if (row0 + stride < a.out) F::preload(w, row0 + stride, a.out, a.in, lane, next, kb, ke);
        Acc acc;
        acc.zero();
        if (live) F::template rows_dot<NT>(w, row0, a.out, a.in, X, lane, acc, pre, kb, ke);
        if constexpr (F::kNextEarly) {
#pragma unroll
            for (int i = 0; i < F::kPre; ++i) pre[i] = next[i];
        } else if (row0 + stride < a.out) {
            F::preload(w, row0 + stride, a.out, a.in, lane, pre, kb, ke);
        }
        acc.reduce();
        if (ks > 1) {  // parts in order: the same sums whatever the timing
            acc.save(part_sum[warp], lane);
            __syncthreads();
            if (part == 0)
                for (int p = 1; p < ks; ++p) acc.add(part_sum[warp + p], lane);
            __syncthreads();  // part_sum is written again in the next pass
        }
        if (live && part == 0)
            acc.each(lane, [&](int r, int t, float sum) {
                const int row = row0 + r;
                if (row >= a.out || t >= a.T) return;
                float* dst = a.y + static_cast<int64_t>(t) * a.y_stride + row;
                *dst = (a.acc ? *dst : 0.0f) + sum + (a.bias ? a.bias[row] : 0.0f);
            });
    }
}

using cuda::sm_count;

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

/**
 * Warps per row group (1, 2, 4 or 8): a row of nv 16-byte vectors takes ceil(nv / per_pass) dependent
 * rounds of loads for one warp, and `slots` warps are resident. When the groups x ks parts still fit in
 * one wave, split so that the rounds a warp waits for, ceil(nv / ks / per_pass), are fewest (the
 * smaller split on ties; at least min_part units a part: 32 vectors, one per lane, for the row formats). 0.6B o / down (1024 rows of 2048 /
 * 3072) split in 2: one round each instead of 2-3, every load issued before the previous kernel ends.
 */
inline int split_k(int64_t nv, int64_t per_pass, int64_t min_part, int64_t groups, int64_t slots,
                   int block_warps = kWarps) {
    if (nv <= 0) return 1;
    int best = 1;
    int64_t best_rounds = 0;
    for (int ks = 1; ks <= block_warps && block_warps % ks == 0; ks *= 2) {
        // only where one wave of whole rows leaves warps idle: a GEMV that fills them is bound by
        // bytes, not rounds (8B o / down split in 2: 153.8 -> 145 tok/s)
        if (ks > 1 && (nv / ks < min_part || groups * ks > slots)) break;
        const int64_t iterations = (groups * ks + slots - 1) / slots, per_part = (nv + ks - 1) / ks;
        const int64_t rounds = iterations * ((per_part + per_pass - 1) / per_pass);
        if (ks == 1 || rounds < best_rounds) {
            best = ks;
            best_rounds = rounds;
        }
    }
    return best;
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
        if (F::kPreferShared) prefer_shared_carveout(reinterpret_cast<const void*>(gemv_kernel<F, NT, MODE>));
    });
    constexpr int W = block_warps<F, NT>();
    // One wave: as many blocks as are resident at once, each looping over its rows with the next row
    // group's loads in flight (8 per SM before, two waves at 56 registers: the second wave's blocks
    // started cold; bench/cuda_notes.md v15). Half a wave, to leave room for the next kernel's
    // blocks under PDL, was slower: 0.6B 936 -> 700 tok/s.
    int occ = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, gemv_kernel<F, NT, MODE>, W * 32, smem));
    const int64_t blocks = sm_count() * static_cast<int64_t>(std::max(occ, 1)), slots = blocks * W;
    Args b = a;
    b.ksplit =
        split_k(F::vectors(w, a.in), F::kPerPass, F::kMinPart, (a.out + F::kRows - 1) / F::kRows, slots, W);
    const int64_t groups = (a.out + F::kRows - 1) / F::kRows * b.ksplit;
    const int64_t grid = std::min<int64_t>((groups + W - 1) / W, blocks);
    launch_kernel(gemv_kernel<F, NT, MODE>, dim3(static_cast<unsigned>(grid)), dim3(W * 32), smem, stream,
                  b.pdl, w, b, b.pdl);
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

/** The launch arguments of linear_gemv_cuda's call. */
inline Args make_args(const float* x, int64_t T, const DeviceLinear& w, const GemvIn& in, float* y,
                      int64_t y_stride, bool accumulate) {
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
    a.l2 = in.l2;
    a.pdl = in.pdl;
    a.next_early = in.smem_next_early;
    return a;
}

/** linear_gemv_cuda for the format F with its device pointers `p`. */
template <class F>
void run(const typename F::Params& p, const float* x, int64_t T, const DeviceLinear& w, const GemvIn& in,
         float* y, int64_t y_stride, bool accumulate, cudaStream_t stream) {
    const Args a = make_args(x, T, w, in, y, y_stride, accumulate);
    switch (in.mode) {
        case GemvInput::Plain: rows<F, GemvInput::Plain>(p, a, stream); break;
        case GemvInput::RmsNorm: rows<F, GemvInput::RmsNorm>(p, a, stream); break;
        case GemvInput::SiluMul: rows<F, GemvInput::SiluMul>(p, a, stream); break;
    }
}

}  // namespace lmscope::cuda::gemv
