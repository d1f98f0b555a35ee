// CUDA element-wise and row ops: embedding, RMSNorm, RoPE, q/k norm + RoPE + KV-cache write,
// SwiGLU, bias, casts, argmax. Beside ops/ref/*.cpp and ops/cpu/elementwise.cpp; tests in
// tests/unit/test_cuda_ops.cpp. One block (or warp) per row; f32 math.
#include <algorithm>
#include <type_traits>

#include "cuda/common.cuh"
#include "ops/cuda/ops_cuda.h"

namespace lmscope::cuda {

namespace {

template <typename T>
__global__ void embedding_kernel(const int32_t* ids, const T* table, int64_t H, float* out) {
    asm volatile("griddepcontrol.launch_dependents;");
    const int64_t t = blockIdx.x;
    const T* row = table + static_cast<int64_t>(ids[t]) * H;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) out[t * H + i] = to_f32(row[i]);
}

// 4 consecutive f32 -> OutT, one store (16 bytes for f32, 8 for 16-bit types)
template <typename OutT>
__device__ __forceinline__ void store4(OutT* p, float4 v) {
    if constexpr (std::is_same_v<OutT, float>) {
        *reinterpret_cast<float4*>(p) = v;
    } else {
        OutT o[4] = {from_f32<OutT>(v.x), from_f32<OutT>(v.y), from_f32<OutT>(v.z), from_f32<OutT>(v.w)};
        *reinterpret_cast<uint2*>(p) = *reinterpret_cast<const uint2*>(o);
    }
}

// C % 4 == 0, C <= 4 * kCached * blockDim.x: one float4 load per element group, kept in registers
// between the sum of squares and the store (one pass over x)
constexpr int kNormCached = 4;
template <typename OutT>
__global__ void rms_norm_vec_kernel(const float* x, int64_t C, const float* w, float eps, OutT* y) {
    const int64_t r = blockIdx.x;
    const float4* xr = reinterpret_cast<const float4*>(x + r * C);
    const int n4 = static_cast<int>(C / 4);
    float4 v[kNormCached];
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < kNormCached; ++k) {
        const int i = threadIdx.x + k * blockDim.x;
        v[k] = i < n4 ? xr[i] : make_float4(0, 0, 0, 0);
        ss += v[k].x * v[k].x + v[k].y * v[k].y + v[k].z * v[k].z + v[k].w * v[k].w;
    }
    const float inv = rsqrtf(block_sum(ss) / static_cast<float>(C) + eps);
#pragma unroll
    for (int k = 0; k < kNormCached; ++k) {
        const int i = threadIdx.x + k * blockDim.x;
        if (i >= n4) break;
        const float4 g = w ? reinterpret_cast<const float4*>(w)[i] : make_float4(1, 1, 1, 1);
        store4(y + r * C + 4 * i, make_float4(v[k].x * inv * g.x, v[k].y * inv * g.y, v[k].z * inv * g.z, v[k].w * inv * g.w));
    }
}

template <typename OutT>
__global__ void rms_norm_kernel(const float* x, int64_t C, const float* w, float eps, OutT* y) {
    const int64_t r = blockIdx.x;
    const float* xr = x + r * C;
    float ss = 0;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss);
    const float inv = rsqrtf(ss / static_cast<float>(C) + eps);
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
        const float v = xr[i] * inv;
        y[r * C + i] = from_f32<OutT>(w ? v * w[i] : v);
    }
}

__global__ void rope_kernel(float* x, int64_t H, int64_t D, const float* cos, const float* sin) {
    const int64_t t = blockIdx.x, half = D / 2;
    for (int64_t j = threadIdx.x; j < H * half; j += blockDim.x) {
        const int64_t h = j / half, i = j % half;
        float* p = x + (t * H + h) * D;
        const float c = cos[t * half + i], s = sin[t * half + i];
        const float a = p[i], b = p[i + half];
        p[i] = a * c - b * s;
        p[i + half] = b * c + a * s;
    }
}

__global__ void softcap_kernel(const float* x, int64_t n, float cap, float* out) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        out[i] = cap * tanhf(x[i] / cap);
}

__global__ void silu_mul_kernel(const float* g, const float* u, int64_t n, float* out) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const float a = g[i];
        out[i] = a / (1.0f + expf(-a)) * u[i];
    }
}

// 16-bit T, I % 8 == 0: 8 gates and 8 ups per thread, 16-byte loads and store
template <typename T>
__global__ void silu_mul_rows8_kernel(const T* gu, int64_t T_, int64_t I, T* out) {
    const int64_t i8 = I / 8, n = T_ * i8;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t t = i / i8, c = (i % i8) * 8;
        const uint4 graw = *reinterpret_cast<const uint4*>(gu + t * 2 * I + c);
        const uint4 uraw = *reinterpret_cast<const uint4*>(gu + t * 2 * I + I + c);
        const T* g = reinterpret_cast<const T*>(&graw);
        const T* u = reinterpret_cast<const T*>(&uraw);
        alignas(16) T o[8];
#pragma unroll
        for (int e = 0; e < 8; ++e) {
            const float a = to_f32(g[e]);
            o[e] = from_f32<T>(a / (1.0f + expf(-a)) * to_f32(u[e]));
        }
        *reinterpret_cast<uint4*>(out + t * I + c) = *reinterpret_cast<const uint4*>(o);
    }
}

template <typename T>
__global__ void silu_mul_rows_kernel(const T* gu, int64_t T_, int64_t I, T* out) {
    const int64_t n = T_ * I;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t t = i / I, c = i % I;
        const float a = to_f32(gu[t * 2 * I + c]), b = to_f32(gu[t * 2 * I + I + c]);
        out[i] = from_f32<T>(a / (1.0f + expf(-a)) * b);
    }
}

__global__ void add_bias_kernel(float* y, int64_t R, int64_t C, const float* b) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < R * C; i += int64_t(gridDim.x) * blockDim.x)
        y[i] += b[i % C];
}

template <typename T>
__global__ void cast_kernel(const float* x, int64_t n, T* y) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        y[i] = from_f32<T>(x[i]);
}

// (orderable float bits << 32) | ~index: the max key is the largest value, lowest index on ties
__device__ __forceinline__ unsigned long long argmax_key(float v, int64_t i) {
    const unsigned u = __float_as_uint(v);
    const unsigned o = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return (static_cast<unsigned long long>(o) << 32) | static_cast<unsigned>(~static_cast<unsigned>(i));
}

__global__ void argmax_partial_kernel(const float* x, int64_t V, unsigned long long* best) {
    const int64_t r = blockIdx.y;
    const float* row = x + r * V;
    unsigned long long k = 0;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < V; i += int64_t(gridDim.x) * blockDim.x) {
        const float v = row[i];
        if (v == v) k = max(k, argmax_key(v, i));  // NaN never wins
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) k = max(k, __shfl_xor_sync(0xffffffffu, k, o));
    if ((threadIdx.x & 31) == 0 && k) atomicMax(best + r, k);
}

__global__ void argmax_final_kernel(unsigned long long* best, int64_t R, int32_t* out) {
    const int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    if (r >= R) return;
    const unsigned long long k = best[r];
    out[r] = k ? static_cast<int32_t>(~static_cast<unsigned>(k & 0xffffffffu)) : 0;
    best[r] = 0;  // ready for the next call (graph replays)
}

// Block (row, group of kRopeWarps heads): the row's D/2 RoPE angles first (cos/sin in double, as
// rope_cos_sin; one per thread, not one per element), then a warp per head of q, k and v: [bias],
// [RMSNorm over D], RoPE (q, k); q -> q buffer, k, v -> cache. The head's D values pass through
// shared memory so rotate-half pairs any lanes.
constexpr int kRopeWarps = 4;

template <typename KT>
__global__ void __launch_bounds__(kRopeWarps * 32)
    qkv_rope_cache_kernel(const float* qkv, const float* bias, int64_t Hq, int64_t Hkv, int64_t D, const float* q_norm,
                          const float* k_norm, float eps, const float* inv_freq, RowPos rows, float* q, KT* kc, KT* vc,
                          int64_t capacity) {
    extern __shared__ float sh[];  // cos (D/2), sin (D/2), then (warps, D)
    asm volatile("griddepcontrol.launch_dependents;");
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t H = Hq + 2 * Hkv, half = D / 2;
    const int64_t r = blockIdx.x, h = static_cast<int64_t>(blockIdx.y) * kRopeWarps + warp;
    const int64_t pos = row_pos(rows, r);
    const int64_t seq = row_seq(rows, r);
    float* cs = sh;
    float* sn = sh + half;
    const float fpos = static_cast<float>(pos);
    for (int64_t j = threadIdx.x; j < half; j += blockDim.x) {
        const float angle = __fmul_rn(fpos, inv_freq[j]);  // f32 product, as torch
        double sd, cd;
        sincos(static_cast<double>(angle), &sd, &cd);
        cs[j] = static_cast<float>(cd);
        sn[j] = static_cast<float>(sd);
    }
    __syncthreads();
    float* buf = sh + D + warp * D;
    const int64_t kvd = Hkv * D;
    if (h < H) {
        const float* src = qkv + r * H * D + h * D;
        float ss = 0;
        for (int64_t i = lane; i < D; i += 32) {
            const float v = src[i] + (bias ? bias[h * D + i] : 0.0f);
            buf[i] = v;
            ss += v * v;
        }
        ss = warp_sum(ss);
        if (h >= Hq + Hkv) {  // v: straight to the cache
            KT* dst = vc + (seq * capacity + pos) * kvd + (h - Hq - Hkv) * D;
            for (int64_t i = lane; i < D; i += 32) dst[i] = from_f32<KT>(buf[i]);
            return;
        }
        const float* nw = h < Hq ? q_norm : k_norm;
        if (nw) {
            const float inv = rsqrtf(ss / static_cast<float>(D) + eps);
            for (int64_t i = lane; i < D; i += 32) buf[i] = buf[i] * inv * nw[i];
        }
        __syncwarp();
        float outv[8];  // D <= 256
        int n = 0;
        for (int64_t i = lane; i < D; i += 32, ++n) {
            const int64_t j = i < half ? i : i - half;
            outv[n] = i < half ? buf[i] * cs[j] - buf[i + half] * sn[j] : buf[i] * cs[j] + buf[i - half] * sn[j];
        }
        n = 0;
        if (h < Hq) {
            float* dst = q + (r * Hq + h) * D;
            for (int64_t i = lane; i < D; i += 32, ++n) dst[i] = outv[n];
        } else {
            KT* dst = kc + (seq * capacity + pos) * kvd + (h - Hq) * D;
            for (int64_t i = lane; i < D; i += 32, ++n) dst[i] = from_f32<KT>(outv[n]);
        }
    }
}

unsigned grid_for(int64_t n, int threads) { return static_cast<unsigned>(std::min<int64_t>((n + threads - 1) / threads, 65535 * 4)); }

}  // namespace

void embedding_cuda(const int32_t* ids, int64_t T, DeviceTensor table, int64_t H, float* out, cudaStream_t stream) {
    if (T <= 0) return;
    dispatch_float(table.dtype, [&](auto* tp) {
        using TT = std::remove_pointer_t<decltype(tp)>;
        embedding_kernel<TT><<<static_cast<unsigned>(T), 256, 0, stream>>>(ids, static_cast<const TT*>(table.data), H, out);
    });
    CUDA_CHECK_LAUNCH();
}

void rms_norm_cuda(const float* x, int64_t R, int64_t C, const float* weight, float eps, void* y, DType y_dtype,
                   cudaStream_t stream) {
    if (R <= 0) return;
    const int threads = C >= 1024 ? 1024 : (C >= 256 ? 256 : 128);
    const bool vec = C % 4 == 0 && C <= 4 * kNormCached * 1024 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                     reinterpret_cast<uintptr_t>(y) % 16 == 0 && reinterpret_cast<uintptr_t>(weight) % 16 == 0;
    // vector path: enough threads that each holds at most kNormCached float4 (a multiple of 32)
    const int vthreads = static_cast<int>(std::min<int64_t>(1024, ((C / 4 + kNormCached - 1) / kNormCached + 31) / 32 * 32));
    dispatch_float(y_dtype, [&](auto* tp) {
        using OT = std::remove_pointer_t<decltype(tp)>;
        if (vec)
            rms_norm_vec_kernel<OT><<<static_cast<unsigned>(R), vthreads, 0, stream>>>(x, C, weight, eps, static_cast<OT*>(y));
        else
            rms_norm_kernel<OT><<<static_cast<unsigned>(R), threads, 0, stream>>>(x, C, weight, eps, static_cast<OT*>(y));
    });
    CUDA_CHECK_LAUNCH();
}

void rope_cuda(float* x, int64_t T, int64_t H, int64_t D, const float* cos, const float* sin, cudaStream_t stream) {
    if (T <= 0) return;
    rope_kernel<<<static_cast<unsigned>(T), 256, 0, stream>>>(x, H, D, cos, sin);
    CUDA_CHECK_LAUNCH();
}

void silu_mul_cuda(const float* gate, const float* up, int64_t n, float* out, cudaStream_t stream) {
    if (n <= 0) return;
    silu_mul_kernel<<<grid_for(n, 256), 256, 0, stream>>>(gate, up, n, out);
    CUDA_CHECK_LAUNCH();
}

void silu_mul_rows_cuda(const void* gu, int64_t T, int64_t I, void* out, DType dtype, cudaStream_t stream) {
    if (T * I <= 0) return;
    dispatch_float(dtype, [&](auto* tp) {
        using TT = std::remove_pointer_t<decltype(tp)>;
        const bool vec = sizeof(TT) == 2 && I % 8 == 0 && reinterpret_cast<uintptr_t>(gu) % 16 == 0 &&
                         reinterpret_cast<uintptr_t>(out) % 16 == 0;
        if (vec)
            silu_mul_rows8_kernel<TT><<<grid_for(T * I / 8, 256), 256, 0, stream>>>(static_cast<const TT*>(gu), T, I,
                                                                                  static_cast<TT*>(out));
        else
            silu_mul_rows_kernel<TT><<<grid_for(T * I, 256), 256, 0, stream>>>(static_cast<const TT*>(gu), T, I,
                                                                              static_cast<TT*>(out));
    });
    CUDA_CHECK_LAUNCH();
}

void softcap_cuda(const float* x, int64_t n, float cap, float* out, cudaStream_t stream) {
    if (n <= 0) return;
    softcap_kernel<<<grid_for(n, 256), 256, 0, stream>>>(x, n, cap, out);
    CUDA_CHECK_LAUNCH();
}

void add_bias_cuda(float* y, int64_t R, int64_t C, const float* bias, cudaStream_t stream) {
    if (R * C <= 0) return;
    add_bias_kernel<<<grid_for(R * C, 256), 256, 0, stream>>>(y, R, C, bias);
    CUDA_CHECK_LAUNCH();
}

void cast_cuda(const float* x, int64_t n, void* y, DType dtype, cudaStream_t stream) {
    if (n <= 0) return;
    dispatch_float(dtype, [&](auto* tp) {
        using TT = std::remove_pointer_t<decltype(tp)>;
        cast_kernel<TT><<<grid_for(n, 256), 256, 0, stream>>>(x, n, static_cast<TT*>(y));
    });
    CUDA_CHECK_LAUNCH();
}

void argmax_cuda(const float* x, int64_t R, int64_t V, int32_t* out, cudaStream_t stream) {
    if (R <= 0) return;
    // per-row scratch, zero between calls (the final kernel resets it); allocated on first use,
    // which is outside graph capture (the decoder's first step runs eagerly)
    static DeviceBuffer scratch;
    if (scratch.size() < static_cast<size_t>(R) * 8) {
        CUDA_CHECK(cudaDeviceSynchronize());
        scratch.resize(static_cast<size_t>(std::max<int64_t>(R, 4096)) * 8);
        CUDA_CHECK(cudaMemset(scratch.get(), 0, scratch.size()));
    }
    auto* best = scratch.get<unsigned long long>();
    const unsigned blocks = static_cast<unsigned>(std::clamp<int64_t>(V / 4096, 1, 128));
    argmax_partial_kernel<<<dim3(blocks, static_cast<unsigned>(R)), 256, 0, stream>>>(x, V, best);
    CUDA_CHECK_LAUNCH();
    argmax_final_kernel<<<ceil_div(R, 128), 128, 0, stream>>>(best, R, out);
    CUDA_CHECK_LAUNCH();
}

void qkv_rope_cache_cuda(const float* qkv, const float* bias, int64_t T, int64_t Hq, int64_t Hkv, int64_t D,
                         const float* q_norm, const float* k_norm, float eps, const float* inv_freq, RowPos rows,
                         float* q, KvView kv, cudaStream_t stream) {
    if (T <= 0) return;
    if (D % 2 || D > 256) cuda_fail("head_dim must be even and <= 256", "qkv_rope_cache_cuda", __FILE__, __LINE__);
    const size_t smem = sizeof(float) * static_cast<size_t>(D) * (1 + kRopeWarps);
    dispatch_float(kv.dtype, [&](auto* tp) {
        using KT = std::remove_pointer_t<decltype(tp)>;
        const dim3 grid(static_cast<unsigned>(T), ceil_div(Hq + 2 * Hkv, kRopeWarps));
        qkv_rope_cache_kernel<KT><<<grid, kRopeWarps * 32, smem, stream>>>(
            qkv, bias, Hq, Hkv, D, q_norm, k_norm, eps, inv_freq, rows, q, static_cast<KT*>(kv.k), static_cast<KT*>(kv.v),
            kv.capacity);
    });
    CUDA_CHECK_LAUNCH();
}

}  // namespace lmscope::cuda
