// Pieces both decode-attention kernels share: the fused input (raw q|k|v rows), the RoPE angles of the
// new position, and one warp's q / k norm + RoPE of one head (the work of qkv_rope_cache_cuda, done
// inside the attention kernel so that decode needs no separate launch for it).
#pragma once

#include <type_traits>

#include "cuda/common.cuh"
#include "ops/cuda/ops_cuda.h"

namespace lmscope::cuda {

/** Fused decode input (attention_decode_fused_cuda): the raw q|k|v rows instead of q. */
struct DecodeQkv {
    const float* qkv = nullptr;  // (R, (Hq + 2 Hkv) D); null: q given (attention_decode_cuda)
    const float* bias = nullptr;
    const float* q_norm = nullptr;
    const float* k_norm = nullptr;
    float eps = 1e-6f;
    const float* inv_freq = nullptr;
    // the G + 2 raw heads of this kv head (q heads, k, v; D each) already in shared memory, instead of
    // qkv (the persistent decode step, whose qkv other blocks wrote earlier in the same kernel)
    const float* local = nullptr;
};

/**
 * cos / sin of position `pos` into cs[0 .. D/2) / cs[D/2 .. D), threads tid, tid + nthreads, ...
 * (angle = float(pos) * inv_freq as an f32 product, as torch; the sincos in double, as rope_cos_sin).
 * Positions are set before a step's first kernel, so this may run before griddepcontrol.wait.
 */
__device__ __forceinline__ void decode_rope_angles(const float* inv_freq, int64_t pos, int D, float* cs, int tid,
                                                   int nthreads) {
    const int half = D / 2;
    const float fpos = static_cast<float>(pos);
    for (int j = tid; j < half; j += nthreads) {
        const float angle = __fmul_rn(fpos, inv_freq[j]);
        double sd, cd;
        sincos(static_cast<double>(angle), &sd, &cd);
        cs[j] = static_cast<float>(cd);
        cs[half + j] = static_cast<float>(sd);
    }
}

/**
 * One warp's share of the fused decode input of row r, kv head kvh, for item `it` of its G + 2:
 * it < G: q head kvh * G + it, normed (q_norm) and rotated, times qscale, into q_out[0 .. D);
 * it == G: the new key, normed (k_norm) and rotated, to the cache at cache_at and into new_k;
 * it == G + 1: the new value, as is, to the cache and into new_v.
 * buf: D floats of this warp's shared memory; cs: decode_rope_angles' output. D even, <= 256.
 */
template <typename KT>
__device__ __forceinline__ void decode_head(const DecodeQkv& fq, int64_t r, int Hq, int Hkv, int kvh, int G, int it,
                                            int D, const float* cs, float* buf, float qscale, float* q_out, KT* kc,
                                            KT* vc, int64_t cache_at, KT* new_k, KT* new_v, int lane) {
    const int half = D / 2;
    const int64_t H = Hq + 2 * static_cast<int64_t>(Hkv);
    const int64_t hh = it < G ? kvh * G + it : it == G ? Hq + kvh : Hq + Hkv + kvh;  // q, k or v head
    const float* src = fq.local ? fq.local + it * D : fq.qkv + r * H * D + hh * D;
    float ss = 0.0f;
    for (int i = lane; i < D; i += 32) {
        const float v = src[i] + (fq.bias ? fq.bias[hh * D + i] : 0.0f);
        buf[i] = v;
        ss += v * v;
    }
    ss = warp_sum(ss);
    if (it == G + 1) {  // v: to the cache as is
        for (int i = lane; i < D; i += 32) {
            const KT v = from_f32<KT>(buf[i]);
            vc[cache_at + i] = v;
            new_v[i] = v;
        }
        return;
    }
    const float* nw = it < G ? fq.q_norm : fq.k_norm;
    if (nw) {
        const float inv = rsqrtf(ss / static_cast<float>(D) + fq.eps);
        for (int i = lane; i < D; i += 32) buf[i] = buf[i] * inv * nw[i];
    }
    __syncwarp();
    float rot[8];  // D <= 256
#pragma unroll
    for (int e = 0; e < 8; ++e) {
        const int i = lane + 32 * e;
        if (i >= D) break;
        const int j = i < half ? i : i - half;
        rot[e] = i < half ? buf[i] * cs[j] - buf[i + half] * cs[half + j] : buf[i] * cs[j] + buf[i - half] * cs[half + j];
    }
    __syncwarp();
#pragma unroll
    for (int e = 0; e < 8; ++e) {
        const int i = lane + 32 * e;
        if (i >= D) break;
        if (it < G) {
            q_out[i] = rot[e] * qscale;
        } else {
            const KT k = from_f32<KT>(rot[e]);
            kc[cache_at + i] = k;
            new_k[i] = k;
        }
    }
}

/** DV consecutive elements of a K or V row: one lane's share of a head (D = 32 DV). */
template <typename KT, int DV>
struct alignas(sizeof(KT) * DV) LaneRow {
    KT v[DV];
};

template <typename KT, int DV>
__device__ __forceinline__ void lane_to_f32(const LaneRow<KT, DV>& row, float (&out)[DV]) {
    if constexpr (std::is_same_v<KT, float>) {
#pragma unroll
        for (int e = 0; e < DV; ++e) out[e] = row.v[e];
    } else if constexpr (DV % 2 == 0) {
        using T2 = std::conditional_t<std::is_same_v<KT, __half>, __half2, __nv_bfloat162>;
        const T2* h = reinterpret_cast<const T2*>(row.v);
#pragma unroll
        for (int e = 0; e < DV / 2; ++e) {
            float2 f;
            if constexpr (std::is_same_v<KT, __half>)
                f = __half22float2(h[e]);
            else
                f = __bfloat1622float2(h[e]);
            out[2 * e] = f.x;
            out[2 * e + 1] = f.y;
        }
    } else {
#pragma unroll
        for (int e = 0; e < DV; ++e) out[e] = to_f32(row.v[e]);
    }
}

/**
 * The U K / V rows of one step of a warp's key walk (keys first, first + WARPS, ...; those >= end are
 * left as they are): this lane's DV elements of each, kbase / vbase at key 0's, rows kvd elements apart.
 */
template <int WARPS, typename KT, int DV, int U>
__device__ __forceinline__ void load_kv_step(const KT* kbase, const KT* vbase, int64_t kvd, int64_t first,
                                             int64_t end, LaneRow<KT, DV> (&k)[U], LaneRow<KT, DV> (&v)[U]) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const int64_t j = first + static_cast<int64_t>(WARPS) * u;
        if (j < end) {
            k[u] = *reinterpret_cast<const LaneRow<KT, DV>*>(kbase + j * kvd);
            v[u] = *reinterpret_cast<const LaneRow<KT, DV>*>(vbase + j * kvd);
        }
    }
}

/**
 * One warp's online softmax over the keys it walks, for up to MAXG query heads sharing them (G live):
 * a lane holds DV elements of q, o and of each K / V row, so a score is DV FMAs and a butterfly; scores
 * are in log2 units (q carries scale * log2(e)). Used by the cluster kernel and the persistent step.
 */
template <int DV, int MAXG>
struct WarpSoftmax {
    float q[MAXG][DV], o[MAXG][DV], m[MAXG], l[MAXG];

    /** q of head g from sQ[g D + ...] (heads >= G: zero), an empty state. */
    __device__ __forceinline__ void init(const float* sQ, int G, int D, int lane) {
#pragma unroll
        for (int g = 0; g < MAXG; ++g) {
            m[g] = -INFINITY;
            l[g] = 0.0f;
#pragma unroll
            for (int e = 0; e < DV; ++e) {
                q[g][e] = g < G ? sQ[g * D + lane * DV + e] : 0.0f;
                o[g][e] = 0.0f;
            }
        }
    }

    /** Adds the U keys k[u] / v[u] for which live(u) holds. */
    template <typename KT, int U, class Live>
    __device__ __forceinline__ void add(const LaneRow<KT, DV> (&k)[U], const LaneRow<KT, DV> (&v)[U],
                                        Live&& live) {
        float s[U][MAXG];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            float kf[DV];
            lane_to_f32(k[u], kf);
#pragma unroll
            for (int g = 0; g < MAXG; ++g) {
                float a = 0.0f;
#pragma unroll
                for (int e = 0; e < DV; ++e) a += q[g][e] * kf[e];
                s[u][g] = a;
            }
        }
        // the U x MAXG butterflies interleaved: independent shuffles in flight
#pragma unroll
        for (int off = 16; off > 0; off >>= 1)
#pragma unroll
            for (int u = 0; u < U; ++u)
#pragma unroll
                for (int g = 0; g < MAXG; ++g) s[u][g] += __shfl_xor_sync(0xffffffffu, s[u][g], off);
        float vf[U][DV];
#pragma unroll
        for (int u = 0; u < U; ++u) lane_to_f32(v[u], vf[u]);
#pragma unroll
        for (int g = 0; g < MAXG; ++g) {
            float mx = m[g];
#pragma unroll
            for (int u = 0; u < U; ++u)
                if (live(u)) mx = fmaxf(mx, s[u][g]);
            const float c = exp2f(m[g] - mx);  // m = -inf on the first keys: 0
            l[g] *= c;
#pragma unroll
            for (int e = 0; e < DV; ++e) o[g][e] *= c;
#pragma unroll
            for (int u = 0; u < U; ++u) {
                if (!live(u)) continue;
                const float p = exp2f(s[u][g] - mx);
                l[g] += p;
#pragma unroll
                for (int e = 0; e < DV; ++e) o[g][e] += p * vf[u][e];
            }
            m[g] = mx;
        }
    }

    /**
     * The warp's keys first, first + WARPS, ... < end, U a step: k / v hold the first step's rows, and
     * load(j, kk, vv) fetches the U rows of the step starting at j (the next step's rows are in flight
     * while this step's are used); the row of pos comes from new_k / new_v when has_new (the cache row
     * read before the new token's write may be stale).
     */
    template <int WARPS, typename KT, int U, class Load>
    __device__ __forceinline__ void walk(int64_t first0, int64_t end, int64_t pos, bool has_new, const KT* new_k,
                                         const KT* new_v, int lane, LaneRow<KT, DV> (&k)[U],
                                         LaneRow<KT, DV> (&v)[U], Load&& load) {
        for (int64_t first = first0; first < end; first += static_cast<int64_t>(WARPS) * U) {
            if (has_new)
#pragma unroll
                for (int u = 0; u < U; ++u)
                    if (first + static_cast<int64_t>(WARPS) * u == pos) {
                        k[u] = *reinterpret_cast<const LaneRow<KT, DV>*>(new_k + lane * DV);
                        v[u] = *reinterpret_cast<const LaneRow<KT, DV>*>(new_v + lane * DV);
                    }
            LaneRow<KT, DV> kn[U], vn[U];
            load(first + static_cast<int64_t>(WARPS) * U, kn, vn);
            add<KT, U>(k, v, [&](int u) { return first + static_cast<int64_t>(WARPS) * u < end; });
#pragma unroll
            for (int u = 0; u < U; ++u) {
                k[u] = kn[u];
                v[u] = vn[u];
            }
        }
    }

    /** This warp's state into shared memory: sM, sL [warps][G], sO [warps][G][D]. */
    __device__ __forceinline__ void store(float* sM, float* sL, float* sO, int G, int D, int warp,
                                          int lane) const {
#pragma unroll
        for (int g = 0; g < MAXG; ++g) {
            if (g >= G) break;
            if (lane == 0) {
                sM[warp * G + g] = m[g];
                sL[warp * G + g] = l[g];
            }
#pragma unroll
            for (int e = 0; e < DV; ++e) sO[(warp * G + g) * D + lane * DV + e] = o[g][e];
        }
    }
};

/**
 * The state of output i (q head g = i / D) combined over the WARPS warps' states that WarpSoftmax::store
 * left in shared memory: the running max M, the sum Ls and o's unnormalised element Os (a warp without
 * keys has m = -inf and weighs nothing).
 */
template <int WARPS>
__device__ __forceinline__ void combine_warps(int i, int G, int D, const float* sM, const float* sL,
                                              const float* sO, float& M, float& Ls, float& Os) {
    const int g = i / D;
    M = -INFINITY;
#pragma unroll
    for (int w = 0; w < WARPS; ++w) M = fmaxf(M, sM[w * G + g]);
    Ls = 0.0f;
    Os = 0.0f;
#pragma unroll
    for (int w = 0; w < WARPS; ++w) {
        const float mw = sM[w * G + g];
        const float wt = mw == -INFINITY ? 0.0f : exp2f(mw - M);
        Ls += wt * sL[w * G + g];
        Os += wt * sO[w * G * D + i];
    }
}

/**
 * Output o (unnormalised element at offset `o` of each state) of q head g combined over n split states of
 * `stride` floats in shared memory (m of each of the G heads, then l of each, then the o elements), and
 * normalised: the second merge of the cluster kernel and of the attention block (a split without keys
 * has m = -inf and weighs nothing).
 */
__device__ __forceinline__ float combine_splits(const float* states, int n, int stride, int G, int g, int o) {
    float M = -INFINITY;
    for (int b = 0; b < n; ++b) M = fmaxf(M, states[b * stride + g]);
    float Ls = 0.0f, Os = 0.0f;
    for (int b = 0; b < n; ++b) {
        const float mb = states[b * stride + g];
        const float wt = mb == -INFINITY ? 0.0f : exp2f(mb - M);
        Ls += wt * states[b * stride + G + g];
        Os += wt * states[b * stride + o];
    }
    return Os / Ls;
}

/**
 * The cluster decode kernel (attention_decode_cluster.cu) for q (R, Hq, D) f32, or, when qkv is set,
 * the fused input (q / k norm, RoPE and the cache write inside, as attention_decode_fused_cuda).
 * Returns false, launching nothing, for shapes it does not take (D not 64 / 128 / 256 or > 8 query
 * heads per kv head) or when LMSCOPE_CUDA_ATTN_CLUSTER=0: the split-K kernel of attention.cu then runs.
 */
bool attention_decode_cluster_cuda(const float* q, const float* qkv, const float* bias, const float* q_norm,
                                   const float* k_norm, float eps, const float* inv_freq, int64_t R, int64_t Hq,
                                   int64_t Hkv, int64_t D, float scale, KvView kv, RowPos rows, int64_t max_len,
                                   void* out, DType out_dtype, cudaStream_t stream, bool pdl);

}  // namespace lmscope::cuda
