// Decode attention without shared-memory tiles or a global merge: a thread-block cluster per (kv head,
// row). The split-K kernel of attention.cu spent ~10 us a layer on a fixed chain (5-6 block barriers
// per tile, a thread's serial D-long dot product, the partial states through global memory, a fence,
// an atomic and the last block's merge from L2; cuda_notes "Fourth session"). Here:
//   - each warp walks its own keys (key j of the block's range goes to warp j % 8), a lane holds D / 32
//     consecutive elements of a K / V row, so a score is D / 32 FMAs and a 5-step butterfly; K / V rows
//     go straight to registers, the next U keys' loads in flight while the current ones are used; the
//     first ones before griddepcontrol.wait (rows of earlier steps);
//   - the block's 8 warps merge their (max, sum, o) through shared memory (one barrier);
//   - the cluster's blocks (the key ranges of one (kv head, row)) merge through distributed shared
//     memory: each block stores its totals of output slice j into block j's shared memory, then one
//     cluster barrier, then each block combines its slice locally. (Reading the other blocks' totals
//     after a barrier instead needs a second barrier before exit and two rounds of remote reads: it
//     cost 4.9 us a layer in the 0.6B decode step, cuda_notes v23.)
// Key ranges are an even share of the row's actual length (read on the device), not of the capacity.
#include <cooperative_groups.h>

#include <type_traits>

#include "cuda/common.cuh"
#include "ops/cuda/attention_decode.cuh"
#include "ops/cuda/ops_cuda.h"

namespace lmscope::cuda {

namespace {

namespace cg = cooperative_groups;

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kMaxCluster = 16;  // non-portable on Hopper; 8 where the device cannot place 16
constexpr float kLog2e = 1.4426950408889634f;

/**
 * Shared memory (floats): the warps' states [warps][G] m, l and [warps][G][D] o; q [G][D]; cos|sin [D];
 * a head per warp [warps][D]; the cluster's totals for this block's output slice [splits][2 G + slice]
 * (m, l of every q head, then o of the slice); the new K / V rows.
 */
struct ClusterSmem {
    size_t m, l, o, q, cs, head, x, newkv, bytes;
    __host__ __device__ ClusterSmem(int D, int G, size_t es) {
        m = 0;
        l = m + sizeof(float) * kWarps * G;
        o = l + sizeof(float) * kWarps * G;
        q = o + sizeof(float) * kWarps * G * D;
        cs = q + sizeof(float) * G * D;
        head = cs + sizeof(float) * D;
        x = head + sizeof(float) * kWarps * D;
        newkv = x + sizeof(float) * (G * D + (2 * G + 1) * kMaxCluster);  // >= splits * (2 G + ceil(G D / splits))
        bytes = newkv + 2 * D * es;
    }
};

/**
 * Block (kv head, row, split) of a cluster over the splits. MAXG >= G = Hq / Hkv query heads share
 * every K / V row a warp loads; U keys per warp and step.
 */
template <typename KT, typename OutT, int DV, int MAXG>
__global__ void __launch_bounds__(kThreads)
    attn_decode_cluster_kernel(const float* q, DecodeQkv fq, int Hq, int Hkv, float scale, KT* kc, KT* vc,
                               int64_t capacity, RowPos rows, int nsplit, OutT* out) {
    constexpr int D = 32 * DV;
    constexpr int U = MAXG * DV >= 32 ? 2 : 4;
    using Row = LaneRow<KT, DV>;
    asm volatile("griddepcontrol.launch_dependents;");
    const int kvh = blockIdx.x, r = blockIdx.y, sp = blockIdx.z;
    const int G = Hq / Hkv;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int64_t S = row_pos(rows, r) + 1, seq = row_seq(rows, r), pos = S - 1;
    const int64_t chunk = (S + nsplit - 1) / nsplit;
    const int64_t start = sp * chunk, end = min(S, start + chunk);
    const int64_t kvd = static_cast<int64_t>(Hkv) * D;
    const KT* kbase = kc + seq * capacity * kvd + kvh * D + lane * DV;  // this lane's elements of key 0
    const KT* vbase = vc + seq * capacity * kvd + kvh * D + lane * DV;
    const bool fused = fq.qkv != nullptr;
    const bool has_new = fused && start <= pos && pos < end;

    extern __shared__ __align__(16) unsigned char dsm[];
    const ClusterSmem L(D, G, sizeof(KT));
    float* sM = reinterpret_cast<float*>(dsm + L.m);  // [kWarps][G]
    float* sL = reinterpret_cast<float*>(dsm + L.l);  // [kWarps][G]
    float* sO = reinterpret_cast<float*>(dsm + L.o);  // [kWarps][G][D]
    float* sQ = reinterpret_cast<float*>(dsm + L.q);  // [G][D], times scale * log2(e)
    float* sCs = reinterpret_cast<float*>(dsm + L.cs);
    float* sHead = reinterpret_cast<float*>(dsm + L.head);
    float* sX = reinterpret_cast<float*>(dsm + L.x);  // [splits][2 G + slice]: every block's totals for this block's outputs
    KT* sNewK = reinterpret_cast<KT*>(dsm + L.newkv);
    KT* sNewV = sNewK + D;

    // the cluster barrier's first phase: arrived here, waited on before the first store into another
    // block's shared memory (which must have started)
    if (nsplit > 1) asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");

    // keys j0, j0 + 8, ... of this warp; step i covers U of them
    const int64_t j0 = start + warp;
    Row kr[U], vr[U];
    auto load = [&](int64_t first, Row (&kk)[U], Row (&vv)[U]) {
        load_kv_step<kWarps>(kbase, vbase, kvd, first, end, kk, vv);
    };
    // Under PDL the fused kernel's first rows (earlier steps' keys; the row of pos, perhaps stale, is
    // replaced below) and the RoPE angles overlap the kernel before it; the unfused kernel reads rows
    // the previous kernel wrote, so it waits first.
    if (fused) {
        load(j0, kr, vr);
        decode_rope_angles(fq.inv_freq, pos, D, sCs, tid, kThreads);
    }
    asm volatile("griddepcontrol.wait;" ::: "memory");
    const float qscale = scale * kLog2e;  // scores in log2 units: exp2 below
    if (!fused) {
        load(j0, kr, vr);
        for (int i = tid; i < G * D; i += kThreads) sQ[i] = q[(static_cast<int64_t>(r) * Hq + kvh * G) * D + i] * qscale;
    } else {
        __syncthreads();  // sCs
        const int64_t cache_at = (seq * capacity + pos) * kvd + kvh * D;
        for (int it = warp; it < G + (has_new ? 2 : 0); it += kWarps)
            decode_head(fq, r, Hq, Hkv, kvh, G, it, D, sCs, sHead + warp * D, qscale, sQ + it * D, kc, vc, cache_at,
                        sNewK, sNewV, lane);
    }
    __syncthreads();

    WarpSoftmax<DV, MAXG> ws;
    ws.init(sQ, G, D, lane);
    ws.template walk<kWarps>(j0, end, pos, has_new, sNewK, sNewV, lane, kr, vr, load);

    // the block's warps: state to shared memory, then one (q head, d) per thread combines them
    ws.store(sM, sL, sO, G, D, warp, lane);
    __syncthreads();
    const int64_t out0 = (static_cast<int64_t>(r) * Hq + kvh * G) * D;  // (row, first q head of this kv head)
    const int per = (G * D + nsplit - 1) / nsplit, stride = 2 * G + per;  // output slice of each block
    cg::cluster_group cluster = cg::this_cluster();
    const int rank = nsplit > 1 ? static_cast<int>(cluster.block_rank()) : 0;
    if (nsplit > 1) asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
    for (int i = tid; i < G * D; i += kThreads) {
        const int g = i / D;
        float M, Ls, Os;
        combine_warps<kWarps>(i, G, D, sM, sL, sO, M, Ls, Os);
        if (nsplit == 1) {
            out[out0 + i] = from_f32<OutT>(Os / Ls);
            continue;
        }
        // this block's totals into the block that owns output i (o) and into every block (m, l)
        const int owner = i / per;
        cluster.map_shared_rank(sX, owner)[rank * stride + 2 * G + i - owner * per] = Os;
        if (i % D == 0)
            for (int b = 0; b < nsplit; ++b) {
                float* xb = cluster.map_shared_rank(sX, b) + rank * stride;
                xb[g] = M;
                xb[G + g] = Ls;
            }
    }
    if (nsplit == 1) return;
    cluster.sync();  // the totals have landed; no block's shared memory is touched after this
    for (int i = rank * per + tid; i < min(G * D, (rank + 1) * per); i += kThreads) {
        out[out0 + i] = from_f32<OutT>(combine_splits(sX, nsplit, stride, G, i / D, 2 * G + i - rank * per));
    }
}

/** Splits (= cluster size) for R rows: rows x kv heads that fill the SMs stay whole; else up to a block per SM. */
int cluster_splits(int64_t R, int64_t Hkv, int64_t max_len, int max_cluster) {
    const int64_t blocks = std::max<int64_t>(1, R * Hkv);
    int n = 1;
    while (2 * n <= max_cluster && blocks * 2 * n <= sm_count() && 16 * n < max_len) n *= 2;
    return n;
}

template <typename KT, typename OutT, int DV, int MAXG>
void launch_cluster(const float* q, const DecodeQkv& fq, int64_t R, int64_t Hq, int64_t Hkv, float scale, KvView kv,
                    RowPos rows, int64_t max_len, void* out, cudaStream_t stream, bool pdl) {
    constexpr int D = 32 * DV;
    auto* kernel = attn_decode_cluster_kernel<KT, OutT, DV, MAXG>;
    const int G = static_cast<int>(Hq / Hkv);
    const ClusterSmem L(D, G, sizeof(KT));
    // once per instantiation: the largest dynamic shared memory this build asks for, clusters of 16
    static const int max_cluster = [&] {
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(ClusterSmem(D, MAXG, sizeof(KT)).bytes)));
        if (cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) != cudaSuccess) {
            (void)cudaGetLastError();
            return 8;
        }
        return kMaxCluster;
    }();
    int nsplit = cluster_splits(R, Hkv, max_len, max_cluster);
    const auto grid = [&](int n) { return dim3(static_cast<unsigned>(Hkv), static_cast<unsigned>(R), static_cast<unsigned>(n)); };
    // a cluster size the device cannot place (asked once per size: 1 placeable, -1 not): halve it
    static int fits[kMaxCluster + 1] = {};
    for (; nsplit > 1; nsplit /= 2) {
        if (fits[nsplit] == 0) {
            const LaunchConfig lc(grid(nsplit), dim3(kThreads), L.bytes, stream, pdl, static_cast<unsigned>(nsplit));
            int clusters = 0;
            const bool ok = cudaOccupancyMaxActiveClusters(&clusters, kernel, &lc.cfg) == cudaSuccess && clusters > 0;
            (void)cudaGetLastError();
            fits[nsplit] = ok ? 1 : -1;
        }
        if (fits[nsplit] > 0) break;
    }
    const LaunchConfig lc(grid(nsplit), dim3(kThreads), L.bytes, stream, pdl, static_cast<unsigned>(nsplit));
    CUDA_CHECK(cudaLaunchKernelEx(&lc.cfg, kernel, q, fq, static_cast<int>(Hq), static_cast<int>(Hkv), scale,
                                  static_cast<KT*>(kv.k), static_cast<KT*>(kv.v), kv.capacity, rows, nsplit,
                                  static_cast<OutT*>(out)));
    CUDA_CHECK_LAUNCH();
}

template <typename KT, typename OutT, int DV>
bool launch_by_group(const float* q, const DecodeQkv& fq, int64_t R, int64_t Hq, int64_t Hkv, float scale, KvView kv,
                     RowPos rows, int64_t max_len, void* out, cudaStream_t stream, bool pdl) {
    const int64_t G = Hq / Hkv;
    if (G <= 2) launch_cluster<KT, OutT, DV, 2>(q, fq, R, Hq, Hkv, scale, kv, rows, max_len, out, stream, pdl);
    else if (G <= 4) launch_cluster<KT, OutT, DV, 4>(q, fq, R, Hq, Hkv, scale, kv, rows, max_len, out, stream, pdl);
    else if constexpr (DV <= 4) {  // 8 heads of 256: too many registers
        if (G > 8) return false;
        launch_cluster<KT, OutT, DV, 8>(q, fq, R, Hq, Hkv, scale, kv, rows, max_len, out, stream, pdl);
    } else {
        return false;
    }
    return true;
}

}  // namespace

bool attention_decode_cluster_cuda(const float* q, const float* qkv, const float* bias, const float* q_norm,
                                   const float* k_norm, float eps, const float* inv_freq, int64_t R, int64_t Hq,
                                   int64_t Hkv, int64_t D, float scale, KvView kv, RowPos rows, int64_t max_len,
                                   void* out, DType out_dtype, cudaStream_t stream, bool pdl) {
    if (D % 32 || D < 64 || D > 256 || Hq % Hkv || Hq / Hkv > 8 || R <= 0) return false;
    if (const char* env = std::getenv("LMSCOPE_CUDA_ATTN_CLUSTER"); env && env[0] == '0') return false;
    const DecodeQkv fq{qkv, bias, q_norm, k_norm, eps, inv_freq};
    bool done = false;
    dispatch_float(kv.dtype, [&](auto* kp) {
        using KT = std::remove_pointer_t<decltype(kp)>;
        dispatch_float(out_dtype, [&](auto* op) {
            using OT = std::remove_pointer_t<decltype(op)>;
            const auto go = [&](auto dv) {
                constexpr int DV = decltype(dv)::value;
                done = launch_by_group<KT, OT, DV>(q, fq, R, Hq, Hkv, scale, kv, rows, max_len, out, stream, pdl);
            };
            switch (D / 32) {
                case 2: go(std::integral_constant<int, 2>{}); break;
                case 4: go(std::integral_constant<int, 4>{}); break;
                case 8: go(std::integral_constant<int, 8>{}); break;
                default: break;
            }
        });
    });
    return done;
}

}  // namespace lmscope::cuda
