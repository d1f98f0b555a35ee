// AWQ int4 rows, portable and AVX2 levels, and the ISA dispatch (see awq_rows.h).
// AVX2 GEMV: the AVX-512 scheme (awq_rows_avx512.cpp) on 8 packed int32 = 64 columns per ymm; the
// top nibble (p = 7) is shifted down instead of masked in place because AVX2 converts signed int32 only.
#include "ops/cpu/awq_rows.h"

#include <immintrin.h>

#include <algorithm>

#include "ops/cpu/simd.h"

namespace lmscope::awqcpu {

namespace {

// ---------------- AVX2 + FMA + F16C ----------------
constexpr int kTile2 = 8;  // packed columns per ymm: 64 output columns

__attribute__((target("avx2"))) inline __m256i lanes_avx2(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// u[c] lane j -> r[j] lane c (8 x 8)
__attribute__((target("avx2"))) inline void transpose_8x8(const __m256 (&u)[8], __m256 (&r)[8]) {
    __m256 a[8], b[8];
    for (int i = 0; i < 4; ++i) {
        a[2 * i] = _mm256_unpacklo_ps(u[2 * i], u[2 * i + 1]);
        a[2 * i + 1] = _mm256_unpackhi_ps(u[2 * i], u[2 * i + 1]);
    }
    for (int h = 0; h < 2; ++h) {
        b[4 * h + 0] = _mm256_shuffle_ps(a[4 * h + 0], a[4 * h + 2], 0x44);
        b[4 * h + 1] = _mm256_shuffle_ps(a[4 * h + 0], a[4 * h + 2], 0xee);
        b[4 * h + 2] = _mm256_shuffle_ps(a[4 * h + 1], a[4 * h + 3], 0x44);
        b[4 * h + 3] = _mm256_shuffle_ps(a[4 * h + 1], a[4 * h + 3], 0xee);
    }
    for (int i = 0; i < 4; ++i) {  // b[i] / b[4 + i], 128-bit lane L: columns 0..3 / 4..7 of row 4 L + i
        r[i] = _mm256_permute2f128_ps(b[i], b[4 + i], 0x20);
        r[4 + i] = _mm256_permute2f128_ps(b[i], b[4 + i], 0x31);
    }
}

// nibble p of each lane as a float: q * 16^p for p < 7 (masked in place), q for p = 7
template <int p>
__attribute__((target("avx2"))) inline __m256 nibble_f(__m256i v) {
    if constexpr (p == 7) return _mm256_cvtepi32_ps(_mm256_srli_epi32(v, 28));
    return _mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(0xf << (4 * p))));
}
constexpr float kUnscale[8] = {1.0f,         1.0f / 16,      1.0f / 256,      1.0f / 4096,
                               1.0f / 65536, 1.0f / 1048576, 1.0f / 16777216, 1.0f};

__attribute__((target("avx2,fma,f16c"))) void tile_avx2(const AwqWeight& w, const float* x, const float* xg,
                                                        int64_t c0, int npk, float* y) {
    const __m256i m = lanes_avx2(npk);
    int64_t rs = 0;
    const int32_t* base = column_base(w, c0, rs);
    __m256 yacc[8];
    for (auto& v : yacc) v = _mm256_setzero_ps();
    for (int64_t gi = 0; gi < w.ng; ++gi) {
        __m256 acc[8];
        for (auto& v : acc) v = _mm256_setzero_ps();
        const int32_t* row = base + gi * w.g * rs;
        const float* xr = x + gi * w.g;
        for (int64_t kk = 0; kk < w.g; ++kk, row += rs) {
            const __m256 xb = _mm256_set1_ps(xr[kk]);
            const __m256i v = _mm256_maskload_epi32(row, m);
            acc[0] = _mm256_fmadd_ps(nibble_f<0>(v), xb, acc[0]);
            acc[1] = _mm256_fmadd_ps(nibble_f<1>(v), xb, acc[1]);
            acc[2] = _mm256_fmadd_ps(nibble_f<2>(v), xb, acc[2]);
            acc[3] = _mm256_fmadd_ps(nibble_f<3>(v), xb, acc[3]);
            acc[4] = _mm256_fmadd_ps(nibble_f<4>(v), xb, acc[4]);
            acc[5] = _mm256_fmadd_ps(nibble_f<5>(v), xb, acc[5]);
            acc[6] = _mm256_fmadd_ps(nibble_f<6>(v), xb, acc[6]);
            acc[7] = _mm256_fmadd_ps(nibble_f<7>(v), xb, acc[7]);
        }
        const __m256i z = _mm256_maskload_epi32(w.qz + gi * w.pc + c0, m);
        const __m256 zf[8] = {nibble_f<0>(z), nibble_f<1>(z), nibble_f<2>(z), nibble_f<3>(z),
                              nibble_f<4>(z), nibble_f<5>(z), nibble_f<6>(z), nibble_f<7>(z)};
        const __m256 xs = _mm256_set1_ps(xg[gi]);
        __m256 u[8], r[8];
        for (int p = 0; p < 8; ++p)
            u[kAwqOrder[p]] = _mm256_mul_ps(_mm256_fnmadd_ps(zf[p], xs, acc[p]), _mm256_set1_ps(kUnscale[p]));
        transpose_8x8(u, r);
        const int64_t s0 = gi * w.out + c0 * 8;
        for (int j = 0; j < npk; ++j) {
            const __m256 s =
                w.sf ? _mm256_loadu_ps(w.sf + s0 + 8 * j)
                     : _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.sh + s0 + 8 * j)));
            yacc[j] = _mm256_fmadd_ps(r[j], s, yacc[j]);
        }
    }
    for (int j = 0; j < npk; ++j) _mm256_storeu_ps(y + (c0 + j) * 8, yacc[j]);
}

}  // namespace

// ---------------- portable ----------------
void gemv_portable(const AwqWeight& w, const float* x, const float* xg, int64_t p0, int64_t p1, float* y) {
    const int64_t W = (p1 - p0) * 8;
    thread_local std::vector<float> acc;
    acc.resize(static_cast<size_t>(W));
    float* yr = y + p0 * 8;
    std::fill(yr, yr + W, 0.0f);
    for (int64_t gi = 0; gi < w.ng; ++gi) {
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int64_t k = gi * w.g; k < (gi + 1) * w.g; ++k) {
            const float xv = x[k];
            const int32_t* row = w.qw + k * w.pc;
            for (int64_t c = p0; c < p1; ++c) {
                const uint32_t v = static_cast<uint32_t>(row[c]);
                for (int i = 0; i < 8; ++i)
                    acc[static_cast<size_t>((c - p0) * 8 + kAwqOrder[i])] +=
                        xv * static_cast<float>((v >> (4 * i)) & 15u);
            }
        }
        for (int64_t n = p0 * 8; n < p1 * 8; ++n) {
            const float s = w.sf ? w.sf[gi * w.out + n] : f16_to_f32(w.sh[gi * w.out + n]);
            const float z = static_cast<float>(awq_unpack_nibble(w.qz + gi * w.pc, n));
            y[n] += s * (acc[static_cast<size_t>(n - p0 * 8)] - z * xg[gi]);
        }
    }
}

void row_to_f32_portable(const AwqWeight& w, int64_t k, int64_t n0, int64_t n, float* out, bool scaled) {
    for (int64_t i = 0; i < n; ++i) out[i] = weight_at(w, k, n0 + i, scaled);
}

// ---------------- AVX2 ----------------
void gemv_avx2(const AwqWeight& w, const float* x, const float* xg, int64_t p0, int64_t p1, float* y) {
    for (int64_t c = p0; c < p1; c += kTile2)
        tile_avx2(w, x, xg, c, static_cast<int>(std::min<int64_t>(kTile2, p1 - c)), y);
}

__attribute__((target("avx2,fma,f16c"))) void row_to_f32_avx2(const AwqWeight& w, int64_t k, int64_t n0,
                                                              int64_t n, float* out, bool scaled) {
    const int64_t gi = k / w.g;
    const __m256i shifts = _mm256_setr_epi32(0, 16, 4, 20, 8, 24, 12, 28);  // 4 * kAwqReverseOrder
    const __m256i nib = _mm256_set1_epi32(15);
    auto unpack = [&](int32_t v) __attribute__((target("avx2"))) {
        return _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(v), shifts), nib));
    };
    int64_t i = 0;
    if (n0 % 8 == 0)  // (the GEMM's panels always are; gemm_ref asks for single elements)
        for (; i + 8 <= n; i += 8) {
            const int64_t c = (n0 + i) / 8, s0 = gi * w.out + n0 + i;
            const __m256 q = unpack(*packed_at(w, k, c)), z = unpack(w.qz[gi * w.pc + c]);
            const __m256 s =
                !scaled ? _mm256_set1_ps(1.0f)
                : w.sf  ? _mm256_loadu_ps(w.sf + s0)
                        : _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.sh + s0)));
            _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_sub_ps(q, z), s));
        }
    for (; i < n; ++i) out[i] = weight_at(w, k, n0 + i, scaled);
}

// ---------------- dispatch ----------------
void group_sums(const AwqWeight& w, const float* x, float* xg) {
    for (int64_t gi = 0; gi < w.ng; ++gi) {
        float s = 0.0f;
        for (int64_t k = gi * w.g; k < (gi + 1) * w.g; ++k) s += x[k];
        xg[gi] = s;
    }
}

void gemv(const AwqWeight& w, const float* x, const float* xg, int64_t p0, int64_t p1, float* y) {
    switch (simd::active_isa()) {
        case simd::Isa::Avx512:
            return gemv_avx512(w, x, xg, p0, p1, y);
        case simd::Isa::Avx2:
            return gemv_avx2(w, x, xg, p0, p1, y);
        default:
            return gemv_portable(w, x, xg, p0, p1, y);
    }
}

void row_to_f32(const AwqWeight& w, int64_t k, int64_t n0, int64_t n, float* out, bool scaled) {
    switch (simd::active_isa()) {
        case simd::Isa::Avx512:
            return row_to_f32_avx512(w, k, n0, n, out, scaled);
        case simd::Isa::Avx2:
            return row_to_f32_avx2(w, k, n0, n, out, scaled);
        default:
            return row_to_f32_portable(w, k, n0, n, out, scaled);
    }
}

void group_scales(const AwqWeight& w, int64_t gi, int64_t n0, int64_t n, float* out) {
    for (int64_t i = 0; i < n; ++i) out[i] = scale_at(w, gi, n0 + i);
}

bool pack_pairs(const AwqWeight& w, int64_t k0, int64_t kc, int64_t n0, uint32_t* out) {
    return simd::active_isa() == simd::Isa::Avx512 && pack_pairs_avx512(w, k0, kc, n0, out);
}

}  // namespace lmscope::awqcpu
