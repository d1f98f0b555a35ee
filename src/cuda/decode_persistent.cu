// The batch-1 decode step as one persistent kernel (decode_persistent.h), opt-in
// (LMSCOPE_CUDA_PERSISTENT=1). Why it exists: at batch 1 a 0.6B model's step was ~920 us against
// ~400 us of weight bytes, and the knockouts of cuda_notes (sixth session) put much of the difference
// in the 5 kernel boundaries per layer (~4 us each). Here one block per SM stays resident for the
// whole step and a phase ends at a grid barrier (an atomic arrival on a 64-bit count, a spin on it:
// ~0.7-1 us from the last arrival to the first start of the next phase).
//
// Per layer (batch 1, BF16 weights and cache), 5 phases:
//   A  q|k|v = W_qkv RMSNorm(x)                     a contiguous run of rows per block
//   B  attention: (kv head, split) per block; q / k norm, RoPE and the cache write as in the cluster
//      kernel (attention_decode.cuh); each block's softmax state (m, l, o) to a scratch
//   C  o-proj by kv head: the blocks of head h merge its splits' states, then multiply their rows of
//      W_o's column slice of that head; per-head partial sums of the o output (no atomics)
//   D  x' = x (+ o bias) + the heads' partials in head order (every block, the same sums), written by
//      block 0; h = SiLU(gate) * up with gate and up rows i in the same warp (SwiGLU in the epilogue)
//   E  x = x' + W_down h
// A GEMV phase's weights come into shared memory by TMA bulk copies (cp.async.bulk, completing on an
// mbarrier) issued one phase ahead into the other of two buffers, after the issuing phase's own L2
// reads (issued before them, the stream queued in front of those reads). Data written inside the
// kernel is read with ld.cg (L2): an SM's L1 is not coherent with the others'.
//
// Where it stands (cuda_notes, seventh session): correct (decode logits within 5e-6 of the
// kernel-per-op step), but slower on an H100: 0.6B b=1 965 against 1072 tok/s at a 512-token context.
// Per layer ~28 us: 5 barriers of 0.7-0.9 us, and per phase one or two L2 round trips (the input's
// staging, the split states) plus 1-2 us of dot products that start only once the barrier is past;
// LMSCOPE_CUDA_PERSISTENT_TIMING=1 prints where each phase's time goes.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/decode_persistent.h"
#include "cuda/tma.cuh"
#include "ops/cuda/attention_decode.cuh"
#include "ops/cuda/gemv.cuh"

namespace lmscope::cuda {

namespace {

using bf16 = __nv_bfloat16;
constexpr int kWarps = 16;
constexpr int kThreads = kWarps * 32;
constexpr int kSlots = 4;    // dot products per warp and phase (items x rows per item)
constexpr int kStamps = 26;  // LMSCOPE_CUDA_PERSISTENT_TIMING: time stamps per layer
constexpr float kLog2e = 1.4426950408889634f;

struct Args {
    const PersistentLayer* layers;
    int n_layers;
    int H, I, Hq, Hkv, G, D;
    float eps, scale;
    const float* inv_freq;
    bf16 *kc, *vc;
    int64_t layer_elems;
    const int32_t* pos;
    float *x, *xb, *qkv, *part, *oparts, *h;
    unsigned long long* bar;
    int nsplit;           // attention blocks per kv head
    int nbh;              // o-proj blocks per kv head
    int64_t wbuf_elems;   // BF16 elements of weight buffer 0 (buffer 1 follows)
    const bf16* o_heads;  // every layer's W_o, head-major: [layer][Hkv][H][G D]
    // shared memory of the phases (after the angles and the q/k norm weights, 3 D); the weight buffers follow
    int phase_floats;
    unsigned long long* tstamp;  // LMSCOPE_CUDA_PERSISTENT_TIMING: [layer][kStamps][block] globaltimer
};

__device__ __forceinline__ void stamp(const Args& a, int l, int k) {
    if (!a.tstamp || threadIdx.x != 0) return;
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    a.tstamp[(static_cast<int64_t>(l) * kStamps + k) * gridDim.x + blockIdx.x] = t;
}

// ---- the grid barrier ----
/**
 * Every block of the grid (all resident: one per SM) adds 1 to a 64-bit count that only grows (graph
 * replays go on from where the last step left it); the barrier it arrived at is over when the count
 * reaches the next multiple of the grid size. One atomic round trip for the last block, one polling
 * read for the others: no reset, no epoch word (an epoch version cost ~1.8 us from the last arrival
 * to the first start of the next phase).
 */
__device__ __forceinline__ void grid_sync(unsigned long long* bar) {
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned long long old;
        asm volatile("atom.add.release.gpu.global.u64 %0, [%1], 1;" : "=l"(old) : "l"(bar) : "memory");
        const unsigned long long target = (old / gridDim.x + 1) * gridDim.x;
        // a block that never arrives (not resident) would hang the step: fail it instead, after far
        // longer than any step takes
        for (unsigned spins = 0;; ++spins) {
            unsigned long long now;
            asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(now) : "l"(bar) : "memory");
            if (now >= target) break;
            if (spins > (1u << 28)) __trap();
        }
    }
    __syncthreads();
}

/**
 * n4 float4 written earlier in this kernel by other blocks, read through L2 (ld.cg; at(i) their
 * addresses) and handed to put(i, value), 4 loads in flight per thread before the first is used.
 */
template <class At, class Put>
__device__ __forceinline__ void copy_cg(int n4, At&& at, Put&& put) {
    for (int base = threadIdx.x; base < n4; base += 4 * kThreads) {
        float4 v[4];
#pragma unroll
        for (int k = 0; k < 4; ++k)
            if (base + k * kThreads < n4) v[k] = __ldcg(at(base + k * kThreads));
#pragma unroll
        for (int k = 0; k < 4; ++k)
            if (base + k * kThreads < n4) put(base + k * kThreads, v[k]);
    }
}

// ---- GEMV phases ----
/**
 * One GEMV phase as this block sees it: items [ib, ib + n) of R rows each (item t's rows t + r row_off),
 * each row's segment of columns [col0, col0 + in) of a BF16 matrix with leading dimension ld. The
 * block's segments lie in its weight buffer in shared memory as (r, t) rows of `in` elements, brought by
 * the TMA (cp.async.bulk) one phase ahead; ks warps share an item (k parts), and a warp takes items
 * w / ks, w / ks + kWarps / ks, ...
 */
struct Phase {
    const bf16* w = nullptr;
    int64_t ld = 0, col0 = 0;
    int in = 0, R = 1, row_off = 0, ib = 0, n = 0, ks = 1;
    // 16-byte vectors per lane and row part
    __device__ __forceinline__ int c() const { return in / 256 / ks; }
    __device__ __forceinline__ uint32_t bytes() const { return static_cast<uint32_t>(R) * n * in * 2; }
};

/**
 * Warps per item for a block holding n items of `in` columns: the most (a power of two) that still fit
 * the block's warps and divide the row in 256-column parts. Shared by the kernel (make_phase) and the
 * host's sizing (phase_cost).
 */
__host__ __device__ __forceinline__ int warps_per_item(int64_t n, int64_t in) {
    int ks = 1;
    while (ks < kWarps && n * ks * 2 <= kWarps && in % (256 * ks * 2) == 0) ks *= 2;
    return ks;
}

/** Items [0, items) split in contiguous runs of ceil(items / blocks) per block. */
__device__ __forceinline__ Phase make_phase(const void* w, int64_t ld, int64_t col0, int in, int items, int R,
                                            int row_off, int block, int blocks) {
    Phase p;
    p.w = static_cast<const bf16*>(w);
    p.ld = ld;
    p.col0 = col0;
    p.in = in;
    p.R = R;
    p.row_off = row_off;
    const int per_block = (items + blocks - 1) / blocks;
    p.ib = block * per_block;
    p.n = max(0, min(per_block, items - p.ib));
    p.ks = warps_per_item(p.n, in);
    return p;
}

/**
 * Warp 0 asks the TMA for the block's segments of phase p into buf, completing on mbarrier mbar (lane 0
 * announces the bytes first). Whole rows of a run are one copy per r; column slices (the o
 * projection's head) one per row, spread over the lanes (64 copies from one thread took ~3 us, on the
 * critical path of the phase they were issued in).
 */
__device__ __forceinline__ void issue(const Phase& p, bf16* buf, uint64_t* mbar) {
    if (threadIdx.x >= 32) return;
    const int lane = threadIdx.x;
    if (lane == 0) tma::expect_bytes(mbar, p.bytes());
    __syncwarp();
    // a contiguous run of whole rows is one copy per r (4 KB pieces spread over the lanes were slower:
    // 757 against 807 tok/s); column slices (the o projection's head) one copy per row
    const bool whole = p.col0 == 0 && p.ld == p.in;
    const int copies = whole ? 1 : p.n;
    const uint32_t bytes = static_cast<uint32_t>(whole ? p.n * p.in * 2 : p.in * 2);
    for (int q = lane; q < p.R * copies && p.n > 0; q += 32) {
        const int r = q / copies, t = q % copies;
        const bf16* src =
            p.w + (static_cast<int64_t>(p.ib) + t + static_cast<int64_t>(r) * p.row_off) * p.ld + p.col0;
        bf16* dst = buf + (static_cast<int64_t>(r) * p.n + t) * p.in;
        tma::copy(dst, src, bytes, mbar);
    }
}

/**
 * The warp's dot products over the block's weights in buf: acc[j R + r] for its item j (local t =
 * warp / ks + j kWarps / ks) and row r, summed over the warp and over the ks parts (in part order, through
 * shared memory: the same sums whatever the timing); complete in part 0's warps. Every warp of the
 * block calls it (block barriers when ks > 1). x is read once per 16-byte column step for all of the
 * warp's rows, whose FMA chains (two per row) then interleave: one row at a time, each a dependent chain
 * with its own x reads and swizzle arithmetic, ran at 0.23 instructions per cycle and took 5.6 us for
 * the 0.6B gate|up phase.
 */
__device__ __forceinline__ void phase_dots(const Phase& p, const bf16* buf, const gemv::Xs& X, int lane,
                                           float (&acc)[kSlots], float (*spart)[kSlots]) {
    const int warp = threadIdx.x >> 5, part = warp % p.ks, c = p.c();
    const int vbase = part * (p.in / 8 / p.ks) + lane;
    const uint4* rowp[kSlots];
    bool live[kSlots];
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
        const int j = s / p.R, r = s % p.R, t = warp / p.ks + j * (kWarps / p.ks);
        live[s] = t < p.n;
        rowp[s] = reinterpret_cast<const uint4*>(buf + (static_cast<int64_t>(r) * p.n + t) * p.in) + vbase;
    }
    float a0[kSlots], a1[kSlots];
#pragma unroll
    for (int s = 0; s < kSlots; ++s) a0[s] = a1[s] = 0.0f;
#pragma unroll 2
    for (int u = 0; u < c; ++u) {
        const int v = vbase + 32 * u;
        const float4 xa = X.at4(0, 2 * v), xb = X.at4(0, 2 * v + 1);
#pragma unroll
        for (int s = 0; s < kSlots; ++s) {
            if (!live[s]) continue;
            gemv::fma_bf16x8(rowp[s][32 * u], xa, xb, a0[s], a1[s]);
        }
    }
#pragma unroll
    for (int s = 0; s < kSlots; ++s) acc[s] = warp_sum(a0[s] + a1[s]);
    if (p.ks > 1) {
        if (lane == 0)
#pragma unroll
            for (int s = 0; s < kSlots; ++s) spart[warp][s] = acc[s];
        __syncthreads();
        if (part == 0)
            for (int q = 1; q < p.ks; ++q)
#pragma unroll
                for (int s = 0; s < kSlots; ++s) acc[s] += spart[warp + q][s];
        __syncthreads();
    }
}

/**
 * X = RMSNorm(x + bias + the nextra partial sums extra[e H ..]) * nw into shared memory (every block the same
 * values, added in the same order); also written to xout when given. H % 4 == 0, H <= 4 kThreads.
 * All of a thread's loads (x, the partials, the norm weights) go out before the first is used: each
 * dependent L2 round trip here is on every phase's critical path.
 */
__device__ __forceinline__ void stage_norm(const float* x, const float* extra, int nextra, const float* bias,
                                           int H, const float* nw, float eps, const gemv::Xs& X,
                                           float* xout) {
    constexpr int kC = 1;  // float4 per thread (H <= 4 kThreads)
    constexpr int kE = 8;  // partials loaded at once
    float4 v[kC], w[kC];
    float ss = 0.0f;
#pragma unroll
    for (int c = 0; c < kC; ++c) {
        const int i4 = threadIdx.x + c * kThreads;
        if (i4 >= H / 4) continue;
        v[c] = __ldcg(reinterpret_cast<const float4*>(x) + i4);
        w[c] = reinterpret_cast<const float4*>(nw)[i4];
        if (bias) {
            const float4 b = reinterpret_cast<const float4*>(bias)[i4];
            v[c] = make_float4(v[c].x + b.x, v[c].y + b.y, v[c].z + b.z, v[c].w + b.w);
        }
    }
    for (int e0 = 0; e0 < nextra; e0 += kE) {
        float4 p[kC][kE];
#pragma unroll
        for (int c = 0; c < kC; ++c)
#pragma unroll
            for (int e = 0; e < kE; ++e) {
                const int i4 = threadIdx.x + c * kThreads;
                if (i4 < H / 4 && e0 + e < nextra)
                    p[c][e] = __ldcg(
                        reinterpret_cast<const float4*>(extra + static_cast<int64_t>(e0 + e) * H) + i4);
            }
#pragma unroll
        for (int c = 0; c < kC; ++c)
#pragma unroll
            for (int e = 0; e < kE; ++e)
                if (threadIdx.x + c * kThreads < H / 4 && e0 + e < nextra)
                    v[c] = make_float4(v[c].x + p[c][e].x, v[c].y + p[c][e].y, v[c].z + p[c][e].z,
                                       v[c].w + p[c][e].w);
    }
#pragma unroll
    for (int c = 0; c < kC; ++c) {
        const int i4 = threadIdx.x + c * kThreads;
        if (i4 >= H / 4) continue;
        if (xout) reinterpret_cast<float4*>(xout)[i4] = v[c];
        ss += v[c].x * v[c].x + v[c].y * v[c].y + v[c].z * v[c].z + v[c].w * v[c].w;
    }
    const float inv = rsqrtf(block_sum(ss) / static_cast<float>(H) + eps);
#pragma unroll
    for (int c = 0; c < kC; ++c) {
        const int i4 = threadIdx.x + c * kThreads;
        if (i4 < H / 4)
            X.put4(0, i4,
                   make_float4(v[c].x * inv * w[c].x, v[c].y * inv * w[c].y, v[c].z * inv * w[c].z,
                               v[c].w * inv * w[c].w));
    }
    __syncthreads();
}

// ---- attention ----
template <int DV>
using KvLane = LaneRow<bf16, DV>;

/** Shared memory (floats) of the attention phase; the GEMV phases reuse the same space for x. */
struct AttnSmem {
    size_t q, head, newkv, m, l, o, raw, end;
    __host__ __device__ AttnSmem(int D, int G) {
        q = 0;
        head = q + static_cast<size_t>(G) * D;
        newkv = head + static_cast<size_t>(kWarps) * D;
        m = newkv + D;  // D floats hold the new K and V rows in BF16
        l = m + static_cast<size_t>(kWarps) * G;
        o = l + static_cast<size_t>(kWarps) * G;
        raw = o + static_cast<size_t>(kWarps) * G * D;  // the raw heads (G + 2) D
        end = raw + static_cast<size_t>(G + 2) * D;
    }
};

/** Floats of one split's softmax state: m and l of each q head (padded to 16 bytes), then o (G D). */
__host__ __device__ __forceinline__ int state_stride(int G, int D) { return (2 * G + 3) / 4 * 4 + G * D; }
__host__ __device__ __forceinline__ int state_o(int G) { return (2 * G + 3) / 4 * 4; }

struct KeyRange {
    int64_t start = 0, end = 0;
    bool active = false;
};
__device__ __forceinline__ KeyRange key_range(const Args& a, int64_t pos) {
    KeyRange k;
    const int b = blockIdx.x;
    if (b >= a.Hkv * a.nsplit) return k;
    const int64_t S = pos + 1, chunk = (S + a.nsplit - 1) / a.nsplit, sp = b / a.Hkv;
    k.start = sp * chunk;
    k.end = min(S, k.start + chunk);
    k.active = true;
    return k;
}

// Keys a warp takes per step of the attention (the next step's loads in flight). 4, as the cluster kernel
// takes for 2 heads of 128, made the whole step slower here (755 against 974 tok/s): the K / V registers
// are held across the grid barrier, and every phase's code got slower with them.
constexpr int kKeysPerStep = 2;

// the first U keys of this warp (rows of earlier steps; the row of pos is replaced in attn_phase)
template <int DV, int U>
__device__ __forceinline__ void preload_kv(const Args& a, int l, const KeyRange& kr, KvLane<DV> (&k)[U],
                                           KvLane<DV> (&v)[U]) {
    if (!kr.active) return;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, D = 32 * DV;
    const int64_t kvd = static_cast<int64_t>(a.Hkv) * D, hh = blockIdx.x % a.Hkv;
    const bf16* kb = a.kc + l * a.layer_elems + hh * D + lane * DV;
    const bf16* vb = a.vc + l * a.layer_elems + hh * D + lane * DV;
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const int64_t j = kr.start + warp + static_cast<int64_t>(kWarps) * u;
        if (j < kr.end) {
            k[u] = *reinterpret_cast<const KvLane<DV>*>(kb + j * kvd);
            v[u] = *reinterpret_cast<const KvLane<DV>*>(vb + j * kvd);
        }
    }
}

/** Phase B for block (kv head b % Hkv, split b / Hkv): its keys' softmax state into a.part. */
template <int DV, int MAXG, int U>
__device__ void attn_phase(const Args& a, int l, int64_t pos, const KeyRange& kr, const float* sCs,
                           const float* sNorm, float* sm, KvLane<DV> (&k)[U], KvLane<DV> (&v)[U],
                           const Phase& next, bf16* next_buf, uint64_t* next_bar) {
    constexpr int D = 32 * DV;
    if (!kr.active) {
        issue(next, next_buf, next_bar);
        return;
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, G = a.G;  // (a.tstamp: stamps 10-12)
    const int hh = blockIdx.x % a.Hkv, sp = blockIdx.x / a.Hkv;
    const AttnSmem S(D, G);
    float* sQ = sm + S.q;
    bf16* sNewK = reinterpret_cast<bf16*>(sm + S.newkv);
    bf16* sNewV = sNewK + D;
    const int64_t kvd = static_cast<int64_t>(a.Hkv) * D;
    bf16* kc = a.kc + l * a.layer_elems;
    bf16* vc = a.vc + l * a.layer_elems;
    const PersistentLayer& L = a.layers[l];
    const bool has_new = kr.start <= pos && pos < kr.end;
    // this kv head's raw q heads, k and v ((G + 2) D) from phase A's output, all loads at once
    float* sRaw = sm + S.raw;
    const int GD4 = G * D / 4, D4 = D / 4;
    const float4* q4 = reinterpret_cast<const float4*>(a.qkv) + static_cast<int64_t>(hh) * GD4;
    const float4* k4 = reinterpret_cast<const float4*>(a.qkv) + static_cast<int64_t>(a.Hq + hh) * D4;
    const float4* v4 = reinterpret_cast<const float4*>(a.qkv) + static_cast<int64_t>(a.Hq + a.Hkv + hh) * D4;
    copy_cg((G + 2) * D4,
            [&](int i) { return i < GD4        ? q4 + i
                                : i < GD4 + D4 ? k4 + (i - GD4)
                                               : v4 + (i - GD4 - D4); },
            [&](int i, float4 x) { reinterpret_cast<float4*>(sRaw)[i] = x; });
    __syncthreads();
    stamp(a, l, 10);
    // the q / k norm weights were copied to shared memory (sNorm) before the barrier (preload_kv)
    DecodeQkv fq{a.qkv,      L.qkv_bias, L.q_norm ? sNorm : nullptr, L.k_norm ? sNorm + D : nullptr, a.eps,
                 a.inv_freq, sRaw};
    const float qscale = a.scale * kLog2e;
    for (int it = warp; it < G + (has_new ? 2 : 0); it += kWarps)
        decode_head(fq, 0, a.Hq, a.Hkv, hh, G, it, D, sCs, sm + S.head + warp * D, qscale, sQ + it * D, kc,
                    vc, pos * kvd + hh * D, sNewK, sNewV, lane);
    __syncthreads();
    stamp(a, l, 11);
    stamp(a, l, 17);

    WarpSoftmax<DV, MAXG> ws;
    ws.init(sQ, G, D, lane);
    const bf16* kb = kc + hh * D + lane * DV;
    const bf16* vb = vc + hh * D + lane * DV;
    for (int64_t first = kr.start + warp; first < kr.end; first += static_cast<int64_t>(kWarps) * U) {
        if (has_new)
#pragma unroll
            for (int u = 0; u < U; ++u)
                if (first + static_cast<int64_t>(kWarps) * u == pos) {
                    k[u] = *reinterpret_cast<const KvLane<DV>*>(sNewK + lane * DV);
                    v[u] = *reinterpret_cast<const KvLane<DV>*>(sNewV + lane * DV);
                }
        KvLane<DV> kn[U], vn[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int64_t j = first + static_cast<int64_t>(kWarps) * (U + u);
            if (j < kr.end) {
                kn[u] = *reinterpret_cast<const KvLane<DV>*>(kb + j * kvd);
                vn[u] = *reinterpret_cast<const KvLane<DV>*>(vb + j * kvd);
            }
        }
        ws.template add<bf16, U>(k, v,
                                 [&](int u) { return first + static_cast<int64_t>(kWarps) * u < kr.end; });
#pragma unroll
        for (int u = 0; u < U; ++u) {
            k[u] = kn[u];
            v[u] = vn[u];
        }
    }
    // the next weights (gate|up) once the keys are read: issued before the key loop, their stream
    // slowed it from 2.5 to 5.5 us
    issue(next, next_buf, next_bar);
    stamp(a, l, 12);
    // the block's warps, then the block's state (m, l of each q head, then o) to the scratch
    float* sM = sm + S.m;
    float* sL = sm + S.l;
    float* sO = sm + S.o;
    ws.store(sM, sL, sO, G, D, warp, lane);
    __syncthreads();
    float* dst = a.part + (static_cast<int64_t>(hh) * a.nsplit + sp) * state_stride(G, D);
    for (int i = threadIdx.x; i < G * D; i += kThreads) {
        const int g = i / D;
        float M, Ls, Os;
        combine_warps<kWarps>(i, G, D, sM, sL, sO, M, Ls, Os);
        dst[state_o(G) + i] = Os;
        if (i % D == 0) {
            dst[g] = M;
            dst[G + g] = Ls;
        }
    }
}

/**
 * Phase C's input: head hh's attention output (G D) from its splits' states, into X. The states are
 * first copied to shared memory behind X (all loads in flight at once).
 */
__device__ __forceinline__ void merge_head(const Args& a, int hh, const gemv::Xs& X, float* scratch) {
    const int G = a.G, D = a.D, PS = state_stride(G, D), O = state_o(G);
    const float4* src = reinterpret_cast<const float4*>(a.part + static_cast<int64_t>(hh) * a.nsplit * PS);
    copy_cg(
        a.nsplit * PS / 4, [&](int i) { return src + i; },
        [&](int i, float4 v) { reinterpret_cast<float4*>(scratch)[i] = v; });
    __syncthreads();
    // two threads per output (neighbouring lanes), each over half of the splits, then combined: the
    // merge's serial chain over the splits is halved, and G D = 256 outputs use all 512 threads
    const int half = (a.nsplit + 1) / 2;
    for (int i2 = threadIdx.x; i2 < 2 * G * D; i2 += kThreads) {
        const int i = i2 >> 1, g = i / D, s0 = (i2 & 1) * half, s1 = min(a.nsplit, s0 + half);
        float M = -INFINITY;
        for (int s = s0; s < s1; ++s) M = fmaxf(M, scratch[s * PS + g]);
        M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, 1));
        float Ls = 0.0f, Os = 0.0f;
        for (int s = s0; s < s1; ++s) {
            const float ms = scratch[s * PS + g];
            const float wt = ms == -INFINITY ? 0.0f : exp2f(ms - M);
            Ls += wt * scratch[s * PS + G + g];
            Os += wt * scratch[s * PS + O + i];
        }
        Ls += __shfl_xor_sync(0xffffffffu, Ls, 1);
        Os += __shfl_xor_sync(0xffffffffu, Os, 1);
        if ((i2 & 1) == 0) X.put(0, i, Os / Ls);
    }
    __syncthreads();
}

// the GEMV phases of layer l for this block
__device__ __forceinline__ Phase ph_qkv(const Args& a, int l) {
    return make_phase(a.layers[l].qkv, a.H, 0, a.H, (a.Hq + 2 * a.Hkv) * a.D, 1, 0, blockIdx.x, gridDim.x);
}
// rows of W_o's columns of this block's kv head, from the head-major copy (Plan::o_heads: [Hkv][H][G D],
// so that a block's rows are one contiguous run: one TMA copy instead of one per row, which took 2.6 us
// to issue for 64 rows, the copies of a warp being serialised through the uniform datapath)
__device__ __forceinline__ Phase ph_o(const Args& a, int l) {
    const int b = blockIdx.x, hh = b % a.Hkv, gd = a.G * a.D;
    const bf16* w = a.o_heads + (static_cast<int64_t>(l) * a.Hkv + hh) * a.H * gd;
    return make_phase(w, gd, 0, gd, a.H, 1, 0, b < a.Hkv * a.nbh ? b / a.Hkv : a.nbh, a.nbh);
}
__device__ __forceinline__ Phase ph_gate_up(const Args& a, int l) {
    return make_phase(a.layers[l].gate_up, a.H, 0, a.H, a.I, 2, a.I, blockIdx.x, gridDim.x);
}
__device__ __forceinline__ Phase ph_down(const Args& a, int l) {
    return make_phase(a.layers[l].down, a.I, 0, a.I, a.H, 1, 0, blockIdx.x, gridDim.x);
}

/** fn(j, item, acc[j R], acc[j R + 1]) for each item j of this warp's whose sums it holds (part 0, lane 0).
 */
template <class Fn>
__device__ __forceinline__ void each_item(const Phase& p, const float (&acc)[kSlots], Fn&& fn) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane != 0 || warp % p.ks != 0) return;
#pragma unroll
    for (int j = 0; j < kSlots; ++j) {
        const int t = warp / p.ks + j * (kWarps / p.ks);
        if (j * p.R >= kSlots || t >= p.n) break;
        fn(j, p.ib + t, acc[j * p.R], p.R > 1 && j * p.R + 1 < kSlots ? acc[j * p.R + 1] : 0.0f);
    }
}

template <int DV, int MAXG>
__global__ void __launch_bounds__(kThreads, 1) decode_persistent_kernel(Args a) {
    constexpr int D = 32 * DV;
    extern __shared__ __align__(128) float psm[];
    __shared__ float spart[kWarps][kSlots];
    __shared__ __align__(8) uint64_t mbar[2];
    float* sCs = psm;         // cos | sin of the position, for every layer
    float* sNorm = psm + D;   // this layer's q_norm | k_norm weights (2 D), for the attention phase
    float* sm = psm + 3 * D;  // the phases' space
    // the weight buffers: 0 takes q|k|v and gate|up, 1 the o and down projections, each phase's
    // weights asked for one phase before they are used
    bf16* wb0 = reinterpret_cast<bf16*>(psm + 3 * D + a.phase_floats);
    bf16* wb1 = wb0 + a.wbuf_elems;
    const int lane = threadIdx.x & 31;
    uint32_t par0 = 0, par1 = 0;
    if (threadIdx.x == 0) {
        tma::init(&mbar[0], 1);
        tma::init(&mbar[1], 1);
        tma::fence_init();
    }
    __syncthreads();
    asm volatile("griddepcontrol.launch_dependents;");
    float acc[kSlots];
    constexpr int U = kKeysPerStep;
    KvLane<DV> kr[U], vr[U];
    // layer 0's weights do not depend on the kernel before this one (the embedding)
    issue(ph_qkv(a, 0), wb0, &mbar[0]);
    asm volatile("griddepcontrol.wait;" ::: "memory");
    const int64_t pos = a.pos[0];
    decode_rope_angles(a.inv_freq, pos, D, sCs, threadIdx.x, kThreads);
    const KeyRange keys = key_range(a, pos);
    for (int l = 0; l < a.n_layers; ++l) {
        const PersistentLayer& L = a.layers[l];
        // A: q|k|v (its weights and the o projection's are on their way)
        stamp(a, l, 0);
        {
            const Phase p = ph_qkv(a, l);
            const gemv::Xs X(sm, a.H);
            stage_norm(a.x, nullptr, 0, nullptr, a.H, L.in_norm, a.eps, X, nullptr);
            // what the attention phase reads that this one does not write, now: its first K / V rows
            // (registers) and the q / k norm weights (shared memory)
            preload_kv<DV, U>(a, l, keys, kr, vr);
            const float* nw = threadIdx.x < D ? L.q_norm : L.k_norm;
            const float nwv =
                threadIdx.x < 2 * D && nw ? nw[threadIdx.x % D] : 0.0f;  // stored after the dots
            stamp(a, l, 13);
            // the next weights go out once this phase's own reads are done: issued at the phase's
            // start, their stream queued in front of those reads (an L2 round trip took 2.7 us)
            issue(ph_o(a, l), wb1, &mbar[1]);
            stamp(a, l, 14);
            tma::wait(&mbar[0], par0);
            stamp(a, l, 15);
            phase_dots(p, wb0, X, lane, acc, spart);
            stamp(a, l, 16);
            each_item(p, acc, [&](int, int i, float v, float) { a.qkv[i] = v; });
            if (threadIdx.x < 2 * D) sNorm[threadIdx.x] = nwv;
        }
        stamp(a, l, 1);
        grid_sync(a.bar);
        // B: attention; gate|up's weights start
        stamp(a, l, 2);
        attn_phase<DV, MAXG, U>(a, l, pos, keys, sCs, sNorm, sm, kr, vr, ph_gate_up(a, l), wb0, &mbar[0]);
        stamp(a, l, 3);
        grid_sync(a.bar);
        // C: o-proj of this block's kv head
        stamp(a, l, 4);
        {
            const Phase p = ph_o(a, l);
            const gemv::Xs X(sm, a.G * a.D);
            if (p.n > 0) merge_head(a, blockIdx.x % a.Hkv, X, sm + a.G * a.D);
            stamp(a, l, 18);
            tma::wait(&mbar[1], par1);
            stamp(a, l, 19);
            if (p.n > 0) {
                phase_dots(p, wb1, X, lane, acc, spart);
                each_item(p, acc, [&](int, int i, float v, float) {
                    a.oparts[static_cast<int64_t>(blockIdx.x % a.Hkv) * a.H + i] = v;
                });
            }
        }
        stamp(a, l, 5);
        grid_sync(a.bar);
        // D: x' = x + o, h = SiLU(gate) * up; down's weights start
        stamp(a, l, 6);
        {
            const Phase p = ph_gate_up(a, l);
            const gemv::Xs X(sm, a.H);
            stage_norm(a.x, a.oparts, a.Hkv, L.o_bias, a.H, L.post_norm, a.eps, X,
                       blockIdx.x == 0 ? a.xb : nullptr);
            stamp(a, l, 20);
            issue(ph_down(a, l), wb1, &mbar[1]);
            stamp(a, l, 21);
            tma::wait(&mbar[0], par0);
            stamp(a, l, 22);
            phase_dots(p, wb0, X, lane, acc, spart);
            each_item(p, acc, [&](int, int i, float gt, float up) { a.h[i] = gt / (1.0f + expf(-gt)) * up; });
        }
        stamp(a, l, 7);
        grid_sync(a.bar);
        // E: x = x' + W_down h; the next layer's q|k|v weights start
        stamp(a, l, 8);
        {
            const Phase p = ph_down(a, l);
            const gemv::Xs X(sm, a.I);
            copy_cg(
                a.I / 4, [&](int i) { return reinterpret_cast<const float4*>(a.h) + i; },
                [&](int i, float4 v) { X.put4(0, i, v); });
            __syncthreads();
            stamp(a, l, 23);
            if (l + 1 < a.n_layers) issue(ph_qkv(a, l + 1), wb0, &mbar[0]);
            stamp(a, l, 24);
            // the residual rows this warp's sums go to (one per item), loaded before the dots
            float res[kSlots];
            each_item(p, acc, [&](int j, int i, float, float) {
#pragma unroll
                for (int k = 0; k < kSlots; ++k)
                    if (k == j) res[k] = __ldcg(a.xb + i);
            });
            tma::wait(&mbar[1], par1);
            stamp(a, l, 25);
            phase_dots(p, wb1, X, lane, acc, spart);
            each_item(p, acc, [&](int j, int i, float v, float) {
#pragma unroll
                for (int k = 0; k < kSlots; ++k)
                    if (k == j) a.x[i] = res[k] + v;
            });
        }
        stamp(a, l, 9);
        if (l + 1 < a.n_layers) grid_sync(a.bar);
    }
}

using KernelFn = void (*)(Args);

KernelFn pick_kernel(int64_t D, int64_t G) {
    const auto by_g = [&](auto dv) -> KernelFn {
        constexpr int DV = decltype(dv)::value;
        if (G <= 2) return decode_persistent_kernel<DV, 2>;
        if (G <= 4) return decode_persistent_kernel<DV, 4>;
        if (G <= 8) return decode_persistent_kernel<DV, 8>;
        return nullptr;
    };
    if (D == 64) return by_g(std::integral_constant<int, 2>{});
    if (D == 128) return by_g(std::integral_constant<int, 4>{});
    return nullptr;
}

// a GEMV phase's largest block share on the host (make_phase's split): bytes, and dot products per warp
struct PhaseCost {
    int64_t bytes = 0, slots = 0;
};
PhaseCost phase_cost(int64_t in, int64_t items, int64_t R, int64_t blocks) {
    const int64_t n = (items + blocks - 1) / blocks, ks = warps_per_item(n, in);
    return {R * n * in * 2, (n * ks + kWarps - 1) / kWarps * R};
}

}  // namespace

struct PersistentDecode::Plan {
    Args args{};
    KernelFn kernel = nullptr;
    int blocks = 0;
    size_t smem = 0;
    DeviceBuffer layers, part, oparts, h, qkv, bar, tstamp, o_heads;
};

bool persistent_decode_enabled() {
    // read at every decoder's construction (tests switch it within one process); off by default: on an
    // H100 the 0.6B step is slower than the kernel-per-op one (bench/cuda_notes.md, seventh session)
    return env_switch("LMSCOPE_CUDA_PERSISTENT", false);
}

std::unique_ptr<PersistentDecode> PersistentDecode::create(const PersistentShape& s,
                                                           const std::vector<PersistentLayer>& layers,
                                                           const float* inv_freq, std::string* why) {
    const auto no = [&](std::string reason) {
        if (why) *why = std::move(reason);
        return std::unique_ptr<PersistentDecode>();
    };
    if (s.Hkv <= 0 || s.Hq % s.Hkv) return no("query heads not a multiple of kv heads");
    const int64_t G = s.Hq / s.Hkv;
    const KernelFn kernel = pick_kernel(s.D, G);
    if (!kernel) return no(format_msg("head_dim {} with {} query heads per kv head", s.D, G));
    if (s.H % 256 || s.I % 256 || (G * s.D) % 256)
        return no("hidden / intermediate / heads x head_dim not multiples of 256");
    if (layers.empty()) return no("no layers");
    if (s.H > 4 * kThreads) return no("hidden size above 2048");
    const int blocks = sm_count();  // one per SM, all resident (the grid barrier needs that)
    // attention blocks per kv head (at most 16, as the cluster kernel: more splits only add merge work);
    // o-projection blocks per kv head: all of them
    const int nbh = static_cast<int>(blocks / s.Hkv), nsplit = std::min(nbh, 16);
    if (nsplit < 1) return no("more kv heads than SMs");
    const AttnSmem as(static_cast<int>(s.D), static_cast<int>(G));
    const size_t merge = static_cast<size_t>(
        G * s.D +
        nsplit * state_stride(static_cast<int>(G), static_cast<int>(s.D)));  // phase C: X and the states
    const size_t phase_floats =
        (std::max({as.end, static_cast<size_t>(std::max(s.H, s.I)), merge}) + 3) / 4 * 4;
    // the weight buffers: q|k|v or gate|up in 0, o or down in 1 (the largest block share of each)
    const int64_t QKV = (s.Hq + 2 * s.Hkv) * s.D;
    const PhaseCost c_qkv = phase_cost(s.H, QKV, 1, blocks), c_gu = phase_cost(s.H, s.I, 2, blocks),
                    c_o = phase_cost(G * s.D, s.H, 1, nbh), c_down = phase_cost(s.I, s.H, 1, blocks);
    for (const PhaseCost& c : {c_qkv, c_gu, c_o, c_down})
        if (c.slots > kSlots) return no("more than 4 dot products a warp in a phase");
    const int64_t wb0 = std::max(c_qkv.bytes, c_gu.bytes), wb1 = std::max(c_o.bytes, c_down.bytes);
    const size_t smem = sizeof(float) * (3 * s.D + phase_floats) + static_cast<size_t>(wb0 + wb1);
    static const size_t optin = gemv::max_smem_optin();
    if (smem > optin) return no(format_msg("{} bytes of shared memory a block, {} available", smem, optin));
    CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    int occ = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, kernel, kThreads, smem));
    if (occ < 1) return no("a block does not fit on an SM");

    std::unique_ptr<PersistentDecode> d(new PersistentDecode());
    d->p_ = std::make_unique<Plan>();
    Plan& p = *d->p_;
    p.kernel = kernel;
    p.blocks = blocks;
    p.smem = smem;
    p.layers.resize(layers.size() * sizeof(PersistentLayer));
    p.layers.upload(layers.data(), layers.size() * sizeof(PersistentLayer));
    // W_o (H, Hq D) re-laid per kv head: [Hkv][H][G D] (its G D columns of every row, contiguous)
    const int64_t gd = G * s.D, o_elems = s.H * s.Hq * s.D;
    p.o_heads.resize(sizeof(uint16_t) * static_cast<size_t>(o_elems) * layers.size());
    for (size_t l = 0; l < layers.size(); ++l)
        for (int64_t hh = 0; hh < s.Hkv; ++hh)
            CUDA_CHECK(cudaMemcpy2D(
                p.o_heads.get<uint16_t>() + static_cast<int64_t>(l) * o_elems + hh * s.H * gd,
                sizeof(uint16_t) * gd, static_cast<const uint16_t*>(layers[l].o) + hh * gd,
                sizeof(uint16_t) * s.Hq * s.D, sizeof(uint16_t) * gd, s.H, cudaMemcpyDeviceToDevice));
    p.part.resize(sizeof(float) * static_cast<size_t>(s.Hkv * nsplit) *
                  state_stride(static_cast<int>(G), static_cast<int>(s.D)));
    p.oparts.resize(sizeof(float) * static_cast<size_t>(s.Hkv * s.H));
    p.h.resize(sizeof(float) * static_cast<size_t>(s.I));
    p.qkv.resize(sizeof(float) * static_cast<size_t>(QKV));
    p.bar.resize(sizeof(unsigned long long));
    CUDA_CHECK(cudaMemset(p.bar.get(), 0, p.bar.size()));
    Args& a = p.args;
    a.layers = p.layers.get<PersistentLayer>();
    a.n_layers = static_cast<int>(layers.size());
    a.H = static_cast<int>(s.H);
    a.I = static_cast<int>(s.I);
    a.Hq = static_cast<int>(s.Hq);
    a.Hkv = static_cast<int>(s.Hkv);
    a.G = static_cast<int>(G);
    a.D = static_cast<int>(s.D);
    a.eps = s.eps;
    a.scale = 1.0f / std::sqrt(static_cast<float>(s.D));
    a.inv_freq = inv_freq;
    a.qkv = p.qkv.get<float>();
    a.part = p.part.get<float>();
    a.oparts = p.oparts.get<float>();
    a.h = p.h.get<float>();
    a.bar = p.bar.get<unsigned long long>();
    a.nsplit = nsplit;
    a.nbh = nbh;
    a.wbuf_elems = wb0 / 2;
    a.o_heads = p.o_heads.get<bf16>();
    a.phase_floats = static_cast<int>(phase_floats);
    if (env_switch("LMSCOPE_CUDA_PERSISTENT_TIMING", false)) {
        p.tstamp.resize(sizeof(unsigned long long) * layers.size() * kStamps * blocks);
        CUDA_CHECK(cudaMemset(p.tstamp.get(), 0, p.tstamp.size()));
        a.tstamp = p.tstamp.get<unsigned long long>();
    }
    return d;
}

// the last step's phases (LMSCOPE_CUDA_PERSISTENT_TIMING=1), averaged over the layers: the span from
// the first block's start to the last block's end, the gap to the next phase's first start, and the
// steps inside a phase as block 0's thread 0 (in the warp that issues the TMA copies) saw them
PersistentDecode::~PersistentDecode() {
    if (!p_ || !p_->tstamp.get()) return;
    const int B = p_->blocks, NL = p_->args.n_layers;
    std::vector<unsigned long long> t(static_cast<size_t>(NL) * kStamps * B);
    if (cudaMemcpy(t.data(), p_->tstamp.get(), t.size() * sizeof(t[0]), cudaMemcpyDeviceToHost) !=
        cudaSuccess)
        return;
    const auto at = [&](int l, int k, int b) {
        return static_cast<double>(t[(static_cast<size_t>(l) * kStamps + k) * B + b]);
    };
    struct Seq {
        const char* name;
        std::vector<int> ids;
        std::vector<const char*> steps;
    };
    const Seq seqs[5] = {{"qkv", {0, 13, 14, 15, 16, 1}, {"stage", "issue", "wait", "dots", "store"}},
                         {"attn", {2, 10, 11, 17, 12, 3}, {"copy", "heads", "issue", "keys", "merge"}},
                         {"o", {4, 18, 19, 5}, {"merge", "wait", "dots"}},
                         {"gate_up", {6, 20, 21, 22, 7}, {"stage", "issue", "wait", "dots"}},
                         {"down", {8, 23, 24, 25, 9}, {"copy", "issue", "wait", "dots"}}};
    for (int ph = 0; ph < 5; ++ph) {
        const Seq& q = seqs[ph];
        const int k0 = q.ids.front(), k1 = q.ids.back();
        double span = 0, gap = 0;
        int ng = 0;
        std::vector<double> step(q.steps.size(), 0.0);
        int ns = 0;
        for (int l = 0; l < NL; ++l) {
            double s0 = 1e300, e1 = 0;
            for (int b = 0; b < B; ++b) {
                s0 = std::min(s0, at(l, k0, b));
                e1 = std::max(e1, at(l, k1, b));
                bool mono = true;
                for (size_t i = 1; i < q.ids.size(); ++i)
                    mono &= at(l, q.ids[i], b) >= at(l, q.ids[i - 1], b);
                if (!mono) continue;
                for (size_t i = 1; i < q.ids.size(); ++i)
                    step[i - 1] += at(l, q.ids[i], b) - at(l, q.ids[i - 1], b);
                ++ns;
            }
            span += (e1 - s0) / NL;
            const int nl = ph == 4 ? l + 1 : l, nk = ph == 4 ? 0 : seqs[ph + 1].ids.front();
            if (nl < NL) {
                double s1 = 1e300;
                for (int b = 0; b < B; ++b) s1 = std::min(s1, at(nl, nk, b));
                gap += s1 - e1;
                ++ng;
            }
        }
        std::string steps;
        for (size_t i = 0; i < q.steps.size(); ++i) {
            char buf[64];
            std::snprintf(buf, sizeof buf, " %s %.2f", q.steps[i], ns ? step[i] / ns / 1e3 : 0.0);
            steps += buf;
        }
        std::fprintf(stderr, "persistent %-8s span %6.2f us, barrier gap %5.2f us; per block:%s\n", q.name,
                     span / 1e3, ng ? gap / ng / 1e3 : 0.0, steps.c_str());
    }
}

void PersistentDecode::launch(float* x, float* xb, const int32_t* pos, void* kc, void* vc,
                              int64_t layer_elems, cudaStream_t stream, bool pdl) const {
    Args a = p_->args;
    a.x = x;
    a.xb = xb;
    a.pos = pos;
    a.kc = static_cast<bf16*>(kc);
    a.vc = static_cast<bf16*>(vc);
    a.layer_elems = layer_elems;
    launch_kernel(p_->kernel, dim3(static_cast<unsigned>(p_->blocks)), dim3(kThreads), p_->smem, stream, pdl,
                  a);
    CUDA_CHECK_LAUNCH();
}

}  // namespace lmscope::cuda
