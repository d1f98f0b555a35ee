// FP8-block (E4M3) decode GEMV on tensor cores (gemv_tc.cuh's format with the decoder below), beside
// linear_fp8.cu's row-per-lane loader, which it replaces when `in` and block_in are multiples of 64
// and the matrix has at least 8M weights (quant::fp8_tiled: the DeepSeek-V3 / Qwen3-FP8 128 x 128
// blocks of 8B-class models; the upload then writes the codes tiled, fp8_tile_codes_cuda).
//
// A 16-byte unit is 16 consecutive codes of one row: pair P = bytes 2P, 2P + 1 = half P % 2 of word
// P / 2, so k-tile j takes word j's low half (A slots 2c, 2c + 1) and high half (2c + 8, 2c + 9). The
// hardware e4m3x2 -> f16x2 conversion, then f32 and bf16, is exact (E4M3's 3-bit mantissa and
// exponent range fit bf16). The chunk (64 k) lies in one block: the row's block scale multiplies its
// 4 mma sums once; the scale row of each output row comes through DeviceLinear::scale_row.
#include "cuda/common.cuh"
#include "ops/cuda/gemv_tc.cuh"
#include "ops/cuda/linear_quant.cuh"
#include "ops/cuda/quant_decode.cuh"

namespace lmscope::cuda {

namespace {

struct Fp8Decoder {
    static constexpr int kChunk = 64;
    struct Params {
        const uint8_t* codes;  // tiled (quant::fp8_byte)
        const float* scale;    // (scale rows, nbi)
        const int32_t* srow;   // (out)
        int nbi;
        int bshift;            // log2(block_in / 64) when a power of two, else -1
        int bi;
    };
    struct Ctx {};
    __device__ static const uint4* weights(const Params& p) { return reinterpret_cast<const uint4*>(p.codes); }
    __device__ static const uint32_t* scale_row(const Params& p, int row) {
        return reinterpret_cast<const uint32_t*>(p.scale + static_cast<int64_t>(__ldg(p.srow + row)) * p.nbi);
    }
    __device__ static int scale_index(const Params& p, int ch) { return p.bshift >= 0 ? ch >> p.bshift : ch * 64 / p.bi; }
    __device__ static Ctx ctx(uint32_t, uint32_t) { return {}; }
    __device__ static float scale(uint32_t bits) { return __uint_as_float(bits); }

    /** Two E4M3 codes (low byte first) -> bf16x2, exact. */
    __device__ static uint32_t pair(uint32_t v16) {
        const float2 f = quant::fp8x2_to_f32(v16);
        const __nv_bfloat162 b = __floats2bfloat162_rn(f.x, f.y);
        return *reinterpret_cast<const uint32_t*>(&b);
    }
    __device__ static void frag(const uint4& wa, const uint4& wb, int j, const Ctx&, uint32_t (&a)[4]) {
        const uint32_t w0 = gemv::word(wa, j), w1 = gemv::word(wb, j);
        a[0] = pair(w0 & 0xffffu);
        a[1] = pair(w1 & 0xffffu);
        a[2] = pair(w0 >> 16);
        a[3] = pair(w1 >> 16);
    }
};

}  // namespace

void gemv_fp8_tc_cuda(const float* x, int64_t T, const DeviceLinear& w, const GemvIn& in, float* y, int64_t y_stride,
                      bool accumulate, cudaStream_t stream) {
    const int bi = static_cast<int>(w.block);
    const Fp8Decoder::Params p{static_cast<const uint8_t*>(w.weight), static_cast<const float*>(w.scale), w.scale_row,
                               static_cast<int>((w.in + bi - 1) / bi), quant::pow2_shift(bi, 64), bi};
    gemv::run_tc<Fp8Decoder>(p, x, T, w, in, y, y_stride, accumulate, stream);
}

}  // namespace lmscope::cuda
