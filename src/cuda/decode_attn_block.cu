// The attention half of a batch-1 decode layer in one kernel (decode_attn_block.h). A thread-block
// cluster of NB blocks (16 where the device places them, as the cluster attention) per kv head h:
//   1. before griddepcontrol.wait (nothing here depends on the kernel before): the TMA copies this
//      block's rows of h's q|k|v weights (its (G + 2) D rows / NB, on one mbarrier) and
//      of W_o's column slice of h (H / NB rows of G D) into shared memory; the first K / V rows of
//      earlier steps go to registers; the RoPE angles of the position.
//   2. RMSNorm(x) staged; each warp's q|k|v dot products as soon as its rows have landed; every block
//      stores its rows' results into every block of the cluster (distributed shared memory); one
//      cluster barrier.
//   3. q / k norm, RoPE and the cache write (attention_decode.cuh's decode_head), then the block's
//      share of the keys (WarpSoftmax), the warps merged in shared memory, the blocks merged as the
//      cluster kernel does (each block's totals of output slice j into block j), one cluster barrier;
//      each block combines its slice and stores it into every block; one cluster barrier.
//   4. o: the block's H / NB rows of W_o times h's G D outputs: h's partial sums of x's update.
//   5. The kv heads' partial sums meet in global memory: a block's H / NB outputs are summed by
//      whichever of the Hkv blocks of that slice arrives last (a fence, then an atomicInc that wraps
//      back to 0 for the next layer), in head order: x += bias + sum over h (the same sums whatever
//      the timing). Every block has read x in step 2 before any block reaches step 5 (its cluster's
//      barriers come between), so x is updated in place.
// Nothing waits across clusters, so the clusters need not be resident together (they are, at 8 kv
// heads x 16 blocks on an H100's 132 SMs).
#include <cooperative_groups.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "cuda/common.cuh"
#include "cuda/decode_attn_block.h"
#include "cuda/tma.cuh"
#include "ops/cuda/attention_decode.cuh"
#include "ops/cuda/gemv.cuh"

namespace lmscope::cuda {

namespace {

namespace cg = cooperative_groups;
using bf16 = __nv_bfloat16;

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kMaxRowsPerWarp = 8;  // q|k|v rows and o rows a warp takes
constexpr int kMaxCluster = 16;     // non-portable on Hopper; 8 where the device cannot place 16
constexpr float kLog2e = 1.4426950408889634f;

struct Args {
    const bf16 *wqkv, *wo;
    const float *in_norm, *q_norm, *k_norm, *qkv_bias, *o_bias;
    const float* rope;  // (positions, D): cos | sin of every position (rope_table_kernel)
    float eps, scale;
    bf16 *kc, *vc;
    int64_t capacity;
    RowPos rows;
    float* x;
    float* part;      // (Hkv, H): each kv head's partial sums of the o projection
    unsigned* count;  // (NB): arrivals at each output slice, wrapped to 0 by the last
    int H, Hq, Hkv;
    unsigned long long* tsum;  // LMSCOPE_CUDA_ATTN_BLOCK_TIMING=1: Stamps' sums
};

// LMSCOPE_CUDA_ATTN_BLOCK_TIMING=1: where a block's time goes. Thread 0 of every block takes globaltimer
// stamps at these points, in this order; their distances from kStart are summed over blocks and
// launches (kReduced: over the blocks that reduce), printed by the plan's destructor.
enum Stamp {
    kStart,
    kLoads,
    kInit,
    kCopies,
    kAngles,
    kIssued,
    kWaited,
    kStaged,
    kQkvWeights,
    kQkvDots,
    kSync1,
    kHeads,
    kKeys,
    kMerged,
    kCombined,
    kOWeights,
    kODots,
    kArrived,
    kReduced,
    kStamps  // the count of launches' blocks is kept in the last sum
};
const char* const kStampNames[kStamps] = {
    "start",  "loads issued", "mbarriers",        "q|k|v copies issued", "angles",         "pre-wait done",
    "waited", "x staged",     "q|k|v weights in", "q|k|v dots",          "cluster sync 1", "heads",
    "keys",   "merge sync",   "combined",         "o weights in",        "o dots",         "arrived",
    "reduced"};

struct Stamps {
    unsigned long long* sum;
    unsigned long long t[kStamps];
    __device__ explicit Stamps(unsigned long long* s) : sum(s) {
        for (int k = 0; k < kStamps; ++k) t[k] = 0;
        at(kStart);
    }
    __device__ __forceinline__ void at(Stamp k) {
        if (sum && threadIdx.x == 0) asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t[k]));
    }
    __device__ __forceinline__ void flush() {
        if (!sum || threadIdx.x != 0) return;
        for (int k = 1; k < kStamps; ++k)
            if (t[k]) atomicAdd(&sum[k], t[k] - t[kStart]);
        atomicAdd(&sum[kStart], 1ull);  // blocks
    }
};

/**
 * Byte offsets of a block's shared memory (the weight buffers first: 16-byte aligned for the TMA).
 * Regions whose uses never overlap share space, so that two blocks fit an SM with the 0.6B shape and
 * the device places all 8 clusters of 16 at once (at 121 KB a block, one block an SM, it placed 7 and
 * ran the eighth after them: 720 against 1090 tok/s for the per-op step):
 *   - the q|k|v weights (read up to the first cluster barrier) and the splits' totals (written by the
 *     cluster's blocks after it);
 *   - x's staging (step 2), the warps' head buffers (step 3's start), the warps' o states (its merge).
 */
struct Smem {
    size_t wq, merge, wo, xs, head, o, raw, att, cs, q, m, l, newkv, mbar, bytes;
    __host__ __device__ static size_t larger(size_t x, size_t y) { return x > y ? x : y; }
    __host__ __device__ Smem(int H, int G, int D, int NB) {
        const size_t RH = static_cast<size_t>(G + 2) * D, GD = static_cast<size_t>(G) * D;
        wq = merge = 0;  // merge: [NB][2 G + G D], every split's m, l of each q head and o
        wo = larger(2 * (RH / NB) * H, 4 * static_cast<size_t>(NB) * (2 * G + GD));
        xs = head = o = wo + 2 * (H / NB) * GD;
        raw =
            xs + 4 * larger(static_cast<size_t>(H), static_cast<size_t>(kWarps) * GD);  // (G + 2) D raw heads
        att = raw + 4 * RH;  // the kv head's attention output (G D)
        cs = att + 4 * GD;   // cos | sin of the position
        q = cs + 4 * static_cast<size_t>(D);
        m = q + 4 * GD;
        l = m + 4 * static_cast<size_t>(kWarps) * G;
        newkv = l + 4 * static_cast<size_t>(kWarps) * G;
        mbar = (newkv + 4 * static_cast<size_t>(D) + 7) / 8 * 8;  // the new K and V rows in BF16
        bytes = mbar + 8 * 2;
    }
};

/** Row rho of kv head kvh's q|k|v rows (its G q heads, its k head, its v head) in W_qkv. */
__device__ __forceinline__ int64_t qkv_row(int rho, int kvh, int G, int Hq, int Hkv, int D) {
    if (rho < G * D) return static_cast<int64_t>(kvh) * G * D + rho;
    if (rho < (G + 1) * D) return static_cast<int64_t>(Hq) * D + kvh * D + rho - G * D;
    return static_cast<int64_t>(Hq + Hkv) * D + kvh * D + rho - (G + 1) * D;
}

/**
 * The warp's dot products of nrows consecutive rows of w (in BF16 values each, in shared memory) with
 * x (xget(v): the 8 values of 16-byte vector v, as two float4): acc[r], complete in every lane.
 */
template <class XGet>
__device__ __forceinline__ void rows_dot(const bf16* w, int nrows, int in, int lane, XGet&& xget,
                                         float (&acc)[kMaxRowsPerWarp]) {
    float a0[kMaxRowsPerWarp], a1[kMaxRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kMaxRowsPerWarp; ++r) a0[r] = a1[r] = 0.0f;
    for (int v = lane; v < in / 8; v += 32) {
        float4 xa, xb;
        xget(v, xa, xb);
#pragma unroll
        for (int r = 0; r < kMaxRowsPerWarp; ++r) {
            if (r >= nrows) break;
            gemv::fma_bf16x8(reinterpret_cast<const uint4*>(w + static_cast<int64_t>(r) * in)[v], xa, xb, a0[r],
                             a1[r]);
        }
    }
#pragma unroll
    for (int r = 0; r < kMaxRowsPerWarp; ++r) acc[r] = warp_sum(a0[r] + a1[r]);
}

template <int DV, int MAXG>
__global__ void __launch_bounds__(kThreads, 2) attn_block_kernel(Args a) {
    constexpr int D = 32 * DV;
    constexpr int U = MAXG * DV >= 32 ? 2 : 4;  // keys per warp step, as the cluster kernel
    using Row = LaneRow<bf16, DV>;
    extern __shared__ __align__(128) unsigned char sm[];
    __shared__ unsigned last_arrival;
    cg::cluster_group cluster = cg::this_cluster();
    const int NB = static_cast<int>(gridDim.z), rank = static_cast<int>(cluster.block_rank());
    const int kvh = blockIdx.x, G = a.Hq / a.Hkv, GD = G * D, RH = (G + 2) * D;
    const int rpb = RH / NB, rpw = rpb / kWarps, orows = a.H / NB, orpw = orows / kWarps;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const Smem S(a.H, G, D, NB);
    bf16* sWq = reinterpret_cast<bf16*>(sm + S.wq);
    bf16* sWo = reinterpret_cast<bf16*>(sm + S.wo);
    float* sRaw = reinterpret_cast<float*>(sm + S.raw);
    float* sAtt = reinterpret_cast<float*>(sm + S.att);
    float* sCs = reinterpret_cast<float*>(sm + S.cs);
    float* sHead = reinterpret_cast<float*>(sm + S.head);
    float* sQ = reinterpret_cast<float*>(sm + S.q);
    float* sM = reinterpret_cast<float*>(sm + S.m);
    float* sL = reinterpret_cast<float*>(sm + S.l);
    float* sO = reinterpret_cast<float*>(sm + S.o);
    float* sMerge = reinterpret_cast<float*>(sm + S.merge);
    bf16* sNewK = reinterpret_cast<bf16*>(sm + S.newkv);
    bf16* sNewV = sNewK + D;
    // two mbarriers: the block's q|k|v rows, its W_o rows (one per warp's rows made 16 a block, more than
    // compute-sanitizer synccheck tracks; the dots then start no sooner than the block's last rows)
    uint64_t* mbar = reinterpret_cast<uint64_t*>(sm + S.mbar);

    Stamps st(a.tsum);
    // ---- 1. what does not depend on the kernel before ----
    // First the loads whose latency the step waits for: once the weight stream below is under way, a
    // load queues behind it (the position's load took 2.4 us when issued after the copies).
    // This block's keys: an even share of the row's S positions; the first U of each warp (rows of
    // earlier steps) now, the row of pos (perhaps stale) is replaced below.
    const int64_t S_len = row_pos(a.rows, 0) + 1, seq = row_seq(a.rows, 0), pos = S_len - 1;
    const int64_t chunk = (S_len + NB - 1) / NB, start = rank * chunk, end = min(S_len, start + chunk);
    const int64_t kvd = static_cast<int64_t>(a.Hkv) * D;
    const bf16* kbase = a.kc + seq * a.capacity * kvd + kvh * D + lane * DV;
    const bf16* vbase = a.vc + seq * a.capacity * kvd + kvh * D + lane * DV;
    const bool has_new = start <= pos && pos < end;
    const int64_t j0 = start + warp;
    Row kr[U], vr[U];
    auto load = [&](int64_t first, Row (&kk)[U], Row (&vv)[U]) {
        load_kv_step<kWarps>(kbase, vbase, kvd, first, end, kk, vv);
    };
    load(j0, kr, vr);
    // the position's cos | sin from the table (a double sincos per element here took ~2 us of every
    // layer) and the RMSNorm weights this thread scales x by: constant, so before the wait
    const float cs = tid < D ? a.rope[pos * D + tid] : 0.0f;  // D <= kThreads
    constexpr int kC = 2;                                     // float4 of x per thread: H <= 8 kThreads
    float4 nw4[kC];
#pragma unroll
    for (int c = 0; c < kC; ++c) {
        const int i4 = tid + c * kThreads;
        nw4[c] = i4 < a.H / 4 ? reinterpret_cast<const float4*>(a.in_norm)[i4] : make_float4(0, 0, 0, 0);
    }
    st.at(kLoads);
    if (tid == 0) {  // each mbarrier's one arrival announces all of its bytes, before any copy is issued
        tma::init(&mbar[0], 1);
        tma::init(&mbar[1], 1);
        tma::fence_init();
        tma::expect_bytes(&mbar[0], static_cast<uint32_t>(rpb) * a.H * 2);
        tma::expect_bytes(&mbar[1], static_cast<uint32_t>(orows) * GD * 2);
    }
    __syncthreads();
    st.at(kInit);
    asm volatile("griddepcontrol.launch_dependents;");
    // the cluster barrier's first phase: arrived here, waited on before the first store into another
    // block's shared memory (which must have started)
    asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
    // each warp asks for its own q|k|v rows, one copy per q / k / v run
    if (lane == 0) {
        const int r0 = rank * rpb + warp * rpw, r1 = r0 + rpw;
        for (int rho = r0; rho < r1;) {
            const int edge = rho < GD ? GD : rho < GD + D ? GD + D : RH, n = min(r1, edge) - rho;
            tma::copy(sWq + static_cast<int64_t>(rho - rank * rpb) * a.H,
                      a.wqkv + qkv_row(rho, kvh, G, a.Hq, a.Hkv, D) * a.H, static_cast<uint32_t>(n) * a.H * 2,
                      &mbar[0]);
            rho += n;
        }
    }
    st.at(kCopies);
    if (tid < D) sCs[tid] = cs;
    st.at(kAngles);
    st.at(kIssued);
    asm volatile("griddepcontrol.wait;" ::: "memory");
    st.at(kWaited);

    // ---- 2. q|k|v = W_qkv RMSNorm(x), this block's rows, into every block's sRaw ----
    {
        const gemv::Xs X(sm + S.xs, a.H);
        float4 x4[kC];
        float ss = 0.0f;
#pragma unroll
        for (int c = 0; c < kC; ++c) {
            const int i4 = tid + c * kThreads;
            x4[c] = i4 < a.H / 4 ? reinterpret_cast<const float4*>(a.x)[i4] : make_float4(0, 0, 0, 0);
            ss += x4[c].x * x4[c].x + x4[c].y * x4[c].y + x4[c].z * x4[c].z + x4[c].w * x4[c].w;
        }
        const float inv = rsqrtf(block_sum(ss) / static_cast<float>(a.H) + a.eps);
#pragma unroll
        for (int c = 0; c < kC; ++c) {
            const int i4 = tid + c * kThreads;
            if (i4 < a.H / 4)
                X.put4(0, i4,
                       make_float4(x4[c].x * inv * nw4[c].x, x4[c].y * inv * nw4[c].y,
                                   x4[c].z * inv * nw4[c].z, x4[c].w * inv * nw4[c].w));
        }
        __syncthreads();
        st.at(kStaged);
        uint32_t parity = 0;
        tma::wait(&mbar[0], parity);
        st.at(kQkvWeights);
        float acc[kMaxRowsPerWarp];
        rows_dot(
            sWq + static_cast<int64_t>(warp) * rpw * a.H, rpw, a.H, lane,
            [&](int v, float4& xa, float4& xb) {
                xa = X.at4(0, 2 * v);
                xb = X.at4(0, 2 * v + 1);
            },
            acc);
        st.at(kQkvDots);
        // this warp's W_o rows (kv head kvh's G D columns), once x has been read:
        // needed only after the attention (a warp's bulk copies are issued one after another: 64 from
        // one warp kept it ~3 us from the staging every warp takes part in)
        for (int t = warp * orpw + lane; t < (warp + 1) * orpw; t += 32)
            tma::copy(
                sWo + static_cast<int64_t>(t) * GD,
                a.wo + static_cast<int64_t>(rank * orows + t) * a.Hq * D + static_cast<int64_t>(kvh) * GD,
                static_cast<uint32_t>(GD) * 2, &mbar[1]);
        __syncwarp();  // the .aligned barrier below needs the warp converged
        asm volatile("barrier.cluster.wait.aligned;" ::: "memory");  // every block has started
        const int rho0 = rank * rpb + warp * rpw;
#pragma unroll
        for (int r = 0; r < kMaxRowsPerWarp; ++r)
            if (r < rpw)
                for (int b = lane; b < NB; b += 32) cluster.map_shared_rank(sRaw, b)[rho0 + r] = acc[r];
        cluster.sync();
        st.at(kSync1);
    }

    // ---- 3. attention over this block's keys, merged over the cluster into every block's sAtt ----
    const float qscale = a.scale * kLog2e;  // scores in log2 units: exp2 below
    {
        const DecodeQkv fq{nullptr, a.qkv_bias, a.q_norm, a.k_norm, a.eps, nullptr, sRaw};
        const int64_t cache_at = (seq * a.capacity + pos) * kvd + kvh * D;
        for (int it = warp; it < G + (has_new ? 2 : 0); it += kWarps)
            decode_head(fq, 0, a.Hq, a.Hkv, kvh, G, it, D, sCs, sHead + warp * D, qscale, sQ + it * D, a.kc,
                        a.vc, cache_at, sNewK, sNewV, lane);
        __syncthreads();
        st.at(kHeads);
    }
    WarpSoftmax<DV, MAXG> ws;
    ws.init(sQ, G, D, lane);
    ws.template walk<kWarps>(j0, end, pos, has_new, sNewK, sNewV, lane, kr, vr, load);
    st.at(kKeys);
    ws.store(sM, sL, sO, G, D, warp, lane);
    __syncthreads();
    // every block's totals (m, l of each q head, o of every output) into every block of the cluster,
    // then one cluster barrier, then each block combines all G D outputs itself (the cluster kernel's
    // owner-combines-and-forwards took a second barrier: ~2.4 us a layer here)
    const int stride = 2 * G + GD;
    for (int i = tid; i < GD; i += kThreads) {
        const int g = i / D;
        float M, Ls, Os;
        combine_warps<kWarps>(i, G, D, sM, sL, sO, M, Ls, Os);
        for (int b = 0; b < NB; ++b) {
            float* mb = cluster.map_shared_rank(sMerge, b) + rank * stride;
            mb[2 * G + i] = Os;
            if (i % D == 0) {
                mb[g] = M;
                mb[G + g] = Ls;
            }
        }
    }
    cluster.sync();  // the totals have landed; no block's shared memory is touched after this
    st.at(kMerged);
    for (int i = tid; i < GD; i += kThreads) sAtt[i] = combine_splits(sMerge, NB, stride, G, i / D, 2 * G + i);
    __syncthreads();
    st.at(kCombined);

    // ---- 4. this kv head's partial sums of the o projection, this block's rows ----
    {
        uint32_t parity = 0;
        tma::wait(&mbar[1], parity);
        st.at(kOWeights);
        float acc[kMaxRowsPerWarp];
        rows_dot(
            sWo + static_cast<int64_t>(warp) * orpw * GD, orpw, GD, lane,
            [&](int v, float4& xa, float4& xb) {
                xa = reinterpret_cast<const float4*>(sAtt)[2 * v];
                xb = reinterpret_cast<const float4*>(sAtt)[2 * v + 1];
            },
            acc);
        const int64_t row0 = static_cast<int64_t>(rank) * orows + warp * orpw;
#pragma unroll
        for (int r = 0; r < kMaxRowsPerWarp; ++r)
            if (r < orpw && lane == r) a.part[static_cast<int64_t>(kvh) * a.H + row0 + r] = acc[r];
        st.at(kODots);
    }

    // ---- 5. the last of the Hkv blocks of this slice adds the heads' partial sums to x ----
    __threadfence();
    __syncthreads();
    if (tid == 0)
        last_arrival =
            atomicInc(&a.count[rank], static_cast<unsigned>(a.Hkv - 1)) == static_cast<unsigned>(a.Hkv - 1);
    __syncthreads();
    st.at(kArrived);
    if (!last_arrival) {
        st.flush();
        return;
    }
    __threadfence();
    for (int t = tid; t < orows; t += kThreads) {
        const int64_t i = static_cast<int64_t>(rank) * orows + t;
        float s = __ldcg(a.x + i) + (a.o_bias ? a.o_bias[i] : 0.0f);
        for (int h = 0; h < a.Hkv; ++h) s += __ldcg(a.part + static_cast<int64_t>(h) * a.H + i);
        a.x[i] = s;
    }
    st.at(kReduced);
    st.flush();
}

// cos | sin of positions [0, n) into out (n, D), exactly as decode_rope_angles computes them in a step
__global__ void rope_table_kernel(const float* inv_freq, int D, int64_t n, float* out) {
    for (int64_t pos = blockIdx.x; pos < n; pos += gridDim.x)
        decode_rope_angles(inv_freq, pos, D, out + pos * D, threadIdx.x, blockDim.x);
}

using KernelFn = void (*)(Args);

KernelFn pick_kernel(int64_t D, int64_t G) {
    const auto by_g = [&](auto dv) -> KernelFn {
        constexpr int DV = decltype(dv)::value;
        if (G <= 2) return attn_block_kernel<DV, 2>;
        if (G <= 4) return attn_block_kernel<DV, 4>;
        return nullptr;
    };
    if (D == 64) return by_g(std::integral_constant<int, 2>{});
    if (D == 128) return by_g(std::integral_constant<int, 4>{});
    return nullptr;
}

}  // namespace

struct AttnBlockDecode::Plan {
    Args args{};
    KernelFn kernel = nullptr;
    int nb = 0, resident = 0;
    size_t smem = 0;
    const float* inv_freq = nullptr;
    int64_t D = 0, rope_rows = 0;
    DeviceBuffer part, count, tsum, rope;
};

bool attn_block_enabled() {
    // read at every decoder's construction (tests switch it within one process); off by default: on an
    // H100 the 0.6B step is slower with it than with the three kernels it replaces (cuda_notes, eighth
    // session)
    return env_switch("LMSCOPE_CUDA_ATTN_BLOCK", false);
}

std::unique_ptr<AttnBlockDecode> AttnBlockDecode::create(const AttnBlockShape& s, const float* inv_freq,
                                                         std::string* why) {
    const auto no = [&](std::string reason) {
        if (why) *why = std::move(reason);
        return std::unique_ptr<AttnBlockDecode>();
    };
    if (s.Hkv <= 0 || s.Hq % s.Hkv) return no("query heads not a multiple of kv heads");
    const int64_t G = s.Hq / s.Hkv;
    const KernelFn kernel = pick_kernel(s.D, G);
    if (!kernel) return no(format_msg("head_dim {} with {} query heads per kv head", s.D, G));
    static const size_t optin = gemv::max_smem_optin();
    // the cluster size: 16 blocks a kv head where the device places such clusters, else 8
    int nb = 0;
    std::string last;
    int resident = 0;
    for (int c = kMaxCluster; c >= 8 && !nb; c /= 2) {
        const int64_t RH = (G + 2) * s.D;
        if (RH % (c * kWarps) || RH / c / kWarps > kMaxRowsPerWarp || s.H % (c * kWarps) ||
            s.H / c / kWarps > kMaxRowsPerWarp || s.H % 32 || (G * s.D) % c) {
            last = format_msg("hidden {} / q|k|v rows {} a kv head not split in {} x {} warps of <= {} rows",
                              s.H, RH, c, kWarps, kMaxRowsPerWarp);
            continue;
        }
        const size_t smem = Smem(static_cast<int>(s.H), static_cast<int>(G), static_cast<int>(s.D), c).bytes;
        if (smem > optin) {
            last = format_msg("{} bytes of shared memory a block, {} available", smem, optin);
            continue;
        }
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem)));
        prefer_shared_carveout(reinterpret_cast<const void*>(kernel));
        if (c > 8 &&
            cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) != cudaSuccess) {
            (void)cudaGetLastError();
            last = "clusters of 16 not allowed";
            continue;
        }
        const LaunchConfig lc(dim3(static_cast<unsigned>(s.Hkv), 1, static_cast<unsigned>(c)), dim3(kThreads),
                              smem, nullptr, false, static_cast<unsigned>(c));
        int clusters = 0;
        if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &lc.cfg) != cudaSuccess || clusters < 1) {
            (void)cudaGetLastError();
            last = format_msg("a cluster of {} blocks with {} bytes of shared memory each does not fit", c,
                              smem);
            continue;
        }
        nb = c;
        resident = clusters;
    }
    if (!nb) return no(last);

    std::unique_ptr<AttnBlockDecode> d(new AttnBlockDecode());
    d->p_ = std::make_unique<Plan>();
    Plan& p = *d->p_;
    p.kernel = kernel;
    p.nb = nb;
    p.resident = resident;
    p.smem = Smem(static_cast<int>(s.H), static_cast<int>(G), static_cast<int>(s.D), nb).bytes;
    p.part.resize(sizeof(float) * static_cast<size_t>(s.Hkv * s.H));
    p.count.resize(sizeof(unsigned) * static_cast<size_t>(nb));
    CUDA_CHECK(cudaMemset(p.count.get(), 0, p.count.size()));  // the kernel leaves them at zero
    Args& a = p.args;
    a.H = static_cast<int>(s.H);
    a.Hq = static_cast<int>(s.Hq);
    a.Hkv = static_cast<int>(s.Hkv);
    a.eps = s.eps;
    a.scale = 1.0f / std::sqrt(static_cast<float>(s.D));
    p.inv_freq = inv_freq;
    p.D = s.D;
    a.part = p.part.get<float>();
    a.count = p.count.get<unsigned>();
    if (env_switch("LMSCOPE_CUDA_ATTN_BLOCK_TIMING", false)) {
        p.tsum.resize(kStamps * sizeof(unsigned long long));
        CUDA_CHECK(cudaMemset(p.tsum.get(), 0, p.tsum.size()));
        a.tsum = p.tsum.get<unsigned long long>();
    }
    return d;
}

AttnBlockDecode::~AttnBlockDecode() {
    if (!p_ || !p_->tsum.get()) return;
    unsigned long long t[kStamps];
    if (cudaMemcpy(t, p_->tsum.get(), sizeof t, cudaMemcpyDeviceToHost) != cudaSuccess || !t[kStart]) return;
    std::fprintf(stderr, "attention block, us after a block's start (mean of %llu blocks):", t[kStart]);
    for (int k = 1; k < kStamps; ++k) {
        const double n =
            k == kReduced ? static_cast<double>(t[kStart]) / p_->args.Hkv : static_cast<double>(t[kStart]);
        std::fprintf(stderr, "%s %s %.2f", k == 1 ? "" : ",", kStampNames[k], t[k] / 1e3 / n);
    }
    std::fprintf(stderr, "\n");
}

std::string AttnBlockDecode::describe() const {
    return format_msg("clusters of {} blocks, {} resident at once, {} bytes of shared memory a block", p_->nb,
                      p_->resident, p_->smem);
}

void AttnBlockDecode::reserve_positions(int64_t n, cudaStream_t stream) {
    Plan& p = *p_;
    if (n <= p.rope_rows) return;
    p.rope.resize(sizeof(float) * static_cast<size_t>(n * p.D));
    rope_table_kernel<<<static_cast<unsigned>(std::min<int64_t>(n, 4096)), 64, 0, stream>>>(
        p.inv_freq, static_cast<int>(p.D), n, p.rope.get<float>());
    CUDA_CHECK_LAUNCH();
    p.rope_rows = n;
}

void AttnBlockDecode::launch(const AttnBlockLayer& L, float* x, const RowPos& rows, const KvView& kv,
                             cudaStream_t stream, bool pdl) const {
    if (kv.dtype != DType::BF16)
        fail_rt("attention block: the KV cache is {}, expected bf16", dtype_name(kv.dtype));
    if (kv.capacity > p_->rope_rows)
        fail_rt("attention block: {} positions in the cache, {} in the RoPE table", kv.capacity,
                p_->rope_rows);
    Args a = p_->args;
    a.rope = p_->rope.get<float>();
    a.wqkv = static_cast<const bf16*>(L.qkv);
    a.wo = static_cast<const bf16*>(L.o);
    a.in_norm = L.in_norm;
    a.q_norm = L.q_norm;
    a.k_norm = L.k_norm;
    a.qkv_bias = L.qkv_bias;
    a.o_bias = L.o_bias;
    a.kc = static_cast<bf16*>(kv.k);
    a.vc = static_cast<bf16*>(kv.v);
    a.capacity = kv.capacity;
    a.rows = rows;
    a.x = x;
    const LaunchConfig lc(dim3(static_cast<unsigned>(a.Hkv), 1, static_cast<unsigned>(p_->nb)),
                          dim3(kThreads), p_->smem, stream, pdl, static_cast<unsigned>(p_->nb));
    CUDA_CHECK(cudaLaunchKernelEx(&lc.cfg, p_->kernel, a));
    CUDA_CHECK_LAUNCH();
}

}  // namespace lmscope::cuda
