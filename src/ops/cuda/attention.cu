// CUDA attention over the KV cache (causal, GQA), beside ops/ref/attention.cpp and ops/cpu/attention.cpp.
//   decode  (attention_decode_cuda): one query row per block-row; keys split into chunks across
//           blocks (split-K), each warp an online softmax over its keys, warps merged in shared
//           memory, splits merged by a second kernel. Positions may be read on the device (graphs).
//   prefill (attention_prefill_cuda): flash-attention tiles, 64 queries x 64 keys, S = Q K^T and
//           O += P V on bf16 tensor cores (wmma 16x16x16, f32 accumulate), online softmax in f32;
//           the (T, T) scores never exist in memory. Each warp owns 16 query rows.
#include <mma.h>

#include <type_traits>

#include "cuda/common.cuh"
#include "ops/cuda/ops_cuda.h"

namespace lmscope::cuda {

namespace {

constexpr int kDecodeWarps = 4;
constexpr int kMaxSplits = 64;
constexpr int kMinChunk = 64;

template <typename KT, int EPL, typename OutT>
__global__ void __launch_bounds__(kDecodeWarps * 32)
    attn_decode_kernel(const float* q, int Hq, int Hkv, int D, float scale, const KT* kc, const KT* vc, int64_t capacity,
                       RowPos rows, int chunk, int nsplit, float* work, OutT* out) {
    constexpr int DM = EPL * 32;  // D <= DM; lanes past D hold zeros
    asm volatile("griddepcontrol.launch_dependents;");  // the next GEMV may start prefetching weights
    const int h = blockIdx.x, r = blockIdx.y, sp = blockIdx.z;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t S = row_pos(rows, r) + 1, seq = row_seq(rows, r);
    const int64_t start = static_cast<int64_t>(sp) * chunk, end = min(S, start + chunk);
    const int kvh = h / (Hq / Hkv);
    const int64_t kvd = static_cast<int64_t>(Hkv) * D;
    const KT* kbase = kc + seq * capacity * kvd + kvh * D;
    const KT* vbase = vc + seq * capacity * kvd + kvh * D;

    float qv[EPL], acc[EPL];
#pragma unroll
    for (int e = 0; e < EPL; ++e) {
        qv[e] = lane + 32 * e < D ? q[(static_cast<int64_t>(r) * Hq + h) * D + lane + 32 * e] * scale : 0.0f;
        acc[e] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int64_t j = start + warp; j < end; j += kDecodeWarps) {
        const KT* kr = kbase + j * kvd;
        const KT* vr = vbase + j * kvd;
        float s = 0, vv[EPL];
#pragma unroll
        for (int e = 0; e < EPL; ++e) {
            const bool in = lane + 32 * e < D;
            s += in ? qv[e] * to_f32(kr[lane + 32 * e]) : 0.0f;
            vv[e] = in ? to_f32(vr[lane + 32 * e]) : 0.0f;
        }
        s = warp_sum(s);
        const float mn = fmaxf(m, s);
        const float corr = expf(m - mn), p = expf(s - mn);
        l = l * corr + p;
#pragma unroll
        for (int e = 0; e < EPL; ++e) acc[e] = acc[e] * corr + p * vv[e];
        m = mn;
    }
    __shared__ float sm[kDecodeWarps], sl[kDecodeWarps], so[kDecodeWarps][DM];
    if (lane == 0) { sm[warp] = m; sl[warp] = l; }
#pragma unroll
    for (int e = 0; e < EPL; ++e) so[warp][lane + 32 * e] = acc[e];
    __syncthreads();
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) M = fmaxf(M, sm[w]);
    float L = 0.0f;
    if (M != -INFINITY)
        for (int w = 0; w < kDecodeWarps; ++w) L += sl[w] * expf(sm[w] - M);
    const int64_t item = (static_cast<int64_t>(r) * Hq + h) * nsplit + sp;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float o = 0.0f;
        if (M != -INFINITY)
            for (int w = 0; w < kDecodeWarps; ++w) o += so[w][d] * expf(sm[w] - M);
        if (nsplit == 1) {
            out[(static_cast<int64_t>(r) * Hq + h) * D + d] = from_f32<OutT>(o / L);
        } else {
            work[item * (D + 2) + 2 + d] = o;
        }
    }
    if (nsplit > 1 && threadIdx.x == 0) {
        work[item * (D + 2)] = M;
        work[item * (D + 2) + 1] = L;
    }
}

template <typename OutT>
__global__ void attn_combine_kernel(int Hq, int D, int nsplit, const float* work, OutT* out) {
    asm volatile("griddepcontrol.launch_dependents;");
    const int h = blockIdx.x, r = blockIdx.y;
    const float* base = work + (static_cast<int64_t>(r) * Hq + h) * nsplit * (D + 2);
    float M = -INFINITY;
    for (int s = 0; s < nsplit; ++s) M = fmaxf(M, base[s * (D + 2)]);
    float L = 0.0f;
    for (int s = 0; s < nsplit; ++s) {
        const float ms = base[s * (D + 2)];
        if (ms != -INFINITY) L += base[s * (D + 2) + 1] * expf(ms - M);
    }
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < nsplit; ++s) {
            const float ms = base[s * (D + 2)];
            if (ms != -INFINITY) o += base[s * (D + 2) + 2 + d] * expf(ms - M);
        }
        out[(static_cast<int64_t>(r) * Hq + h) * D + d] = from_f32<OutT>(o / L);
    }
}

template <typename KT, typename OutT>
void launch_decode(const float* q, int64_t R, int64_t Hq, int64_t Hkv, int64_t D, float scale, KvView kv, RowPos rows,
                   int64_t max_len, float* work, void* out, cudaStream_t stream) {
    const int nsplit = attention_decode_splits(R, Hq, max_len);
    const int chunk = static_cast<int>((max_len + nsplit - 1) / nsplit);
    const dim3 grid(static_cast<unsigned>(Hq), static_cast<unsigned>(R), static_cast<unsigned>(nsplit));
    const auto* k = static_cast<const KT*>(kv.k);
    const auto* v = static_cast<const KT*>(kv.v);
    auto* o = static_cast<OutT*>(out);
    const int hq = static_cast<int>(Hq), hkv = static_cast<int>(Hkv);
    const int d = static_cast<int>(D);
#define LMS_DECODE(EPL_) attn_decode_kernel<KT, EPL_, OutT><<<grid, kDecodeWarps * 32, 0, stream>>>(q, hq, hkv, d, scale, k, v, kv.capacity, rows, chunk, nsplit, work, o)
    if (D % 2 || D > 256) fail_rt("attention_decode_cuda: head_dim {} not supported (even, <= 256)", D);
    if (D <= 32) LMS_DECODE(1);
    else if (D <= 64) LMS_DECODE(2);
    else if (D <= 96) LMS_DECODE(3);
    else if (D <= 128) LMS_DECODE(4);
    else LMS_DECODE(8);
#undef LMS_DECODE
    CUDA_CHECK_LAUNCH();
    if (nsplit > 1) {
        attn_combine_kernel<OutT><<<dim3(static_cast<unsigned>(Hq), static_cast<unsigned>(R)), 128, 0, stream>>>(
            hq, static_cast<int>(D), nsplit, work, o);
        CUDA_CHECK_LAUNCH();
    }
}

// ---------------- flash prefill (wmma bf16) ----------------
namespace wmma = nvcuda::wmma;
using bf16 = __nv_bfloat16;
constexpr int kBQ = 64, kBK = 64;

template <int D>
struct FlashSmem {
    static constexpr int LDB = D + 8, LDS = kBK + 4, LDP = kBK + 8, LDO = D + 4;
    static constexpr size_t q = 0, k = q + sizeof(bf16) * kBQ * LDB, v = k + sizeof(bf16) * kBK * LDB,
                            s = v + sizeof(bf16) * kBK * LDB, p = s + sizeof(float) * kBQ * LDS,
                            o = p + sizeof(bf16) * kBQ * LDP, m = o + sizeof(float) * kBQ * LDO,
                            l = m + sizeof(float) * kBQ, bytes = l + sizeof(float) * kBQ;
};

// 8 f16 -> 8 bf16 (through f32, as the scalar path: one rounding)
__device__ __forceinline__ uint4 half8_to_bf16(const uint4& v) {
    const __half2* h = reinterpret_cast<const __half2*>(&v);
    uint4 r;
    __nv_bfloat162* b = reinterpret_cast<__nv_bfloat162*>(&r);
#pragma unroll
    for (int i = 0; i < 4; ++i) b[i] = __float22bfloat162_rn(__half22float2(h[i]));
    return r;
}

template <int D, typename KT, typename OutT>
__global__ void __launch_bounds__(128) flash_prefill_kernel(const float* q, int T, int64_t pos0, int Hq, int Hkv,
                                                            float scale, const KT* kc, const KT* vc, OutT* out) {
    using SM = FlashSmem<D>;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16* sQ = reinterpret_cast<bf16*>(smem + SM::q);
    bf16* sK = reinterpret_cast<bf16*>(smem + SM::k);
    bf16* sV = reinterpret_cast<bf16*>(smem + SM::v);
    float* sS = reinterpret_cast<float*>(smem + SM::s);
    bf16* sP = reinterpret_cast<bf16*>(smem + SM::p);
    float* sO = reinterpret_cast<float*>(smem + SM::o);
    float* sM = reinterpret_cast<float*>(smem + SM::m);
    float* sL = reinterpret_cast<float*>(smem + SM::l);

    const int qt = gridDim.x - 1 - blockIdx.x;  // longest tiles first
    const int h = blockIdx.y, kvh = h / (Hq / Hkv);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int q0 = qt * kBQ;
    const int64_t kvd = static_cast<int64_t>(Hkv) * D;

    for (int i = tid; i < kBQ * D; i += blockDim.x) {
        const int rr = i / D, d = i % D, t = q0 + rr;
        const float v = t < T ? q[(static_cast<int64_t>(t) * Hq + h) * D + d] * scale : 0.0f;
        sQ[rr * SM::LDB + d] = __float2bfloat16_rn(v);
    }
    for (int i = tid; i < kBQ * SM::LDO; i += blockDim.x) sO[i] = 0.0f;
    for (int i = tid; i < kBQ; i += blockDim.x) { sM[i] = -INFINITY; sL[i] = 0.0f; }

    const int64_t kv_end = pos0 + min(q0 + kBQ, T);  // keys [0, kv_end)
    const int row = 16 * warp + (lane >> 1), half = lane & 1;
    const int64_t qpos = pos0 + q0 + row;
    for (int64_t k0 = 0; k0 < kv_end; k0 += kBK) {
        __syncthreads();  // previous tile fully used (and the initial fill done)
        if constexpr (std::is_same_v<KT, bf16>) {
            constexpr int VPR = D / 8;  // 16-byte vectors per row
            for (int i = tid; i < kBK * VPR; i += blockDim.x) {
                const int rr = i / VPR, c = (i % VPR) * 8;
                const int64_t j = k0 + rr;
                uint4 kv4 = make_uint4(0, 0, 0, 0), vv4 = make_uint4(0, 0, 0, 0);
                if (j < kv_end) {
                    kv4 = *reinterpret_cast<const uint4*>(kc + j * kvd + kvh * D + c);
                    vv4 = *reinterpret_cast<const uint4*>(vc + j * kvd + kvh * D + c);
                }
                *reinterpret_cast<uint4*>(sK + rr * SM::LDB + c) = kv4;
                *reinterpret_cast<uint4*>(sV + rr * SM::LDB + c) = vv4;
            }
        } else if constexpr (std::is_same_v<KT, __half>) {  // f16 cache (f16 models): 8 values per load -> bf16
            constexpr int VPR = D / 8;
            for (int i = tid; i < kBK * VPR; i += blockDim.x) {
                const int rr = i / VPR, c = (i % VPR) * 8;
                const int64_t j = k0 + rr;
                uint4 kv4 = make_uint4(0, 0, 0, 0), vv4 = make_uint4(0, 0, 0, 0);
                if (j < kv_end) {
                    kv4 = *reinterpret_cast<const uint4*>(kc + j * kvd + kvh * D + c);
                    vv4 = *reinterpret_cast<const uint4*>(vc + j * kvd + kvh * D + c);
                }
                *reinterpret_cast<uint4*>(sK + rr * SM::LDB + c) = half8_to_bf16(kv4);
                *reinterpret_cast<uint4*>(sV + rr * SM::LDB + c) = half8_to_bf16(vv4);
            }
        } else {
            for (int i = tid; i < kBK * D; i += blockDim.x) {
                const int rr = i / D, d = i % D;
                const int64_t j = k0 + rr;
                const bool in = j < kv_end;
                sK[rr * SM::LDB + d] = __float2bfloat16_rn(in ? to_f32(kc[j * kvd + kvh * D + d]) : 0.0f);
                sV[rr * SM::LDB + d] = __float2bfloat16_rn(in ? to_f32(vc[j * kvd + kvh * D + d]) : 0.0f);
            }
        }
        __syncthreads();

        // S (this warp's 16 rows x 64 keys) = Q K^T
#pragma unroll
        for (int n = 0; n < kBK / 16; ++n) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> b;
                wmma::load_matrix_sync(a, sQ + 16 * warp * SM::LDB + kk * 16, SM::LDB);
                wmma::load_matrix_sync(b, sK + 16 * n * SM::LDB + kk * 16, SM::LDB);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(sS + 16 * warp * SM::LDS + 16 * n, acc, SM::LDS, wmma::mem_row_major);
        }
        __syncwarp();

        // online softmax: two lanes per row, 32 keys each
        float mx = -INFINITY;
        for (int c = half * 32; c < half * 32 + 32; ++c) {
            const int64_t key = k0 + c;
            if (key <= qpos && key < kv_end) mx = fmaxf(mx, sS[row * SM::LDS + c]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        const float m_old = sM[row];
        const float m_new = fmaxf(m_old, mx);
        const float base = m_new == -INFINITY ? 0.0f : m_new;
        float sum = 0.0f;
        for (int c = half * 32; c < half * 32 + 32; ++c) {
            const int64_t key = k0 + c;
            const float p = (key <= qpos && key < kv_end) ? __expf(sS[row * SM::LDS + c] - base) : 0.0f;
            sP[row * SM::LDP + c] = __float2bfloat16_rn(p);
            sum += p;
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        const float corr = __expf(m_old - base);
        for (int d = half * (D / 2); d < half * (D / 2) + D / 2; ++d) sO[row * SM::LDO + d] *= corr;
        __syncwarp();
        if (half == 0) {
            sL[row] = sL[row] * corr + sum;
            sM[row] = m_new;
        }
        __syncwarp();

        // O (16 rows x D) += P (16 x 64) V (64 x D)
#pragma unroll
        for (int n = 0; n < D / 16; ++n) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::load_matrix_sync(acc, sO + 16 * warp * SM::LDO + 16 * n, SM::LDO, wmma::mem_row_major);
#pragma unroll
            for (int kk = 0; kk < kBK / 16; ++kk) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> b;
                wmma::load_matrix_sync(a, sP + 16 * warp * SM::LDP + kk * 16, SM::LDP);
                wmma::load_matrix_sync(b, sV + 16 * kk * SM::LDB + 16 * n, SM::LDB);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(sO + 16 * warp * SM::LDO + 16 * n, acc, SM::LDO, wmma::mem_row_major);
        }
    }
    __syncthreads();
    for (int i = tid; i < kBQ * D; i += blockDim.x) {
        const int rr = i / D, d = i % D, t = q0 + rr;
        if (t < T) out[(static_cast<int64_t>(t) * Hq + h) * D + d] = from_f32<OutT>(sO[rr * SM::LDO + d] / sL[rr]);
    }
}

template <int D, typename KT, typename OutT>
void launch_flash(const float* q, int64_t T, int64_t pos0, int64_t Hq, int64_t Hkv, float scale, const KT* k,
                  const KT* v, OutT* out, cudaStream_t stream) {
    constexpr size_t smem = FlashSmem<D>::bytes;
    static bool attr = [] {
        CUDA_CHECK(cudaFuncSetAttribute(flash_prefill_kernel<D, KT, OutT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem)));
        return true;
    }();
    (void)attr;
    const dim3 grid(ceil_div(T, kBQ), static_cast<unsigned>(Hq));
    flash_prefill_kernel<D, KT, OutT><<<grid, 128, smem, stream>>>(q, static_cast<int>(T), pos0, static_cast<int>(Hq),
                                                                   static_cast<int>(Hkv), scale, k, v, out);
    CUDA_CHECK_LAUNCH();
}

}  // namespace

int attention_decode_splits(int64_t R, int64_t Hq, int64_t max_len) {
    // split only as far as needed to give every SM a few blocks
    const int64_t want = std::max<int64_t>(1, 1024 / std::max<int64_t>(1, R * Hq));
    return static_cast<int>(std::clamp<int64_t>(std::min((max_len + kMinChunk - 1) / kMinChunk, want), 1, kMaxSplits));
}

size_t attention_decode_workspace(int64_t R, int64_t Hq, int64_t D, int64_t max_len) {
    return static_cast<size_t>(R * Hq * attention_decode_splits(R, Hq, max_len) * (D + 2));
}

void attention_decode_cuda(const float* q, int64_t R, int64_t Hq, int64_t Hkv, int64_t D, float scale, KvView kv,
                           RowPos rows, int64_t max_len, float* work, void* out, DType out_dtype, cudaStream_t stream) {
    if (R <= 0) return;
    if (Hq % Hkv) fail_rt("attention: {} query heads are not a multiple of {} kv heads", Hq, Hkv);
    dispatch_float(kv.dtype, [&](auto* kp) {
        using KT = std::remove_pointer_t<decltype(kp)>;
        dispatch_float(out_dtype, [&](auto* op) {
            using OT = std::remove_pointer_t<decltype(op)>;
            launch_decode<KT, OT>(q, R, Hq, Hkv, D, scale, kv, rows, max_len, work, out, stream);
        });
    });
}

void attention_cuda(const float* q, const float* k, const float* v, const AttentionShape& s, float* out,
                    cudaStream_t stream) {
    if (s.T <= 0) return;
    const int64_t S = s.pos0 + s.T;
    static DeviceBuffer work;
    const size_t need = attention_decode_workspace(s.T, s.Hq, s.D, S) * sizeof(float);
    if (work.size() < need) {
        CUDA_CHECK(cudaStreamSynchronize(stream));
        work.resize(need);
    }
    KvView kv{const_cast<float*>(k), const_cast<float*>(v), DType::F32, S};
    RowPos rows;
    rows.pos0 = s.pos0;
    attention_decode_cuda(q, s.T, s.Hq, s.Hkv, s.D, s.scale, kv, rows, S, work.get<float>(), out, DType::F32, stream);
}

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
