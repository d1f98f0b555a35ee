// Block-FP8 rows, portable and AVX2 levels, and the ISA dispatch (see fp8_rows.h).
// The GEMV works on 4 rows at a time so that each x vector loaded serves 4 weight rows and the
// 8 accumulators hide the FMA latency; each K block's partial dot is scaled once at the block's end.
#include "ops/cpu/fp8_rows.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "core/dtype.h"
#include "ops/cpu/hsum.h"
#include "ops/cpu/simd.h"

namespace lmscope::fp8cpu {

namespace {

struct Lut {
    float v[256];
    Lut() {
        for (int c = 0; c < 256; ++c) v[c] = f8e4m3_to_f32(static_cast<uint8_t>(c));
    }
};
const float* lut() {
    static const Lut l;
    return l.v;
}

// ---------------- AVX2 + FMA + F16C ----------------
using simd::hsum;

// 16 codes -> 16 halves holding code / 256: sign-extend to 16 bits, shift left by 7 (magnitude bits
// 6..0 land in 13..7, the extended sign fills 15..14), clear bit 14
__attribute__((target("avx2"))) __m256i codes16_to_half(const uint8_t* p) {
    const __m256i h = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_and_si256(_mm256_slli_epi16(h, 7), _mm256_set1_epi16(static_cast<short>(0xbf80)));
}
__attribute__((target("avx2"))) __m128i codes8_to_half(const uint8_t* p) {
    const __m128i h = _mm_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    return _mm_and_si128(_mm_slli_epi16(h, 7), _mm_set1_epi16(static_cast<short>(0xbf80)));
}

template <int R>
__attribute__((target("avx2,fma,f16c"))) void rows_avx2(const Fp8Weight& w, const float* x, int64_t o0,
                                                        float* y) {
    const float* L = lut();
    const uint8_t* c[R];
    const float* s[R];
    __m256 tot[R];
    float tail_tot[R];
    for (int r = 0; r < R; ++r) {
        c[r] = w.codes + (o0 + r) * w.in;
        s[r] = w.scale_row(o0 + r);
        tot[r] = _mm256_setzero_ps();
        tail_tot[r] = 0.0f;
    }
    const int64_t ahead = 2 * R * w.in;  // interleaved row streams need a prefetch (fp8_rows_avx512.cpp)
    for (int64_t kb = 0; kb < w.nbi; ++kb) {
        const int64_t k0 = kb * w.bi, k1 = std::min(w.in, k0 + w.bi);
        __m256 a[R][2];
        for (int r = 0; r < R; ++r) a[r][0] = a[r][1] = _mm256_setzero_ps();
        int64_t k = k0;
        for (; k + 16 <= k1; k += 16) {
            const __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
            for (int r = 0; r < R; ++r) {
                if ((k & 63) == 0) _mm_prefetch(reinterpret_cast<const char*>(c[r] + k + ahead), _MM_HINT_T0);
                const __m256i h = codes16_to_half(c[r] + k);
                a[r][0] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h)), x0, a[r][0]);
                a[r][1] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)), x1, a[r][1]);
            }
        }
        if (k + 8 <= k1) {
            const __m256 x0 = _mm256_loadu_ps(x + k);
            for (int r = 0; r < R; ++r)
                a[r][0] = _mm256_fmadd_ps(_mm256_cvtph_ps(codes8_to_half(c[r] + k)), x0, a[r][0]);
            k += 8;
        }
        for (int r = 0; r < R; ++r) {
            float tail = 0.0f;
            for (int64_t i = k; i < k1; ++i) tail += x[i] * L[c[r][i]];
            tot[r] =
                _mm256_fmadd_ps(_mm256_add_ps(a[r][0], a[r][1]), _mm256_set1_ps(s[r][kb] * 256.0f), tot[r]);
            tail_tot[r] += tail * s[r][kb];
        }
    }
    for (int r = 0; r < R; ++r) y[o0 + r] = hsum(tot[r]) + tail_tot[r];
}

}  // namespace

// ---------------- portable ----------------
void gemv_portable(const Fp8Weight& w, const float* x, int64_t r0, int64_t r1, float* y) {
    const float* L = lut();
    for (int64_t o = r0; o < r1; ++o) {
        const uint8_t* codes = w.codes + o * w.in;
        const float* srow = w.scale_row(o);
        float total = 0.0f;
        for (int64_t c0 = 0, kb = 0; c0 < w.in; c0 += w.bi, ++kb) {
            const int64_t c1 = std::min(w.in, c0 + w.bi);
            float s[4] = {0, 0, 0, 0};
            int64_t k = c0;
            for (; k + 4 <= c1; k += 4)
                for (int j = 0; j < 4; ++j) s[j] += x[k + j] * L[codes[k + j]];
            for (; k < c1; ++k) s[0] += x[k] * L[codes[k]];
            total += ((s[0] + s[1]) + (s[2] + s[3])) * srow[kb];
        }
        y[o] = total;
    }
}

void row_to_f32_portable(const uint8_t* c, const float* srow, int64_t bi, int64_t k0, int64_t n, float* out) {
    const float* L = lut();
    for (int64_t i = 0; i < n; ++i) out[i] = L[c[i]] * srow[(k0 + i) / bi];
}

// ---------------- AVX2 ----------------
void gemv_avx2(const Fp8Weight& w, const float* x, int64_t r0, int64_t r1, float* y) {
    int64_t o = r0;
    for (; o + 4 <= r1; o += 4) rows_avx2<4>(w, x, o, y);
    for (; o < r1; ++o) rows_avx2<1>(w, x, o, y);
}

__attribute__((target("avx2,fma,f16c"))) void row_to_f32_avx2(const uint8_t* c, const float* srow, int64_t bi,
                                                              int64_t k0, int64_t n, float* out) {
    const float* L = lut();
    const int64_t k1 = k0 + n;
    for (int64_t k = k0; k < k1;) {
        const int64_t kb = k / bi, seg_end = std::min(k1, (kb + 1) * bi);
        const __m256 s = _mm256_set1_ps(srow[kb] * 256.0f);
        for (; k + 8 <= seg_end; k += 8)
            _mm256_storeu_ps(out + (k - k0), _mm256_mul_ps(_mm256_cvtph_ps(codes8_to_half(c + (k - k0))), s));
        for (; k < seg_end; ++k) out[k - k0] = L[c[k - k0]] * srow[kb];
    }
}

void to_rows4(const uint8_t* codes, int64_t out, int64_t in, uint8_t* dst) {
    const int64_t groups = out / 4;
    for (int64_t g = 0; g < groups; ++g)
        for (int64_t k = 0; k < in; k += 64)
            for (int64_t r = 0; r < 4; ++r)
                std::memcpy(dst + g * 4 * in + 4 * k + 64 * r, codes + (4 * g + r) * in + k, 64);
    std::memcpy(dst + groups * 4 * in, codes + groups * 4 * in, static_cast<size_t>((out - groups * 4) * in));
}

// ---------------- dispatch ----------------
Fp8X prepare_x(const float* x, int64_t in, std::vector<float>& buf) {
    if (simd::active_isa() == simd::Isa::Avx512) return prepare_x_avx512(x, in, buf);
    return {x, nullptr, 1.0f};
}

void gemv(const Fp8Weight& w, const Fp8X& x, int64_t r0, int64_t r1, float* y) {
    switch (simd::active_isa()) {
        case simd::Isa::Avx512:
            return gemv_avx512(w, x, r0, r1, y);
        case simd::Isa::Avx2:
            return gemv_avx2(w, x.x, r0, r1, y);
        default:
            return gemv_portable(w, x.x, r0, r1, y);
    }
}

void row_to_f32(const Fp8Weight& w, int64_t o, int64_t k0, int64_t n, float* out) {
    const auto level = simd::active_isa() == simd::Isa::Avx512 ? row_to_f32_avx512
                       : simd::active_isa() == simd::Isa::Avx2 ? row_to_f32_avx2
                                                               : row_to_f32_portable;
    const float* srow = w.scale_row(o);
    if (!w.rows4 || o >= w.out / 4 * 4) return level(w.codes + o * w.in + k0, srow, w.bi, k0, n, out);
    // the 4-row layout (fp8_rows.h): the row's codes are 64-code runs, 4 runs apart
    const uint8_t* g = w.rows4 + o / 4 * 4 * w.in + 64 * (o % 4);
    if (level == row_to_f32_avx512) return row_to_f32_rows4_avx512(g, srow, w.bi, k0, n, out);
    for (int64_t k = k0; k < k0 + n;) {  // (the layout is made for the AVX-512 level; a run a call elsewhere)
        const int64_t run = k / 64 * 64, e = std::min(k0 + n, run + 64);
        level(g + 4 * run + (k - run), srow, w.bi, k, e - k, out + (k - k0));
        k = e;
    }
}

}  // namespace lmscope::fp8cpu
