// Small-batch GEMM on quantized weights (batched decode, 8 < T <= 64): y (T, out) (+)= x (T, in) W^T + b,
// x 16-bit (T16 = bf16 / f16, the GEMM path's activations), tensor cores (wmma m16n16k16, f32
// accumulation), the FP8 / AWQ weight read ONCE (dequantise-then-cuBLAS reads 1 or 0.5 byte, writes 2
// and reads 2 again per weight: 2.5x to 9x the bytes at these T, where the GEMM is bandwidth-bound).
// A block owns 64 output rows (4 warps x 16); per K step of 128 it dequantises the 64 x 128 weight tile
// into shared memory (FP8: four 16-byte loads per thread, AWQ: two) and stages the x tile (T rows,
// zero-padded to 16 * NB) beside it; the next tile's weight bytes are loaded into registers while the
// tensor cores work on the current one. Grid: out / 64 blocks x split-K chunks, so that every SM holds
// several blocks; with more than one chunk the f32 output is summed with atomicAdd (zeroed first unless
// accumulating). Dequantised values are rounded to T16 as in dequantize_linear_cuda (same tolerance).
// The tiled layouts go to linear_qgemm_tc.cu instead (weights decoded in registers; LMSCOPE_CUDA_QGEMM_TC).

#include <mma.h>

#include <cstdlib>

#include "cuda/common.cuh"
#include "ops/cuda/gemv.cuh"
#include "ops/cuda/linear_quant.cuh"
#include "ops/cuda/quant_decode.cuh"

namespace lmscope::cuda {

namespace {

namespace wmma = nvcuda::wmma;

constexpr int kBM = 64, kBK = 128, kLd = kBK + 8;  // tile rows, k per step, shared row pitch (elements)
constexpr int kThreads = 128;

template <int N>
struct Raw {
    uint4 w[N];
    uint32_t s[N];  // FP8: the block scale's bits; AWQ: the scale word
};

template <typename T16>
__device__ __forceinline__ uint4 pack8(const float* f) {
    alignas(16) T16 o[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) o[e] = from_f32<T16>(f[e]);
    return *reinterpret_cast<const uint4*>(o);
}

static_assert(kBK == 128, "the tiled offsets: a K step is one AWQ chunk / two FP8 chunks of the tiled layout");

// The tiled offsets below: quant::tiled_unit at k0 = 0 in unsigned 32-bit arithmetic (shifts), plus a
// multiple of k0 (a K step is 128 units: two 64-k FP8 chunks of 16-code units, one 128-k AWQ chunk of
// 32-k units). quant::tiled_unit in 64-bit with the layout tested per load cost this compute-bound
// kernel 11% more instructions (8B fp8 batch 32: 3865 -> 3630 tok/s).
__device__ __forceinline__ uint32_t tiled_unit0(int row, int u, int upr) {
    return quant::tiled_unit<uint32_t>(static_cast<uint32_t>(row), static_cast<uint32_t>(u), static_cast<uint32_t>(upr));
}

// FP8 tile: 64 rows x 128 codes = 512 chunks of 16 codes, four per thread
struct Fp8Tile {
    static constexpr int kPerRow = kBK / 16;
    static constexpr int kChunks = kBM * kPerRow / kThreads;
    struct Params {
        const uint8_t* codes;
        const float* scale;
        const int32_t* srow;
        int nbi, bi;
        bool tiled;  // quant::fp8_tiled, decided on the host
    };
    /** Byte offset of the 16 codes (row, k0 + 16 u): row-major, or tiled (k0 a multiple of kBK). */
    __device__ static int64_t offset(const Params& p, int row, int u, int in, int k0) {
        if (!p.tiled) return static_cast<int64_t>(row) * in + k0 + 16 * u;
        return static_cast<int64_t>(tiled_unit0(row, u, in >> 4)) * 16 + static_cast<int64_t>(k0) * 16;
    }
    __device__ static void load(const Params& p, int r0, int out, int in, int k0, Raw<kChunks>& raw) {
#pragma unroll
        for (int i = 0; i < kChunks; ++i) {
            const int c = threadIdx.x + i * kThreads, row = r0 + c / kPerRow, k = k0 + (c % kPerRow) * 16;
            if (row < out && k < in) {
                raw.w[i] = gemv::load_stream(reinterpret_cast<const uint4*>(p.codes + offset(p, row, c % kPerRow, in, k0)));
                raw.s[i] = __float_as_uint(__ldg(p.scale + static_cast<int64_t>(p.srow[row]) * p.nbi + k / p.bi));
            } else {
                raw.w[i] = make_uint4(0, 0, 0, 0);
                raw.s[i] = 0;
            }
        }
    }
    template <typename T16>
    __device__ static void store(const Raw<kChunks>& raw, T16* sW) {
#pragma unroll
        for (int i = 0; i < kChunks; ++i) {
            const int c = threadIdx.x + i * kThreads;
            const float s = __uint_as_float(raw.s[i]);
            float f[16];
#pragma unroll
            for (int q = 0; q < 4; ++q) quant::fp8x4_to_f32(gemv::word(raw.w[i], q), f + 4 * q);
#pragma unroll
            for (int e = 0; e < 16; ++e) f[e] *= s;
            uint4* dst = reinterpret_cast<uint4*>(sW + (c / kPerRow) * kLd + (c % kPerRow) * 16);
            dst[0] = pack8<T16>(f);
            dst[1] = pack8<T16>(f + 8);
        }
    }
};

// AWQ tile: 64 rows x 128 columns = 256 chunks of 32 nibbles (one 16-byte load each), two per thread
struct AwqTile {
    static constexpr int kPerRow = kBK / 32;
    static constexpr int kChunks = kBM * kPerRow / kThreads;
    struct Params {
        const uint32_t* qw;
        const uint32_t* sz;
        int ng, group;
        bool tiled;  // quant::awq_tiled, decided on the host
    };
    /** Word offset of the 4 words (row, k0 + 32 u): row-major, or tiled (k0 a multiple of kBK). */
    __device__ static int64_t offset(const Params& p, int row, int u, int in, int k0) {
        if (!p.tiled) return static_cast<int64_t>(row) * (in / 8) + (k0 + 32 * u) / 8;
        return static_cast<int64_t>(tiled_unit0(row, u, in >> 5)) * 4 + static_cast<int64_t>(k0) * 2;
    }
    __device__ static void load(const Params& p, int r0, int out, int in, int k0, Raw<kChunks>& raw) {
#pragma unroll
        for (int i = 0; i < kChunks; ++i) {
            const int c = threadIdx.x + i * kThreads, row = r0 + c / kPerRow, k = k0 + (c % kPerRow) * 32;
            if (row < out && k < in) {
                raw.w[i] = gemv::load_stream(reinterpret_cast<const uint4*>(p.qw + offset(p, row, c % kPerRow, in, k0)));
                raw.s[i] = __ldg(p.sz + static_cast<int64_t>(row) * p.ng + k / p.group);
            } else {
                raw.w[i] = make_uint4(0, 0, 0, 0);
                raw.s[i] = 0x64000000u;  // scale 0, zero 0
            }
        }
    }
    template <typename T16>
    __device__ static void store(const Raw<kChunks>& raw, T16* sW) {
#pragma unroll
        for (int i = 0; i < kChunks; ++i) {
            const int c = threadIdx.x + i * kThreads;
            const float s = quant::sz_scale(raw.s[i]);
            const __half2 z2 = quant::sz_zero2(raw.s[i]);
            uint4* dst = reinterpret_cast<uint4*>(sW + (c / kPerRow) * kLd + (c % kPerRow) * 32);
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                float f[8];
                quant::awq_word_to_f32(gemv::word(raw.w[i], q), z2, f);
#pragma unroll
                for (int e = 0; e < 8; ++e) f[e] *= s;
                dst[q] = pack8<T16>(f);
            }
        }
    }
};

template <int NB>
struct QgemmSmem {
    static constexpr int kTile = (kBM + 16 * NB) * kLd * 2;  // sW + sX, 16-bit
    static constexpr int kOut = kBM * (16 * NB + 4) * 4;     // sC, f32
    static constexpr int kBytes = kTile > kOut ? kTile : kOut;
};

template <class F, typename T16, int NB, typename OutT>
__global__ void __launch_bounds__(kThreads, 4) qgemm_kernel(typename F::Params p, const T16* __restrict__ x, int T, int in,
                                                         int out, int steps_per_split, const float* __restrict__ bias,
                                                         OutT* y, bool acc, bool atomic) {
    constexpr int BN = 16 * NB, LDC = BN + 4;
    __shared__ __align__(128) unsigned char smem[QgemmSmem<NB>::kBytes];
    T16* sW = reinterpret_cast<T16*>(smem);  // (64, kLd) dequantised weight tile
    T16* sX = sW + kBM * kLd;                // (BN, kLd) x tile, rows >= T zero
    float* sC = reinterpret_cast<float*>(smem);  // (64, LDC) results, after the last step
    const int warp = threadIdx.x >> 5;
    const int r0 = blockIdx.x * kBM;
    const int steps = (in + kBK - 1) / kBK;
    const int s0 = blockIdx.y * steps_per_split, s1 = min(steps, s0 + steps_per_split);

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> c[NB];
#pragma unroll
    for (int n = 0; n < NB; ++n) wmma::fill_fragment(c[n], 0.0f);
    Raw<F::kChunks> raw;
    F::load(p, r0, out, in, s0 * kBK, raw);
    constexpr int XPR = kBK / 8, XN = BN * XPR / kThreads;  // 16-byte x chunks per row, per thread
    for (int s = s0; s < s1; ++s) {
        const int k0 = s * kBK;
        uint4 xv[XN];  // x loads first: their latency hides behind the dequantisation
#pragma unroll
        for (int i = 0; i < XN; ++i) {
            const int ch = threadIdx.x + i * kThreads, n = ch / XPR, k = k0 + (ch % XPR) * 8;
            xv[i] = n < T && k < in ? *reinterpret_cast<const uint4*>(x + static_cast<int64_t>(n) * in + k)
                                    : make_uint4(0, 0, 0, 0);
        }
        F::template store<T16>(raw, sW);
#pragma unroll
        for (int i = 0; i < XN; ++i) {
            const int ch = threadIdx.x + i * kThreads;
            *reinterpret_cast<uint4*>(sX + (ch / XPR) * kLd + (ch % XPR) * 8) = xv[i];
        }
        __syncthreads();
        if (s + 1 < s1) F::load(p, r0, out, in, k0 + kBK, raw);  // in flight during the MMAs
#pragma unroll
        for (int kk = 0; kk < kBK / 16; ++kk) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, T16, wmma::row_major> a;
            wmma::load_matrix_sync(a, sW + warp * 16 * kLd + kk * 16, kLd);
#pragma unroll
            for (int n = 0; n < NB; ++n) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T16, wmma::col_major> b;
                wmma::load_matrix_sync(b, sX + n * 16 * kLd + kk * 16, kLd);
                wmma::mma_sync(c[n], a, b, c[n]);
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int n = 0; n < NB; ++n) wmma::store_matrix_sync(sC + warp * 16 * LDC + n * 16, c[n], LDC, wmma::mem_row_major);
    __syncthreads();
    for (int i = threadIdx.x; i < kBM * BN; i += kThreads) {
        const int rr = i % kBM, t = i / kBM, row = r0 + rr;  // neighbouring threads: neighbouring outputs
        if (row >= out || t >= T) continue;
        float v = sC[rr * LDC + t];
        if (bias && blockIdx.y == 0) v += bias[row];
        OutT* dst = y + static_cast<int64_t>(t) * out + row;
        if constexpr (std::is_same_v<OutT, float>) {
            if (atomic) {
                atomicAdd(dst, v);
                continue;
            }
        }
        *dst = from_f32<OutT>((acc ? to_f32(*dst) : 0.0f) + v);
    }
}

template <class F, typename T16, int NB, typename OutT>
void launch(const typename F::Params& p, const void* x, int64_t T, const DeviceLinear& w, void* y, bool acc,
            cudaStream_t stream) {
    const int steps = static_cast<int>((w.in + kBK - 1) / kBK);
    const int mblocks = static_cast<int>((w.out + kBM - 1) / kBM);
    const QgemmSplit sp = qgemm_split(steps, mblocks, std::is_same_v<OutT, float>, T, w.out, y, acc, stream);
    qgemm_kernel<F, T16, NB, OutT><<<dim3(static_cast<unsigned>(mblocks), static_cast<unsigned>(sp.splits)), kThreads, 0,
                                      stream>>>(p, static_cast<const T16*>(x), static_cast<int>(T), static_cast<int>(w.in),
                                                static_cast<int>(w.out), sp.per, w.bias, static_cast<OutT*>(y), acc, sp.atomic);
    CUDA_CHECK_LAUNCH();
}

template <class F, typename T16>
void dispatch(const typename F::Params& p, const void* x, int64_t T, const DeviceLinear& w, void* y, DType y_dtype,
              bool acc, cudaStream_t stream) {
    auto go = [&](auto* op) {
        using OutT = std::remove_pointer_t<decltype(op)>;
        if (T <= 16) launch<F, T16, 1, OutT>(p, x, T, w, y, acc, stream);
        else if (T <= 32) launch<F, T16, 2, OutT>(p, x, T, w, y, acc, stream);
        else launch<F, T16, 4, OutT>(p, x, T, w, y, acc, stream);
    };
    if (y_dtype == DType::F32) go(static_cast<float*>(nullptr));
    else go(static_cast<T16*>(nullptr));
}

bool qgemm_enabled() {
    static const bool on = [] {
        const char* e = std::getenv("LMSCOPE_CUDA_QGEMM");
        return !(e && std::atoi(e) == 0);
    }();
    return on;
}

}  // namespace

QgemmSplit qgemm_split(int steps, int mblocks, bool f32_out, int64_t T, int64_t out, void* y, bool accumulate,
                       cudaStream_t stream, int resident) {
    QgemmSplit sp;
    const int max_splits = std::max(1, steps / 2);
    if (f32_out && resident > 0) {
        const int64_t slots = int64_t{resident} * gemv::sm_count();
        int64_t best = -1;
        for (int k = 1; k <= max_splits; ++k) {
            const int per = (steps + k - 1) / k;
            const int64_t cost = ((int64_t{mblocks} * k + slots - 1) / slots) * (per + 2);
            if (best < 0 || cost < best) best = cost, sp.splits = k;
        }
    } else if (f32_out) {
        sp.splits = std::clamp((6 * gemv::sm_count() + mblocks - 1) / mblocks, 1, max_splits);
    }
    sp.per = (steps + sp.splits - 1) / sp.splits;
    sp.splits = (steps + sp.per - 1) / sp.per;
    sp.atomic = sp.splits > 1;
    if (sp.atomic && !accumulate) CUDA_CHECK(cudaMemsetAsync(y, 0, static_cast<size_t>(T * out) * sizeof(float), stream));
    return sp;
}

bool qgemm_supported(const DeviceLinear& w, int64_t T, DType y_dtype) {
    if (!qgemm_enabled() || T < 1 || T > kMaxQgemmRows) return false;
    if (w.dtype != DType::BF16 && w.dtype != DType::F16) return false;
    if (y_dtype != DType::F32 && y_dtype != w.dtype) return false;
    if (w.format == LinearFormat::Fp8Block) return w.in % 16 == 0 && w.block % 16 == 0;
    if (w.format == LinearFormat::AwqInt4) return w.in % 32 == 0 && w.block % 32 == 0;
    return false;
}

void qgemm_cuda(const void* x, int64_t T, const DeviceLinear& w, void* y, DType y_dtype, bool accumulate,
                cudaStream_t stream) {
    if (qgemm_tc_supported(w, T)) {
        qgemm_tc_cuda(x, T, w, y, y_dtype, accumulate, stream);
        return;
    }
    auto by_t16 = [&](const auto& p, auto* fmt) {
        using F = std::remove_pointer_t<decltype(fmt)>;
        if (w.dtype == DType::F16) dispatch<F, __half>(p, x, T, w, y, y_dtype, accumulate, stream);
        else dispatch<F, __nv_bfloat16>(p, x, T, w, y, y_dtype, accumulate, stream);
    };
    if (w.format == LinearFormat::Fp8Block) {
        const int bi = static_cast<int>(w.block);
        const Fp8Tile::Params p{static_cast<const uint8_t*>(w.weight), static_cast<const float*>(w.scale), w.scale_row,
                                static_cast<int>((w.in + bi - 1) / bi), bi, quant::fp8_tiled(w.out, w.in, bi)};
        by_t16(p, static_cast<Fp8Tile*>(nullptr));
    } else {
        const AwqTile::Params p{static_cast<const uint32_t*>(w.weight), static_cast<const uint32_t*>(w.scale),
                                static_cast<int>(w.in / w.block), static_cast<int>(w.block), quant::awq_tiled(w.in, w.block)};
        by_t16(p, static_cast<AwqTile*>(nullptr));
    }
}

}  // namespace lmscope::cuda
