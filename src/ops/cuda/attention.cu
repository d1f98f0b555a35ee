// CUDA attention over the KV cache (causal, GQA), beside ops/ref/attention.cpp and ops/cpu/attention.cpp.
//   decode  (attention_decode_cuda): a block per (kv head, row, key range); the kv head's query heads
//           share each K / V tile; ranges only where rows x kv heads leave SMs idle, merged by the
//           last block to finish. Positions may be read on the device (graphs); the fused variant
//           also does the q / k norm, RoPE and the cache write, and runs under PDL (common.cuh).
// The prefill kernel (attention_prefill_cuda) is in attention_prefill.cu.
#include <type_traits>

#include "cuda/common.cuh"
#include "cuda/mma.cuh"
#include "ops/cuda/attention_decode.cuh"
#include "ops/cuda/ops_cuda.h"

namespace lmscope::cuda {

namespace {

constexpr int kDecThreads = 256;
constexpr int kMaxSplits = 64;
constexpr int kMaxOut = 8;  // (q head, d) outputs per thread (NOUT <= kMaxOut): G * D <= kDecThreads * kMaxOut

// keys per shared-memory tile (two tiles of K and V in flight): 64 for 16-bit caches, 32 for f32
template <typename KT>
constexpr int dec_tile() { return sizeof(KT) == 4 ? 32 : 64; }

/** Shared memory of the decode kernel: K and V tiles x2 (rows padded by 16 bytes), q, p, merge weights. */
struct DecSmem {
    size_t row, kv, q, p, w, rope, bytes;
    __host__ __device__ DecSmem(int D, int G, int tile, size_t es) {
        row = D * es + 16;  // 16-byte reads of 8 consecutive rows hit distinct banks
        kv = 4 * tile * row;
        q = kv;
        p = q + sizeof(float) * G * D;
        w = p + sizeof(float) * G * tile;
        rope = w + sizeof(float) * (G * kMaxSplits + 3 * G);
        // fused q/k norm + RoPE: cos, sin (D/2 each), a head per warp (D floats), the new K and V rows
        bytes = rope + sizeof(float) * D * (1 + kDecThreads / 32) + 2 * row;
    }
};

template <typename KT>
__device__ __forceinline__ float dot_row(const float* q, const KT* k, int D) {
    float s = 0.0f;
    if constexpr (sizeof(KT) == 4) {
#pragma unroll 4
        for (int d = 0; d < D; d += 4) {
            const float4 kv = *reinterpret_cast<const float4*>(k + d), qv = *reinterpret_cast<const float4*>(q + d);
            s += qv.x * kv.x + qv.y * kv.y + qv.z * kv.z + qv.w * kv.w;
        }
    } else {
        using T2 = std::conditional_t<std::is_same_v<KT, __half>, __half2, __nv_bfloat162>;
#pragma unroll 4
        for (int d = 0; d < D; d += 8) {
            const uint4 raw = *reinterpret_cast<const uint4*>(k + d);
            const T2* h = reinterpret_cast<const T2*>(&raw);
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                float2 kv;
                if constexpr (std::is_same_v<KT, __half>) kv = __half22float2(h[i]);
                else kv = __bfloat1622float2(h[i]);
                const float2 qv = *reinterpret_cast<const float2*>(q + d + 2 * i);
                s += qv.x * kv.x + qv.y * kv.y;
            }
        }
    }
    return s;
}

/**
 * One block per (kv head, row, split): the G = Hq / Hkv query heads of a kv head share every K / V
 * tile, which is read once (cp.async, 16-byte pieces, double-buffered) into shared memory. Per tile:
 * one thread per (q head, key) dot product, a warp per q head for the tile's max / sum (online
 * softmax), one thread per (q head, d) for P V. With several splits each block stores its partial
 * state (m, l, o) and the last block of a (row, kv head) to finish (counter in `counters`, left at
 * zero) merges them: no second kernel.
 */
template <typename KT, typename OutT, int NOUT>
__global__ void __launch_bounds__(kDecThreads)
    attn_decode_kernel(const float* q, DecodeQkv fq, int Hq, int Hkv, int D, float scale, KT* kc, KT* vc,
                       int64_t capacity, RowPos rows, int chunk, int nsplit, float* work, unsigned* counters, OutT* out) {
    constexpr int TILE = dec_tile<KT>();
    asm volatile("griddepcontrol.launch_dependents;");
    const int kvh = blockIdx.x, r = blockIdx.y, sp = blockIdx.z;
    const int G = Hq / Hkv, GD = G * D;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int64_t S = row_pos(rows, r) + 1, seq = row_seq(rows, r);
    const int64_t start = static_cast<int64_t>(sp) * chunk, end = min(S, start + chunk);
    const int64_t kvd = static_cast<int64_t>(Hkv) * D;
    const KT* kbase = kc + seq * capacity * kvd + kvh * D;
    const KT* vbase = vc + seq * capacity * kvd + kvh * D;
    const int64_t pos = S - 1;
    const bool fused = fq.qkv != nullptr;
    const bool has_new = fused && start <= pos && pos < end;  // this split holds the new key: it computes it

    extern __shared__ __align__(16) unsigned char dsm[];
    const DecSmem L(D, G, TILE, sizeof(KT));
    const int ld = static_cast<int>(L.row / sizeof(KT));  // elements per padded row
    KT* sK = reinterpret_cast<KT*>(dsm);                  // [2][TILE][ld]
    KT* sV = sK + 2 * TILE * ld;                          // [2][TILE][ld]
    float* sQ = reinterpret_cast<float*>(dsm + L.q);      // [G][D]
    float* sP = reinterpret_cast<float*>(dsm + L.p);      // [G][TILE]
    float* sW = reinterpret_cast<float*>(dsm + L.w);      // [G][kMaxSplits] merge weights
    float* sM = sW + G * kMaxSplits;                      // [G] running max
    float* sL = sM + G;                                   // [G] running sum
    float* sC = sL + G;                                   // [G] this tile's correction
    float* sCos = reinterpret_cast<float*>(dsm + L.rope);  // [D/2], then sin [D/2]
    float* sHead = sCos + D;                              // [warps][D]
    KT* sNewK = reinterpret_cast<KT*>(sHead + (kDecThreads / 32) * D);  // [ld]
    KT* sNewV = sNewK + ld;                               // [ld]

    const int n_tiles = end > start ? static_cast<int>((end - start + TILE - 1) / TILE) : 0;
    const int vpr = D * static_cast<int>(sizeof(KT)) / 16;  // 16-byte pieces per row
    auto stage = [&](int t, int buf) {
        const int64_t k0 = start + static_cast<int64_t>(t) * TILE;
        for (int i = tid; i < TILE * vpr; i += kDecThreads) {
            const int j = i / vpr, c = (i % vpr) * (16 / static_cast<int>(sizeof(KT)));
            const bool in = k0 + j < end;
            const int64_t off = in ? (k0 + j) * kvd + c : 0;
            mma::cp_async16(sK + (buf * TILE + j) * ld + c, kbase + off, in);
            mma::cp_async16(sV + (buf * TILE + j) * ld + c, vbase + off, in);
        }
        mma::cp_async_commit();
    };
    // Under PDL (common.cuh) the fused kernel's first K / V tile, rows of earlier steps, is on its way
    // while the kernel before it finishes (the row of pos, which may be stale, is replaced below); the
    // unfused kernel reads rows the previous kernel wrote, so it waits first. Without PDL the wait
    // returns at once.
    // The fused kernel's RoPE angles too (positions are set before the step's first kernel): a double
    // sincos is ~1 us of latency that then overlaps the previous kernel.
    if (fused) {
        if (n_tiles > 0) stage(0, 0);
        decode_rope_angles(fq.inv_freq, pos, D, sCos, tid, kDecThreads);
    }
    asm volatile("griddepcontrol.wait;" ::: "memory");
    if (!fused && n_tiles > 0) stage(0, 0);
    if (!fused) {
        for (int i = tid; i < GD; i += kDecThreads)
            sQ[i] = q[(static_cast<int64_t>(r) * Hq + kvh * G) * D + i] * scale;  // heads kvh*G .. are contiguous
    } else {
        // q/k norm + RoPE of qkv_rope_cache_cuda, fused: this block's G q heads (and, in the split that
        // holds position pos, the new K / V rows, written to the cache and kept for the tile)
        __syncthreads();
        const int64_t cache_at = (seq * capacity + pos) * kvd + kvh * D;
        for (int it = warp; it < G + (has_new ? 2 : 0); it += kDecThreads / 32)
            decode_head(fq, r, Hq, Hkv, kvh, G, it, D, sCos, sHead + warp * D, scale, sQ + it * D, kc, vc, cache_at,
                        sNewK, sNewV, lane);
    }
    if (tid < G) {
        sM[tid] = -INFINITY;
        sL[tid] = 0.0f;
    }
    // this thread's outputs o = tid + k * kDecThreads: q head o / D, element o % D (offsets into sP / V
    // rows computed once: integer division by a run-time D is ~20 instructions)
    float acc[NOUT];
    int p_off[NOUT], v_off[NOUT];
#pragma unroll
    for (int k = 0; k < NOUT; ++k) {
        const int o = tid + k * kDecThreads;
        acc[k] = 0.0f;
        p_off[k] = o < GD ? (o / D) * TILE : -1;
        v_off[k] = o < GD ? o % D : 0;
    }

    for (int t = 0; t < n_tiles; ++t) {
        const int buf = t & 1;
        if (t + 1 < n_tiles) {
            stage(t + 1, buf ^ 1);
            mma::cp_async_wait<1>();
        } else {
            mma::cp_async_wait<0>();
        }
        __syncthreads();
        KT* K = sK + buf * TILE * ld;
        KT* V = sV + buf * TILE * ld;
        const int64_t k0 = start + static_cast<int64_t>(t) * TILE;
        const int nk = static_cast<int>(min(static_cast<int64_t>(TILE), end - k0));
        if (has_new && pos < k0 + TILE) {  // the tile read the cache row of pos before it was written: use ours
            for (int i = tid; i < D; i += kDecThreads) {
                K[(pos - k0) * ld + i] = sNewK[i];
                V[(pos - k0) * ld + i] = sNewV[i];
            }
            __syncthreads();
        }
        for (int i = tid; i < G * TILE; i += kDecThreads) {  // scores: one (q head, key) per thread
            const int g = i / TILE, j = i % TILE;
            sP[i] = j < nk ? dot_row(sQ + g * D, K + j * ld, D) : -INFINITY;
        }
        __syncthreads();
        for (int g = warp; g < G; g += kDecThreads / 32) {  // online softmax, a warp per q head
            float mx = -INFINITY;
            for (int j = lane; j < TILE; j += 32) mx = fmaxf(mx, sP[g * TILE + j]);
            mx = warp_max(mx);
            const float m_new = fmaxf(sM[g], mx);  // finite: key 0 of the tile is valid
            float sum = 0.0f;
            for (int j = lane; j < TILE; j += 32) {
                const float p = __expf(sP[g * TILE + j] - m_new);
                sP[g * TILE + j] = p;
                sum += p;
            }
            sum = warp_sum(sum);
            __syncwarp();
            if (lane == 0) {
                const float c = __expf(sM[g] - m_new);
                sC[g] = c;
                sL[g] = sL[g] * c + sum;
                sM[g] = m_new;
            }
        }
        __syncthreads();
        // P V: one (q head, d) per thread and k; keys outermost so that the kMaxOut chains interleave
#pragma unroll
        for (int k = 0; k < NOUT; ++k)
            if (p_off[k] >= 0) acc[k] *= sC[p_off[k] / TILE];
        const KT* Vd[NOUT];
#pragma unroll
        for (int k = 0; k < NOUT; ++k) Vd[k] = V + v_off[k];
#pragma unroll 4
        for (int j = 0; j < nk; ++j) {
#pragma unroll
            for (int k = 0; k < NOUT; ++k)
                if (p_off[k] >= 0) acc[k] += sP[p_off[k] + j] * to_f32(Vd[k][j * ld]);
        }
        __syncthreads();  // this buffer pair is refilled two tiles on
    }

    const int64_t rh0 = static_cast<int64_t>(r) * Hq + kvh * G;  // (row, first q head of this kv head)
    if (nsplit == 1) {
#pragma unroll
        for (int k = 0; k < NOUT; ++k)
            if (p_off[k] >= 0) out[rh0 * D + tid + k * kDecThreads] = from_f32<OutT>(acc[k] / sL[p_off[k] / TILE]);
        return;
    }
    // partial state of this split, per q head: work[((row, head), split)] = (m, l, o[D])
#pragma unroll
    for (int k = 0; k < NOUT; ++k)
        if (p_off[k] >= 0) work[((rh0 + p_off[k] / TILE) * nsplit + sp) * (D + 2) + 2 + v_off[k]] = acc[k];
    if (tid < G) {
        work[((rh0 + tid) * nsplit + sp) * (D + 2)] = sM[tid];
        work[((rh0 + tid) * nsplit + sp) * (D + 2) + 1] = sL[tid];
    }
    __shared__ bool last;
    __threadfence();
    __syncthreads();
    if (tid == 0)
        last = atomicAdd(counters + static_cast<int64_t>(r) * Hkv + kvh, 1u) == static_cast<unsigned>(nsplit - 1);
    __syncthreads();
    if (!last) return;
    __threadfence();
    // merge: weights exp(m_s - M) / L per (q head, split), a warp per q head, then one (q head, d) per thread
    for (int g = warp; g < G; g += kDecThreads / 32) {
        const float* base = work + (rh0 + g) * nsplit * (D + 2);
        float M = -INFINITY;
        for (int s2 = lane; s2 < nsplit; s2 += 32) M = fmaxf(M, __ldcg(base + s2 * (D + 2)));
        M = warp_max(M);
        float Ls = 0.0f;
        for (int s2 = lane; s2 < nsplit; s2 += 32) {
            const float ms = __ldcg(base + s2 * (D + 2));
            const float w = ms == -INFINITY ? 0.0f : __expf(ms - M);
            sW[g * kMaxSplits + s2] = w;
            Ls += w * __ldcg(base + s2 * (D + 2) + 1);
        }
        Ls = warp_sum(Ls);
        __syncwarp();
        for (int s2 = lane; s2 < nsplit; s2 += 32) sW[g * kMaxSplits + s2] /= Ls;
    }
    __syncthreads();
    for (int o = tid; o < GD; o += kDecThreads) {
        const int g = o / D, d = o % D;
        const float* base = work + (rh0 + g) * nsplit * (D + 2) + 2 + d;
        const float* w = sW + g * kMaxSplits;
        float a = 0.0f;
#pragma unroll 4
        for (int s2 = 0; s2 < nsplit; ++s2) a += w[s2] * __ldcg(base + s2 * (D + 2));
        out[rh0 * D + o] = from_f32<OutT>(a);
    }
    if (tid == 0) counters[static_cast<int64_t>(r) * Hkv + kvh] = 0;  // ready for the next call (graph replays)
}

template <typename KT, typename OutT>
void launch_decode(const float* q, const DecodeQkv& fq, int64_t R, int64_t Hq, int64_t Hkv, int64_t D, float scale,
                   KvView kv, RowPos rows, int64_t max_len, float* work, unsigned* counters, void* out,
                   cudaStream_t stream, bool pdl) {
    const int G = static_cast<int>(Hq / Hkv);
    if (D % 8 || D > 256 || G * D > kDecThreads * kMaxOut)
        fail_rt("attention_decode_cuda: head_dim {} x {} query heads per kv head not supported (head_dim a multiple of 8, "
                "<= 256; product <= {})", D, G, kDecThreads * kMaxOut);
    const int nsplit = attention_decode_splits(R, Hkv, max_len);
    const int chunk = static_cast<int>((max_len + nsplit - 1) / nsplit);
    const DecSmem L(static_cast<int>(D), G, dec_tile<KT>(), sizeof(KT));
    const dim3 grid(static_cast<unsigned>(Hkv), static_cast<unsigned>(R), static_cast<unsigned>(nsplit));
    const auto go = [&](auto nout) {
        constexpr int N = decltype(nout)::value;
        static size_t attr_bytes = 0;  // per instantiation: raised as larger layouts come
        if (L.bytes > 48 * 1024 && L.bytes > attr_bytes) {
            CUDA_CHECK(cudaFuncSetAttribute(attn_decode_kernel<KT, OutT, N>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(L.bytes)));
            attr_bytes = L.bytes;
        }
        launch_kernel(attn_decode_kernel<KT, OutT, N>, grid, dim3(kDecThreads), L.bytes, stream, pdl,
            q, fq, static_cast<int>(Hq), static_cast<int>(Hkv), static_cast<int>(D), scale, static_cast<KT*>(kv.k),
            static_cast<KT*>(kv.v), kv.capacity, rows, chunk, nsplit, work, counters, static_cast<OutT*>(out));
    };
    const int nout = (G * static_cast<int>(D) + kDecThreads - 1) / kDecThreads;  // outputs per thread
    if (nout <= 1) go(std::integral_constant<int, 1>{});
    else if (nout == 2) go(std::integral_constant<int, 2>{});
    else if (nout <= 4) go(std::integral_constant<int, 4>{});
    else go(std::integral_constant<int, kMaxOut>{});
    CUDA_CHECK_LAUNCH();
}

}  // namespace

int attention_decode_splits(int64_t R, int64_t Hkv, int64_t max_len) {
    // rows x kv heads that fill the SMs stay whole (0.6B batch 32: two splits merged cost more than they
    // gave, 13.7k vs 14.7k tok/s); fewer are split until every SM has two blocks (0.6B batch 1 at 2048
    // keys: one block per SM was 5% slower), with at least 32 keys per split
    const int64_t blocks = std::max<int64_t>(1, R * Hkv);
    const int64_t want = blocks >= sm_count() ? 1 : (2 * sm_count() + blocks - 1) / blocks;
    return static_cast<int>(std::clamp<int64_t>(std::min((max_len + 31) / 32, want), 1, kMaxSplits));
}

size_t attention_decode_workspace(int64_t R, int64_t Hq, int64_t Hkv, int64_t D, int64_t max_len) {
    return static_cast<size_t>(R * Hq * attention_decode_splits(R, Hkv, max_len) * (D + 2));  // (m, l, o[D]) per split
}

namespace {
void decode_dispatch(const float* q, const DecodeQkv& fq, int64_t R, int64_t Hq, int64_t Hkv, int64_t D, float scale,
                     KvView kv, RowPos rows, int64_t max_len, float* work, unsigned* counters, void* out,
                     DType out_dtype, cudaStream_t stream, bool pdl) {
    if (R <= 0) return;
    if (Hq % Hkv) fail_rt("attention: {} query heads are not a multiple of {} kv heads", Hq, Hkv);
    if (attention_decode_cluster_cuda(q, fq.qkv, fq.bias, fq.q_norm, fq.k_norm, fq.eps, fq.inv_freq, R, Hq, Hkv, D,
                                      scale, kv, rows, max_len, out, out_dtype, stream, pdl))
        return;
    dispatch_float(kv.dtype, [&](auto* kp) {
        using KT = std::remove_pointer_t<decltype(kp)>;
        dispatch_float(out_dtype, [&](auto* op) {
            using OT = std::remove_pointer_t<decltype(op)>;
            launch_decode<KT, OT>(q, fq, R, Hq, Hkv, D, scale, kv, rows, max_len, work, counters, out, stream, pdl);
        });
    });
}
}  // namespace

void attention_decode_cuda(const float* q, int64_t R, int64_t Hq, int64_t Hkv, int64_t D, float scale, KvView kv,
                           RowPos rows, int64_t max_len, float* work, unsigned* counters, void* out, DType out_dtype,
                           cudaStream_t stream) {
    decode_dispatch(q, {}, R, Hq, Hkv, D, scale, kv, rows, max_len, work, counters, out, out_dtype, stream, false);
}

void attention_decode_fused_cuda(const float* qkv, const float* bias, int64_t R, int64_t Hq, int64_t Hkv, int64_t D,
                                 const float* q_norm, const float* k_norm, float eps, const float* inv_freq, float scale,
                                 KvView kv, RowPos rows, int64_t max_len, float* work, unsigned* counters, void* out,
                                 DType out_dtype, cudaStream_t stream, bool pdl) {
    if (D % 2) fail_rt("attention_decode_fused_cuda: head_dim {} is odd", D);
    const DecodeQkv fq{qkv, bias, q_norm, k_norm, eps, inv_freq};
    decode_dispatch(nullptr, fq, R, Hq, Hkv, D, scale, kv, rows, max_len, work, counters, out, out_dtype, stream, pdl);
}

void attention_cuda(const float* q, const float* k, const float* v, const AttentionShape& s, float* out,
                    cudaStream_t stream) {
    if (s.T <= 0) return;
    const int64_t S = s.pos0 + s.T;
    static DeviceBuffer work, counters;
    const size_t need = attention_decode_workspace(s.T, s.Hq, s.Hkv, s.D, S) * sizeof(float);
    const size_t ncount = static_cast<size_t>(s.T * s.Hq) * sizeof(unsigned);
    CUDA_CHECK(cudaStreamSynchronize(stream));
    work.reserve(need);
    if (counters.reserve(ncount)) CUDA_CHECK(cudaMemset(counters.get(), 0, counters.size()));
    KvView kv{const_cast<float*>(k), const_cast<float*>(v), DType::F32, S};
    RowPos rows;
    rows.pos0 = s.pos0;
    attention_decode_cuda(q, s.T, s.Hq, s.Hkv, s.D, s.scale, kv, rows, S, work.get<float>(), counters.get<unsigned>(), out,
                          DType::F32, stream);
}

}  // namespace lmscope::cuda
