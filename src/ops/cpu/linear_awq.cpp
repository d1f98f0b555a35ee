// Fast CPU AWQ int4 linear (AutoAWQ gemm layout), y (T, out) = x (T, in) Wt + b.
// Work is split over tiles of 64 output columns (8 packed int32 per input row). Per tile and group
// of g input rows, the (g, 64) slice of Wt is dequantised once into a thread-local f32 buffer
// ((q - z) * s, exact in f32) and then multiplied into all T tokens, so the int4 weights are read
// once per call and never expanded beyond one L1-sized tile. AVX2: the 8 nibbles of a packed int32
// are extracted in logical column order with one variable shift (shifts 4 * kAwqReverseOrder).
#include <immintrin.h>

#include <vector>

#include "core/thread_pool.h"
#include "ops/cpu/simd.h"
#include "quant/awq.h"
#include "quant/awq_pack.h"

namespace lmscope {

namespace {

constexpr int64_t kTileCols = 64;  // output columns per tile
constexpr int64_t kTilePacked = kTileCols / 8;

struct TileArgs {
    const int32_t* qw;   // qweight (in, pc)
    const int32_t* qz;   // qzeros (ng, pc)
    const float* sf;     // scales as f32 (ng, out) or null when F16
    const uint16_t* sh;  // scales as F16 bits (ng, out) or null
    int64_t in, out, pc, g;
};

inline float scale_at(const TileArgs& a, int64_t gi, int64_t n) {
    return a.sf ? a.sf[gi * a.out + n] : f16_to_f32(a.sh[gi * a.out + n]);
}

// ---------------- portable ----------------
void dequant_tile_portable(const TileArgs& a, int64_t gi, int64_t c0, int64_t npk, float* buf) {
    const int64_t W = npk * 8;
    float zs[kTileCols], sc[kTileCols];
    for (int64_t j = 0; j < W; ++j) {
        const int64_t n = c0 * 8 + j;
        sc[j] = scale_at(a, gi, n);
        zs[j] = static_cast<float>(awq_unpack_nibble(a.qz + gi * a.pc, n));
    }
    for (int64_t kk = 0; kk < a.g; ++kk) {
        const int32_t* row = a.qw + (gi * a.g + kk) * a.pc + c0;
        float* dst = buf + kk * W;
        for (int64_t p = 0; p < npk; ++p) {
            const uint32_t v = static_cast<uint32_t>(row[p]);
            for (int c = 0; c < 8; ++c) {
                const float q = static_cast<float>((v >> (4 * kAwqReverseOrder[c])) & 15u);
                dst[p * 8 + c] = (q - zs[p * 8 + c]) * sc[p * 8 + c];
            }
        }
    }
}

void accumulate_portable(const float* x, int64_t T, int64_t in, int64_t k0, int64_t g, const float* buf, int64_t W,
                         float* y, int64_t out, int64_t n0) {
    float acc[kTileCols];
    for (int64_t t = 0; t < T; ++t) {
        for (int64_t j = 0; j < W; ++j) acc[j] = 0.0f;
        const float* xr = x + t * in + k0;
        for (int64_t kk = 0; kk < g; ++kk) {
            const float xv = xr[kk];
            const float* wr = buf + kk * W;
            for (int64_t j = 0; j < W; ++j) acc[j] += xv * wr[j];
        }
        float* yr = y + t * out + n0;
        for (int64_t j = 0; j < W; ++j) yr[j] += acc[j];
    }
}

// ---------------- AVX2 ----------------
__attribute__((target("avx2,fma,f16c"))) void dequant_tile_avx2(const TileArgs& a, int64_t gi, int64_t c0,
                                                                 int64_t npk, float* buf) {
    const int64_t W = npk * 8;
    const __m256i shifts = _mm256_setr_epi32(0, 16, 4, 20, 8, 24, 12, 28);
    const __m256i mask = _mm256_set1_epi32(15);
    __m256 zv[kTilePacked], sv[kTilePacked];
    for (int64_t p = 0; p < npk; ++p) {
        const int64_t n = (c0 + p) * 8;
        zv[p] = _mm256_cvtepi32_ps(
            _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(a.qz[gi * a.pc + c0 + p]), shifts), mask));
        sv[p] = a.sf ? _mm256_loadu_ps(a.sf + gi * a.out + n)
                     : _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a.sh + gi * a.out + n)));
    }
    for (int64_t kk = 0; kk < a.g; ++kk) {
        const int32_t* row = a.qw + (gi * a.g + kk) * a.pc + c0;
        float* dst = buf + kk * W;
        for (int64_t p = 0; p < npk; ++p) {
            const __m256 q =
                _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(row[p]), shifts), mask));
            _mm256_storeu_ps(dst + p * 8, _mm256_mul_ps(_mm256_sub_ps(q, zv[p]), sv[p]));
        }
    }
}

template <int NV>
__attribute__((target("avx2,fma"))) void accumulate_avx2_n(const float* x, int64_t T, int64_t in, int64_t k0,
                                                            int64_t g, const float* buf, float* y, int64_t out,
                                                            int64_t n0) {
    constexpr int64_t W = NV * 8;
    for (int64_t t = 0; t < T; ++t) {
        __m256 acc[NV];
        for (int j = 0; j < NV; ++j) acc[j] = _mm256_setzero_ps();
        const float* xr = x + t * in + k0;
        for (int64_t kk = 0; kk < g; ++kk) {
            const __m256 xv = _mm256_set1_ps(xr[kk]);
            const float* wr = buf + kk * W;
            for (int j = 0; j < NV; ++j) acc[j] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(wr + j * 8), acc[j]);
        }
        float* yr = y + t * out + n0;
        for (int j = 0; j < NV; ++j) _mm256_storeu_ps(yr + j * 8, _mm256_add_ps(_mm256_loadu_ps(yr + j * 8), acc[j]));
    }
}

void accumulate_avx2(const float* x, int64_t T, int64_t in, int64_t k0, int64_t g, const float* buf, int64_t npk,
                     float* y, int64_t out, int64_t n0) {
    switch (npk) {
        case 8: accumulate_avx2_n<8>(x, T, in, k0, g, buf, y, out, n0); break;
        case 4: accumulate_avx2_n<4>(x, T, in, k0, g, buf, y, out, n0); break;
        default:
            for (int64_t p = 0; p < npk; ++p) {  // tail tile: one 8-column vector at a time
                // buf rows have stride npk*8; pack the column slice p into a contiguous stride-8 view
                thread_local std::vector<float> col;
                col.resize(static_cast<size_t>(g * 8));
                for (int64_t kk = 0; kk < g; ++kk)
                    for (int c = 0; c < 8; ++c) col[static_cast<size_t>(kk * 8 + c)] = buf[kk * npk * 8 + p * 8 + c];
                accumulate_avx2_n<1>(x, T, in, k0, g, col.data(), y, out, n0 + p * 8);
            }
    }
}

}  // namespace

void linear_awq_cpu(const float* x, int64_t T, const Linear& w, float* y) {
    const int64_t in = w.in(), out = w.out(), g = w.group_size, pc = out / 8, ng = in / g;
    TileArgs a{w.weight.data<int32_t>(), w.qzeros.data<int32_t>(), nullptr, nullptr, in, out, pc, g};
    if (w.scale.dtype() == DType::F16)
        a.sh = w.scale.data<uint16_t>();
    else
        a.sf = w.scale.data<float>();
    const bool avx2 = simd::active_isa() == simd::Isa::Avx2;
    ThreadPool::global().parallel_for(pc, kTilePacked, [&](int64_t p0, int64_t p1, int) {
        thread_local std::vector<float> buf;
        if (buf.size() < static_cast<size_t>(g * kTileCols)) buf.resize(static_cast<size_t>(g * kTileCols));
        for (int64_t c0 = p0; c0 < p1; c0 += kTilePacked) {
            const int64_t npk = std::min(kTilePacked, p1 - c0), n0 = c0 * 8, W = npk * 8;
            for (int64_t t = 0; t < T; ++t)
                for (int64_t j = 0; j < W; ++j)
                    y[t * out + n0 + j] = w.bias.defined() ? static_cast<float>(w.bias.at_f64(n0 + j)) : 0.0f;
            for (int64_t gi = 0; gi < ng; ++gi) {
                if (avx2) {
                    dequant_tile_avx2(a, gi, c0, npk, buf.data());
                    accumulate_avx2(x, T, in, gi * g, g, buf.data(), npk, y, out, n0);
                } else {
                    dequant_tile_portable(a, gi, c0, npk, buf.data());
                    accumulate_portable(x, T, in, gi * g, g, buf.data(), W, y, out, n0);
                }
            }
        }
    });
}

}  // namespace lmscope
