// Flash-attention prefill over the KV cache (causal, GQA), beside ops/ref/attention.cpp and the
// blocked CPU kernel (ops/cpu/attention_blocked.cpp). FlashAttention-2's forward on mma.sync:
//   block = 4 warps = 64 query rows of one head; each warp owns 16 rows, its Q fragments stay in
//   registers for the whole walk over the keys, S = Q K^T (16 x 64 per key tile) and O (16 x D) are
//   f32 mma accumulators, the online softmax runs on the S fragments in registers (exp2 with
//   log2(e) folded into q), and P is rounded to 16 bits straight into the A fragments of O += P V.
//   K / V tiles of 64 keys are double-buffered in shared memory with cp.async (16-bit caches);
//   rows are padded to D + 8 elements so that ldmatrix's 8 row addresses hit distinct banks.
// Only the key tiles at or below a block's last query are visited, and only the tile that crosses
// the diagonal is masked. The (T, S) scores never exist in memory.
// Compute type: f16 for an f16 cache (f16 models), else bf16; an f32 cache (exact mode, tests) is
// converted to bf16 as it is staged.
#include <cmath>
#include <type_traits>

#include "cuda/common.cuh"
#include "cuda/mma.cuh"
#include "ops/cuda/ops_cuda.h"

namespace lmscope::cuda {

namespace {

constexpr int kFlashWarps = 4;
constexpr int kBQ = 16 * kFlashWarps;  // query rows per block
constexpr int kBK = 64;                // keys per tile

template <int D>
struct FlashLayout {
    static constexpr int LD = D + 8;          // padded row, elements
    static constexpr int tile = kBK * LD;     // one K or V tile, elements
    static constexpr size_t bytes = sizeof(uint16_t) * static_cast<size_t>(kBQ * LD + 4 * tile);  // Q, K x2, V x2
};

template <typename T>
__device__ __forceinline__ void store2(T* p, float a, float b) {
    if constexpr (std::is_same_v<T, float>) {
        *reinterpret_cast<float2*>(p) = make_float2(a, b);
    } else {
        *reinterpret_cast<uint32_t*>(p) = mma::pack2<T>(a, b);
    }
}

// keys [k0, k0 + kBK) of K and V into one buffer pair (rows at or past n_keys are zero)
template <int D, typename KT, typename CT>
__device__ __forceinline__ void stage_kv(CT* sK, CT* sV, const KT* kbase, const KT* vbase, int64_t kvd, int64_t k0,
                                         int64_t n_keys, int tid) {
    constexpr int LD = FlashLayout<D>::LD;
    if constexpr (std::is_same_v<KT, CT>) {
        constexpr int VPR = D / 8;  // 16-byte vectors per row
#pragma unroll
        for (int i = tid; i < kBK * VPR; i += kFlashWarps * 32) {
            const int rr = i / VPR, c = (i % VPR) * 8;
            const int64_t j = k0 + rr;
            const bool in = j < n_keys;
            const int64_t off = in ? j * kvd + c : 0;
            mma::cp_async16(sK + rr * LD + c, kbase + off, in);
            mma::cp_async16(sV + rr * LD + c, vbase + off, in);
        }
    } else {  // f32 cache: convert while staging (synchronous)
        constexpr int VPR = D / 4;
        for (int i = tid; i < kBK * VPR; i += kFlashWarps * 32) {
            const int rr = i / VPR, c = (i % VPR) * 4;
            const int64_t j = k0 + rr;
            float4 kv = make_float4(0, 0, 0, 0), vv = kv;
            if (j < n_keys) {
                kv = *reinterpret_cast<const float4*>(kbase + j * kvd + c);
                vv = *reinterpret_cast<const float4*>(vbase + j * kvd + c);
            }
            uint32_t* dk = reinterpret_cast<uint32_t*>(sK + rr * LD + c);
            uint32_t* dv = reinterpret_cast<uint32_t*>(sV + rr * LD + c);
            dk[0] = mma::pack2<CT>(kv.x, kv.y);
            dk[1] = mma::pack2<CT>(kv.z, kv.w);
            dv[0] = mma::pack2<CT>(vv.x, vv.y);
            dv[1] = mma::pack2<CT>(vv.z, vv.w);
        }
    }
}

template <int D, typename KT, typename OutT>
__global__ void __launch_bounds__(kFlashWarps * 32) flash_prefill_kernel(const float* q, int T, int64_t pos0, int Hq,
                                                                         int Hkv, float scale_log2, const KT* kc,
                                                                         const KT* vc, OutT* out) {
    using CT = std::conditional_t<std::is_same_v<KT, __half>, __half, __nv_bfloat16>;
    using L = FlashLayout<D>;
    constexpr int LD = L::LD;
    extern __shared__ __align__(128) unsigned char smem[];
    CT* sQ = reinterpret_cast<CT*>(smem);
    CT* sK = sQ + kBQ * LD;         // 2 tiles
    CT* sV = sK + 2 * L::tile;      // 2 tiles

    const int qt = gridDim.x - 1 - blockIdx.x;  // longest walks first
    const int h = blockIdx.y, kvh = h / (Hq / Hkv);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, tq = lane & 3;
    const int q0 = qt * kBQ;
    const int64_t kvd = static_cast<int64_t>(Hkv) * D;
    const KT* kbase = kc + kvh * D;
    const KT* vbase = vc + kvh * D;
    const int64_t n_keys = pos0 + min(q0 + kBQ, T);  // keys [0, n_keys) are visible to this block
    const int n_tiles = static_cast<int>((n_keys + kBK - 1) / kBK);

    stage_kv<D, KT, CT>(sK, sV, kbase, vbase, kvd, 0, n_keys, tid);
    mma::cp_async_commit();

    // Q (64 x D), scaled by softmax scale * log2(e), rounded to CT
    for (int i = tid; i < kBQ * D / 4; i += kFlashWarps * 32) {
        const int rr = i / (D / 4), c = (i % (D / 4)) * 4, t = q0 + rr;
        float4 v = make_float4(0, 0, 0, 0);
        if (t < T) v = *reinterpret_cast<const float4*>(q + (static_cast<int64_t>(t) * Hq + h) * D + c);
        uint32_t* d = reinterpret_cast<uint32_t*>(sQ + rr * LD + c);
        d[0] = mma::pack2<CT>(v.x * scale_log2, v.y * scale_log2);
        d[1] = mma::pack2<CT>(v.z * scale_log2, v.w * scale_log2);
    }
    __syncthreads();
    uint32_t qf[D / 16][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk)
        mma::ldmatrix_x4(qf[kk], sQ + (warp * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);

    float o[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    const int64_t qp0 = pos0 + q0 + warp * 16 + g, qp1 = qp0 + 8;  // positions of this thread's two rows

    for (int it = 0; it < n_tiles; ++it) {
        const int buf = it & 1;
        if (it + 1 < n_tiles) {
            stage_kv<D, KT, CT>(sK + (buf ^ 1) * L::tile, sV + (buf ^ 1) * L::tile, kbase, vbase, kvd,
                                static_cast<int64_t>(it + 1) * kBK, n_keys, tid);
            mma::cp_async_commit();
            mma::cp_async_wait<1>();
        } else {
            mma::cp_async_wait<0>();
        }
        __syncthreads();
        const CT* K = sK + buf * L::tile;
        const CT* V = sV + buf * L::tile;
        const int64_t k0 = static_cast<int64_t>(it) * kBK;

        // S (16 x 64) = Q K^T
        float s[kBK / 8][4];
#pragma unroll
        for (int j = 0; j < kBK / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
            for (int np = 0; np < kBK / 16; ++np) {
                uint32_t b[4];
                mma::ldmatrix_x4(b, K + (np * 16 + (lane & 7) + (lane >> 4) * 8) * LD + kk * 16 + ((lane >> 3) & 1) * 8);
                mma::mma_16816<CT>(s[2 * np], qf[kk], b[0], b[1]);
                mma::mma_16816<CT>(s[2 * np + 1], qf[kk], b[2], b[3]);
            }
        }
        // causal mask, only where the tile crosses this warp's diagonal
        if (k0 + kBK - 1 > pos0 + q0 + warp * 16) {
#pragma unroll
            for (int j = 0; j < kBK / 8; ++j) {
                const int64_t key = k0 + 8 * j + 2 * tq;
                if (key > qp0) s[j][0] = -INFINITY;
                if (key + 1 > qp0) s[j][1] = -INFINITY;
                if (key > qp1) s[j][2] = -INFINITY;
                if (key + 1 > qp1) s[j][3] = -INFINITY;
            }
        }
        // online softmax on the fragments (a row's 64 values live in the 4 lanes of a quad)
        float mx0 = m0, mx1 = m1;
#pragma unroll
        for (int j = 0; j < kBK / 8; ++j) {
            mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
            mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        const float b0 = mx0 == -INFINITY ? 0.0f : mx0, b1 = mx1 == -INFINITY ? 0.0f : mx1;
        const float c0 = exp2f(m0 - b0), c1 = exp2f(m1 - b1);
        m0 = mx0;
        m1 = mx1;
        float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
        for (int j = 0; j < kBK / 8; ++j) {
            s[j][0] = exp2f(s[j][0] - b0);
            s[j][1] = exp2f(s[j][1] - b0);
            s[j][2] = exp2f(s[j][2] - b1);
            s[j][3] = exp2f(s[j][3] - b1);
            sum0 += s[j][0] + s[j][1];
            sum1 += s[j][2] + s[j][3];
        }
        l0 = l0 * c0 + sum0;
        l1 = l1 * c1 + sum1;
#pragma unroll
        for (int j = 0; j < D / 8; ++j) {
            o[j][0] *= c0;
            o[j][1] *= c0;
            o[j][2] *= c1;
            o[j][3] *= c1;
        }
        // O (16 x D) += P (16 x 64) V (64 x D)
#pragma unroll
        for (int kk = 0; kk < kBK / 16; ++kk) {
            const uint32_t a[4] = {mma::pack2<CT>(s[2 * kk][0], s[2 * kk][1]), mma::pack2<CT>(s[2 * kk][2], s[2 * kk][3]),
                                   mma::pack2<CT>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                   mma::pack2<CT>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                uint32_t b[4];
                mma::ldmatrix_x4_trans(b, V + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + dp * 16 + (lane >> 4) * 8);
                mma::mma_16816<CT>(o[2 * dp], a, b[0], b[1]);
                mma::mma_16816<CT>(o[2 * dp + 1], a, b[2], b[3]);
            }
        }
        __syncthreads();  // this buffer pair is refilled two tiles on
    }

    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
    const int t0 = q0 + warp * 16 + g, t1 = t0 + 8;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
        const int d = 8 * j + 2 * tq;
        if (t0 < T) store2(out + (static_cast<int64_t>(t0) * Hq + h) * D + d, o[j][0] * inv0, o[j][1] * inv0);
        if (t1 < T) store2(out + (static_cast<int64_t>(t1) * Hq + h) * D + d, o[j][2] * inv1, o[j][3] * inv1);
    }
}

template <int D, typename KT, typename OutT>
void launch_flash(const float* q, int64_t T, int64_t pos0, int64_t Hq, int64_t Hkv, float scale, const KT* k,
                  const KT* v, OutT* out, cudaStream_t stream) {
    constexpr size_t smem = FlashLayout<D>::bytes;
    static const bool attr = [] {
        CUDA_CHECK(cudaFuncSetAttribute(flash_prefill_kernel<D, KT, OutT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem)));
        return true;
    }();
    (void)attr;
    const dim3 grid(ceil_div(T, kBQ), static_cast<unsigned>(Hq));
    const float scale_log2 = scale * 1.4426950408889634f;
    flash_prefill_kernel<D, KT, OutT><<<grid, kFlashWarps * 32, smem, stream>>>(
        q, static_cast<int>(T), pos0, static_cast<int>(Hq), static_cast<int>(Hkv), scale_log2, k, v, out);
    CUDA_CHECK_LAUNCH();
}

}  // namespace

bool attention_prefill_supported(int64_t D) { return D == 64 || D == 128; }

void attention_prefill_cuda(const float* q, int64_t T, int64_t pos0, int64_t Hq, int64_t Hkv, int64_t D, float scale,
                            KvView kv, int seq, void* out, DType out_dtype, cudaStream_t stream) {
    if (T <= 0) return;
    if (!attention_prefill_supported(D)) fail_rt("attention_prefill_cuda: head_dim {} not supported (64, 128)", D);
    if (Hq % Hkv) fail_rt("attention: {} query heads are not a multiple of {} kv heads", Hq, Hkv);
    const int64_t off = static_cast<int64_t>(seq) * kv.capacity * Hkv * D;
    dispatch_float(kv.dtype, [&](auto* kp) {
        using KT = std::remove_pointer_t<decltype(kp)>;
        const KT* k = static_cast<const KT*>(kv.k) + off;
        const KT* v = static_cast<const KT*>(kv.v) + off;
        dispatch_float(out_dtype, [&](auto* op) {
            using OT = std::remove_pointer_t<decltype(op)>;
            if (D == 64) launch_flash<64, KT, OT>(q, T, pos0, Hq, Hkv, scale, k, v, static_cast<OT*>(out), stream);
            else launch_flash<128, KT, OT>(q, T, pos0, Hq, Hkv, scale, k, v, static_cast<OT*>(out), stream);
        });
    });
}

}  // namespace lmscope::cuda
