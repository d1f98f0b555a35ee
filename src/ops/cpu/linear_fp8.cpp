// Fast CPU block-FP8 linear: the weight stays 1 byte per element; codes are decoded in registers.
// Decode (T < 4): per output row, per K block: dot(x, decode(codes)) then times the block's scale;
// rows split across threads, so W is streamed once (half the bytes of BF16).
// Prefill: the blocked GEMM of gemm.cpp with a loader that dequantises rows (code * scale) while the
// weight panels are packed, so the decode cost is amortised over T.
// AVX2 decode of E4M3: the 7 magnitude bits shifted left by 7 form an IEEE half whose value is
// code / 256 (normal and subnormal codes alike), so F16C converts 8 codes at once and the 256 is
// folded into the block scale. The NaN codes 0x7F/0xFF (never written by quantisers) decode as
// +-480 there instead of NaN; the portable path and the reference use a table with NaN.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/simd.h"
#include "ops/ops.h"

namespace lmscope {

namespace {

struct Lut {
    float v[256];
    Lut() {
        for (int c = 0; c < 256; ++c) v[c] = f8e4m3_to_f32(static_cast<uint8_t>(c));
    }
};
const Lut& lut() {
    static const Lut l;
    return l;
}

// ---------------- portable ----------------
float dot_fp8_row_portable(const float* x, const uint8_t* codes, const float* srow, int64_t in, int64_t bi) {
    const float* L = lut().v;
    float total = 0.0f;
    for (int64_t c0 = 0, kb = 0; c0 < in; c0 += bi, ++kb) {
        const int64_t c1 = std::min(in, c0 + bi);
        float s[4] = {0, 0, 0, 0};
        int64_t k = c0;
        for (; k + 4 <= c1; k += 4)
            for (int j = 0; j < 4; ++j) s[j] += x[k + j] * L[codes[k + j]];
        for (; k < c1; ++k) s[0] += x[k] * L[codes[k]];
        total += ((s[0] + s[1]) + (s[2] + s[3])) * srow[kb];
    }
    return total;
}

void fp8_row_to_f32_portable(const uint8_t* codes, const float* srow, int64_t in, int64_t bi, float* out) {
    const float* L = lut().v;
    for (int64_t k = 0; k < in; ++k) out[k] = L[codes[k]] * srow[k / bi];
}

// ---------------- AVX2 + FMA + F16C ----------------
__attribute__((target("avx2,fma"))) float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

// 16 codes -> 16 IEEE halves holding code / 256: sign-extend to 16 bits, shift left by 7 (magnitude
// bits 6..0 land in 13..7, the extended sign fills 15..14), clear bit 14
__attribute__((target("avx2"))) __m256i codes16_to_half(const uint8_t* p) {
    const __m256i h = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_and_si256(_mm256_slli_epi16(h, 7), _mm256_set1_epi16(static_cast<short>(0xbf80)));
}
// 8 codes -> 8 halves
__attribute__((target("avx2"))) __m128i codes8_to_half(const uint8_t* p) {
    const __m128i h = _mm_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    return _mm_and_si128(_mm_slli_epi16(h, 7), _mm_set1_epi16(static_cast<short>(0xbf80)));
}

__attribute__((target("avx2,fma,f16c"))) float dot_fp8_row_avx2(const float* x, const uint8_t* codes,
                                                                  const float* srow, int64_t in, int64_t bi) {
    const float* L = lut().v;
    __m256 total = _mm256_setzero_ps();
    float tail_total = 0.0f;
    for (int64_t c0 = 0, kb = 0; c0 < in; c0 += bi, ++kb) {
        const int64_t c1 = std::min(in, c0 + bi);
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        int64_t k = c0;
        for (; k + 16 <= c1; k += 16) {
            const __m256i hv = codes16_to_half(codes + k);
            a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(hv)), _mm256_loadu_ps(x + k), a0);
            a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(hv, 1)), _mm256_loadu_ps(x + k + 8), a1);
        }
        for (; k + 8 <= c1; k += 8)
            a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(codes8_to_half(codes + k)), _mm256_loadu_ps(x + k), a0);
        float tail = 0.0f;
        for (; k < c1; ++k) tail += x[k] * L[codes[k]];
        const float s = srow[kb];
        total = _mm256_fmadd_ps(_mm256_add_ps(a0, a1), _mm256_set1_ps(s * 256.0f), total);
        tail_total += tail * s;
    }
    return hsum(total) + tail_total;
}

__attribute__((target("avx2,fma,f16c"))) void fp8_row_to_f32_avx2(const uint8_t* codes, const float* srow,
                                                                    int64_t in, int64_t bi, float* out) {
    const float* L = lut().v;
    for (int64_t c0 = 0, kb = 0; c0 < in; c0 += bi, ++kb) {
        const int64_t c1 = std::min(in, c0 + bi);
        const __m256 s = _mm256_set1_ps(srow[kb] * 256.0f);
        int64_t k = c0;
        for (; k + 8 <= c1; k += 8)
            _mm256_storeu_ps(out + k, _mm256_mul_ps(_mm256_cvtph_ps(codes8_to_half(codes + k)), s));
        for (; k < c1; ++k) out[k] = L[codes[k]] * srow[kb];
    }
}

float dot_fp8_row(const float* x, const uint8_t* codes, const float* srow, int64_t in, int64_t bi) {
    return simd::active_isa() >= simd::Isa::Avx2 ? dot_fp8_row_avx2(x, codes, srow, in, bi)
                                                 : dot_fp8_row_portable(x, codes, srow, in, bi);
}
void fp8_row_to_f32(const uint8_t* codes, const float* srow, int64_t in, int64_t bi, float* out) {
    simd::active_isa() >= simd::Isa::Avx2 ? fp8_row_to_f32_avx2(codes, srow, in, bi, out)
                                          : fp8_row_to_f32_portable(codes, srow, in, bi, out);
}

float bias_at(const Linear& w, int64_t o) {
    return w.bias.defined() ? static_cast<float>(w.bias.at_f64(o)) : 0.0f;
}

}  // namespace

void linear_fp8_cpu(const float* x_in, int64_t T, const Linear& w, float* y) {
    LMS_CHECK(w.format == LinearFormat::Fp8Block && w.weight.dtype() == DType::F8_E4M3);
    LMS_CHECK(w.scale.defined() && w.scale.dtype() == DType::F32);
    const int64_t in = w.in(), out = w.out(), bi = w.block_in, bo = w.block_out;
    const int64_t nbi = (in + bi - 1) / bi;
    const uint8_t* codes = w.weight.data<uint8_t>();
    const float* ws = w.scale.data<float>();

    // FP8 activations: fake-quantise x per token and 1 x block_in group (code value * scale in f32);
    // the per-block products then equal the w8a8 block GEMM up to f32 rounding.
    const float* x = x_in;
    thread_local std::vector<float> xbuf, cbuf, sbuf;
    if (fp8_activation_mode()) {
        xbuf.resize(static_cast<size_t>(T * in));
        cbuf.resize(static_cast<size_t>(in));
        sbuf.resize(static_cast<size_t>(nbi));
        for (int64_t t = 0; t < T; ++t) {
            fp8_quantize_activation_row(x_in + t * in, in, bi, cbuf.data(), sbuf.data());
            for (int64_t i = 0; i < in; ++i) xbuf[static_cast<size_t>(t * in + i)] = cbuf[i] * sbuf[i / bi];
        }
        x = xbuf.data();
    }

    ThreadPool& pool = ThreadPool::global();
    if (T < 4) {
        pool.parallel_for(out, 16, [&](int64_t r0, int64_t r1, int) {
            for (int64_t o = r0; o < r1; ++o) {
                const uint8_t* row = codes + o * in;
                const float* srow = ws + (o / bo) * nbi;
                for (int64_t t = 0; t < T; ++t)
                    y[t * out + o] = dot_fp8_row(x + t * in, row, srow, in, bi) + bias_at(w, o);
            }
        });
        return;
    }

    // prefill: the blocked GEMM, dequantising each packed panel's rows (codes x block scale) on the fly
    struct Ctx {
        const uint8_t* codes;
        const float* ws;
        int64_t in, bi, bo, nbi;
    } ctx{codes, ws, in, bi, bo, nbi};
    thread_local std::vector<float> bias;
    if (w.bias.defined()) {
        bias.resize(static_cast<size_t>(out));
        simd::row_to_f32(w.bias.raw(), w.bias.dtype(), out, bias.data());
    }
    GemmArgs g;
    g.M = T;
    g.N = out;
    g.K = in;
    g.a = x;
    g.lda = in;
    g.b_trans = true;
    g.b_loader = [](const void* p, int64_t o, int64_t k0, int64_t count, float* dst) {
        const Ctx& c = *static_cast<const Ctx*>(p);
        const float* srow = c.ws + (o / c.bo) * c.nbi;
        if (k0 % c.bi == 0) {
            fp8_row_to_f32(c.codes + o * c.in + k0, srow + k0 / c.bi, count, c.bi, dst);
        } else {
            for (int64_t k = 0; k < count; ++k)
                dst[k] = f8e4m3_to_f32(c.codes[o * c.in + k0 + k]) * srow[(k0 + k) / c.bi];
        }
    };
    g.b_loader_ctx = &ctx;
    g.c = y;
    g.ldc = out;
    g.bias = w.bias.defined() ? bias.data() : nullptr;
    gemm_cpu(g);
}

}  // namespace lmscope
