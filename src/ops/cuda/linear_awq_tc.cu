// AWQ int4 decode GEMV on tensor cores (gemv_tc.cuh's format with the decoder below), beside
// linear_awq.cu's row-per-lane loader, which it replaces when `in` and the group are multiples of 128
// (quant::awq_tiled: every AutoAWQ gemm checkpoint of group 128; the upload then writes qw tiled).
//
// A 16-byte unit is 32 consecutive k of one row: 4 words of 8 nibbles in AutoAWQ's interleave
// (nibble s: column 2s, nibble s + 4: column 2s + 1), so (word >> 4 s) & 0x000F000F is the pair
// (2s, 2s + 1): pair P = 4 word + s, k-tile j takes pairs 2 j, 2 j + 1 = nibbles 2h, 2h + 1 (+ 4) of
// word j / 2, h = j % 2. (128 + q) in bf16 comes from one LOP3 ((v & 0x000F000F) | 0x43004300), minus
// (128 + z): q - z exactly, about 1.5 instructions per weight. The chunk (128 k) lies in one group: the
// row's f16 scale multiplies its 8 mma sums once.
#include "cuda/common.cuh"
#include "ops/cuda/gemv_tc.cuh"
#include "ops/cuda/linear_quant.cuh"
#include "ops/cuda/quant_decode.cuh"

namespace lmscope::cuda {

namespace {

struct AwqDecoder {
    static constexpr int kChunk = 128;
    struct Params {
        const uint32_t* qw;  // tiled (quant::awq_word)
        const uint32_t* sz;  // (out, ng): f16 scale | f16 (1024 + z) << 16
        int ng;
        int gshift;          // log2(group / 128) when a power of two, else -1
        int group;
    };
    struct Ctx {
        uint32_t za, zb;  // bf16x2 (128 + z) of the two rows
    };
    __device__ static const uint4* weights(const Params& p) { return reinterpret_cast<const uint4*>(p.qw); }
    __device__ static const uint32_t* scale_row(const Params& p, int row) { return p.sz + static_cast<int64_t>(row) * p.ng; }
    __device__ static int scale_index(const Params& p, int ch) { return p.gshift >= 0 ? ch >> p.gshift : ch * 128 / p.group; }
    __device__ static uint32_t zero2(uint32_t sz) {  // z is the low nibble of the f16 (1024 + z) in the high half
        const uint32_t z = (sz >> 16) & 0xFu;
        return 0x43004300u | z | (z << 16);
    }
    __device__ static Ctx ctx(uint32_t sa, uint32_t sb) { return {zero2(sa), zero2(sb)}; }
    __device__ static float scale(uint32_t sz) { return quant::sz_scale(sz); }

    /**
     * bf16 pair (q - z) of the nibbles at bits 0..3 and 16..19 of v: (128 + q) = (v & mask) | magic in
     * one LOP3 (the compiler emits two when both constants are immediates, so they come in registers),
     * minus (128 + z), exact.
     */
    __device__ static uint32_t pair(uint32_t v, uint32_t z2) {
        const uint32_t mask = 0x000F000Fu, magic = 0x43004300u;
        uint32_t b;
        asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(b) : "r"(v), "r"(mask), "r"(magic));  // (a & b) | c
        const __nv_bfloat162 d =
            __hsub2(*reinterpret_cast<const __nv_bfloat162*>(&b), *reinterpret_cast<const __nv_bfloat162*>(&z2));
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

}  // namespace

void gemv_awq_tc_cuda(const float* x, int64_t T, const DeviceLinear& w, const GemvIn& in, float* y, int64_t y_stride,
                      bool accumulate, cudaStream_t stream) {
    const AwqDecoder::Params p{static_cast<const uint32_t*>(w.weight), static_cast<const uint32_t*>(w.scale),
                               static_cast<int>(w.in / w.block), quant::pow2_shift(static_cast<int>(w.block), 128),
                               static_cast<int>(w.block)};
    gemv::run_tc<AwqDecoder>(p, x, T, w, in, y, y_stride, accumulate, stream);
}

}  // namespace lmscope::cuda
