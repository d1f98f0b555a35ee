// The tensor-core weight decoders of the tiled quantized layouts (quant::tiled_unit): each turns a
// lane's two 16-byte units (rows g and g + 8 of a 16-row tile, one chunk) into the bf16 A fragments of
// mma.sync m16n8k16, exactly, with one scale per row and chunk applied to the chunk's f32 sums. Shared
// by the batch <= 8 GEMV (gemv_tc.cuh through linear_fp8_tc.cu / linear_awq_tc.cu) and the small-batch
// GEMM (linear_qgemm_tc.cu).
//
// A decoder D (T16: the 16-bit type of the A fragments, bf16 or f16) provides:
//   Elem = T16;  Params, params(DeviceLinear);  kChunk (64 or 128);  const uint4* weights(p)
//   scale_row(p, row), scale_index(p, ch)   the row's scale words and chunk ch's index in them
//   Ctx ctx(word_a, word_b)                 per chunk, from the two rows' scale words (AWQ: zeros)
//   frag(wa, wb, j, ctx, a[4])              the A fragment of k-tile j from the two rows' units
//   float scale(word)                       the row's scale for the chunk
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "cuda/mma.cuh"
#include "ops/cuda/gemv.cuh"
#include "ops/cuda/ops_cuda.h"
#include "ops/cuda/quant_decode.cuh"

namespace lmscope::cuda::tc {

/**
 * FP8-block (E4M3), codes tiled (quant::fp8_tiled). A 16-byte unit is 16 consecutive codes of one row:
 * pair P = bytes 2P, 2P + 1 = half P % 2 of word P / 2, so k-tile j takes word j's low half (A slots
 * 2c, 2c + 1) and high half (2c + 8, 2c + 9). The hardware e4m3x2 -> f16x2 conversion, then f32 and
 * bf16, is exact (E4M3's 3-bit mantissa and exponent range fit bf16). The chunk (64 k) lies in one
 * block: the row's block scale multiplies its mma sums once; the scale row of each output row comes
 * through DeviceLinear::scale_row. For f16 fragments the e4m3x2 -> f16x2 conversion alone.
 */
template <typename T16>
struct Fp8DecoderT {
    using Elem = T16;
    static constexpr int kChunk = 64;
    struct Params {
        const uint8_t* codes;  // tiled (quant::fp8_byte)
        const float* scale;    // (scale rows, nbi)
        const int32_t* srow;   // (out)
        int nbi;
        int bshift;  // log2(block_in / 64) when a power of two, else -1
        int bi;
    };
    static Params params(const DeviceLinear& w) {
        const int bi = static_cast<int>(w.block);
        return {static_cast<const uint8_t*>(w.weight),  static_cast<const float*>(w.scale), w.scale_row,
                static_cast<int>((w.in + bi - 1) / bi), quant::pow2_shift(bi, 64),          bi};
    }
    struct Ctx {};
    __device__ static const uint4* weights(const Params& p) {
        return reinterpret_cast<const uint4*>(p.codes);
    }
    __device__ static const uint32_t* scale_row(const Params& p, int row) {
        return reinterpret_cast<const uint32_t*>(p.scale + static_cast<int64_t>(__ldg(p.srow + row)) * p.nbi);
    }
    __device__ static int scale_index(const Params& p, int ch) {
        return p.bshift >= 0 ? ch >> p.bshift : ch * 64 / p.bi;
    }
    __device__ static Ctx ctx(uint32_t, uint32_t) { return {}; }
    __device__ static float scale(uint32_t bits) { return __uint_as_float(bits); }

    /** Two E4M3 codes (low byte first) -> T16 x2, exact. */
    __device__ static uint32_t pair(uint32_t v16) {
        if constexpr (std::is_same_v<T16, __half>) {
            const __half2_raw h =
                __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(v16), __NV_E4M3);
            return static_cast<uint32_t>(h.x) | static_cast<uint32_t>(h.y) << 16;
        } else {
            const float2 f = quant::fp8x2_to_f32(v16);
            const __nv_bfloat162 b = __floats2bfloat162_rn(f.x, f.y);
            return *reinterpret_cast<const uint32_t*>(&b);
        }
    }
    __device__ static void frag(const uint4& wa, const uint4& wb, int j, const Ctx&, uint32_t (&a)[4]) {
        const uint32_t w0 = gemv::word(wa, j), w1 = gemv::word(wb, j);
        a[0] = pair(w0 & 0xffffu);
        a[1] = pair(w1 & 0xffffu);
        a[2] = pair(w0 >> 16);
        a[3] = pair(w1 >> 16);
    }
};

/**
 * AWQ int4, qw tiled (quant::awq_tiled). A 16-byte unit is 32 consecutive k of one row: 4 words of 8
 * nibbles in AutoAWQ's interleave (nibble s: column 2s, nibble s + 4: column 2s + 1), so
 * (word >> 4 s) & 0x000F000F is the pair (2s, 2s + 1): pair P = 4 word + s, k-tile j takes pairs 2 j,
 * 2 j + 1 = nibbles 2h, 2h + 1 (+ 4) of word j / 2, h = j % 2. (128 + q) in bf16 comes from one LOP3
 * ((v & 0x000F000F) | 0x43004300; f16: (1024 + q), 0x64006400), minus (128 + z): q - z exactly, about
 * 1.5 instructions per weight. The chunk (128 k) lies in one group: the row's f16 scale multiplies its
 * mma sums once.
 */
template <typename T16>
struct AwqDecoderT {
    using Elem = T16;
    static constexpr int kChunk = 128;
    static constexpr uint32_t kMagic =
        std::is_same_v<T16, __half> ? 0x64006400u : 0x43004300u;  // 1024 | 128 in each half
    struct Params {
        const uint32_t* qw;  // tiled (quant::awq_word)
        const uint32_t* sz;  // (out, ng): f16 scale | f16 (1024 + z) << 16
        int ng;
        int gshift;  // log2(group / 128) when a power of two, else -1
        int group;
    };
    static Params params(const DeviceLinear& w) {
        return {static_cast<const uint32_t*>(w.weight), static_cast<const uint32_t*>(w.scale),
                static_cast<int>(w.in / w.block), quant::pow2_shift(static_cast<int>(w.block), 128),
                static_cast<int>(w.block)};
    }
    struct Ctx {
        uint32_t za, zb;  // T16 x2 (magic + z) of the two rows
    };
    __device__ static const uint4* weights(const Params& p) { return reinterpret_cast<const uint4*>(p.qw); }
    __device__ static const uint32_t* scale_row(const Params& p, int row) {
        return p.sz + static_cast<int64_t>(row) * p.ng;
    }
    __device__ static int scale_index(const Params& p, int ch) {
        return p.gshift >= 0 ? ch >> p.gshift : ch * 128 / p.group;
    }
    __device__ static uint32_t zero2(
        uint32_t sz) {  // z is the low nibble of the f16 (1024 + z) in the high half
        const uint32_t z = (sz >> 16) & 0xFu;
        return kMagic | z | (z << 16);
    }
    __device__ static Ctx ctx(uint32_t sa, uint32_t sb) { return {zero2(sa), zero2(sb)}; }
    __device__ static float scale(uint32_t sz) { return quant::sz_scale(sz); }

    /**
     * T16 pair (q - z) of the nibbles at bits 0..3 and 16..19 of v: (magic + q) = (v & mask) | magic in
     * one LOP3 (the compiler emits two when both constants are immediates, so they come in registers),
     * minus (magic + z), exact.
     */
    __device__ static uint32_t pair(uint32_t v, uint32_t z2) {
        const uint32_t mask = 0x000F000Fu, magic = kMagic;
        uint32_t b;
        asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(b) : "r"(v), "r"(mask), "r"(magic));  // (a & b) | c
        using V2 = std::conditional_t<std::is_same_v<T16, __half>, __half2, __nv_bfloat162>;
        const V2 d = __hsub2(*reinterpret_cast<const V2*>(&b), *reinterpret_cast<const V2*>(&z2));
        return *reinterpret_cast<const uint32_t*>(&d);
    }
    __device__ static void frag(const uint4& wa, const uint4& wb, int j, const Ctx& cx, uint32_t (&a)[4]) {
        const uint32_t w0 = gemv::word(wa, j / 2), w1 = gemv::word(wb, j / 2);
        const int sh = 8 * (j % 2);
        a[0] = pair(w0 >> sh, cx.za);
        a[1] = pair(w1 >> sh, cx.zb);
        a[2] = pair(w0 >> (sh + 4), cx.za);
        a[3] = pair(w1 >> (sh + 4), cx.zb);
    }
};

/**
 * c[b] += A B[b] over two k-tiles (2 jj, 2 jj + 1) of a chunk: A decoded by D from the two rows' units,
 * B[b] the lane's fragments of n-tile b (.x .y: k-tile 2 jj, .z .w: 2 jj + 1). The inner loop of the
 * tensor-core GEMV (gemv_tc.cuh) and GEMM (linear_qgemm_tc.cu).
 */
template <class D, int NB>
__device__ __forceinline__ void mma_ktile_pair(const uint4& wa, const uint4& wb, int jj,
                                               const typename D::Ctx& cx, const uint4 (&bf)[NB],
                                               float (&c)[NB][4]) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        uint32_t a[4];
        D::frag(wa, wb, 2 * jj + h, cx, a);
#pragma unroll
        for (int b = 0; b < NB; ++b)
            mma::mma_16816<typename D::Elem>(c[b], a, h ? bf[b].z : bf[b].x, h ? bf[b].w : bf[b].y);
    }
}

/** The batch <= 8 GEMV's decoders: bf16 fragments (x as bf16 hi + lo, gemv::XsBf16). */
using Fp8Decoder = Fp8DecoderT<__nv_bfloat16>;
using AwqDecoder = AwqDecoderT<__nv_bfloat16>;

}  // namespace lmscope::cuda::tc
