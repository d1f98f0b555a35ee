#include "ops/cpu/simd.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "ops/cpu/hsum.h"

namespace lmscope::simd {

namespace {

// Highest level the CPU has.
Isa hardware_best() {
    static const Isa best = [] {
        const bool avx2 =
            __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
        // the AVX-512 kernels (fp8_rows, awq_rows, attention_decode, softmax_exp) are built for f, bw, vl and dq
        const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
        return avx512 ? Isa::Avx512 : avx2 ? Isa::Avx2 : Isa::Portable;
    }();
    return best;
}

// The hardware level, capped by LMSCOPE_ISA when set.
Isa detect() {
    Isa best = hardware_best();
    if (const char* env = std::getenv("LMSCOPE_ISA")) {
        Isa cap = best;
        if (std::strcmp(env, "portable") == 0) cap = Isa::Portable;
        else if (std::strcmp(env, "avx2") == 0) cap = Isa::Avx2;
        else if (std::strcmp(env, "avx512") == 0) cap = Isa::Avx512;
        if (cap < best) best = cap;
    }
    return best;
}

Isa& current() {
    static Isa isa = detect();
    return isa;
}

bool hardware_bf16() {
    static const bool bf16 = hardware_best() == Isa::Avx512 && __builtin_cpu_supports("avx512bf16");
    return bf16;
}

bool& bf16_enabled() {
    static bool on = true;
    return on;
}

// ---------------- portable ----------------
uint16_t f16_saturated(float x) { return f32_to_f16(std::isnan(x) ? x : std::clamp(x, -65504.0f, 65504.0f)); }

float dot_portable(const float* a, const float* b, int64_t n) {
    float s[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; ++j) s[j] += a[i + j] * b[i + j];
    for (; i < n; ++i) s[0] += a[i] * b[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

void row_to_f32_portable(const void* w, DType dt, int64_t n, float* out) {
    convert(w, dt, out, DType::F32, static_cast<size_t>(n));
}

// ---------------- AVX2 + FMA + F16C ----------------

__attribute__((target("avx2,fma,f16c"))) __m256 load8(const void* p, DType dt, int64_t i) {
    switch (dt) {
        case DType::BF16: {
            __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
            return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
        }
        case DType::F16: {
            __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
            return _mm256_cvtph_ps(h);
        }
        default: return _mm256_loadu_ps(static_cast<const float*>(p) + i);
    }
}

__attribute__((target("avx2,fma"))) float dot_avx2(const float* a, const float* b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

__attribute__((target("avx2,fma,f16c"))) void axpy_avx2(float a, const void* x, DType dt, float* y, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, load8(x, dt, i), _mm256_loadu_ps(y + i)));
    for (; i < n; ++i) y[i] += a * static_cast<float>(load_as_f64(x, dt, static_cast<size_t>(i)));
}

__attribute__((target("avx2,fma,f16c"))) void f32_to_f16_avx2(const float* x, int64_t n, uint16_t* out) {
    const __m256 hi = _mm256_set1_ps(65504.0f), lo = _mm256_set1_ps(-65504.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        // min/max return the second operand for a NaN input: x goes second so that NaN stays NaN
        const __m256 c = _mm256_max_ps(lo, _mm256_min_ps(hi, _mm256_loadu_ps(x + i)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_cvtps_ph(c, _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < n; ++i) out[i] = f16_saturated(x[i]);
}

__attribute__((target("avx2,fma,f16c"))) float dot_weight_avx2(const float* x, const void* w, DType dt, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), load8(w, dt, i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), load8(w, dt, i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), load8(w, dt, i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), load8(w, dt, i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), load8(w, dt, i), s0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; ++i) s += x[i] * static_cast<float>(load_as_f64(w, dt, static_cast<size_t>(i)));
    return s;
}

__attribute__((target("avx2,fma,f16c"))) void row_to_f32_avx2(const void* w, DType dt, int64_t n, float* out) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, load8(w, dt, i));
    for (; i < n; ++i) out[i] = static_cast<float>(load_as_f64(w, dt, static_cast<size_t>(i)));
}

__attribute__((target("avx2,fma"))) void dot_4x2_avx2(const float* x, int64_t xs, const float* w, int64_t ws,
                                                       int64_t n, float acc[4][2]) {
    __m256 a00 = _mm256_setzero_ps(), a01 = _mm256_setzero_ps(), a10 = _mm256_setzero_ps(),
           a11 = _mm256_setzero_ps(), a20 = _mm256_setzero_ps(), a21 = _mm256_setzero_ps(),
           a30 = _mm256_setzero_ps(), a31 = _mm256_setzero_ps();
    const float *x0 = x, *x1 = x + xs, *x2 = x + 2 * xs, *x3 = x + 3 * xs, *w0 = w, *w1 = w + ws;
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        const __m256 vw0 = _mm256_loadu_ps(w0 + k), vw1 = _mm256_loadu_ps(w1 + k);
        __m256 vx = _mm256_loadu_ps(x0 + k);
        a00 = _mm256_fmadd_ps(vx, vw0, a00);
        a01 = _mm256_fmadd_ps(vx, vw1, a01);
        vx = _mm256_loadu_ps(x1 + k);
        a10 = _mm256_fmadd_ps(vx, vw0, a10);
        a11 = _mm256_fmadd_ps(vx, vw1, a11);
        vx = _mm256_loadu_ps(x2 + k);
        a20 = _mm256_fmadd_ps(vx, vw0, a20);
        a21 = _mm256_fmadd_ps(vx, vw1, a21);
        vx = _mm256_loadu_ps(x3 + k);
        a30 = _mm256_fmadd_ps(vx, vw0, a30);
        a31 = _mm256_fmadd_ps(vx, vw1, a31);
    }
    acc[0][0] = hsum(a00); acc[0][1] = hsum(a01);
    acc[1][0] = hsum(a10); acc[1][1] = hsum(a11);
    acc[2][0] = hsum(a20); acc[2][1] = hsum(a21);
    acc[3][0] = hsum(a30); acc[3][1] = hsum(a31);
    for (; k < n; ++k)
        for (int i = 0; i < 4; ++i) {
            acc[i][0] += x[i * xs + k] * w0[k];
            acc[i][1] += x[i * xs + k] * w1[k];
        }
}

// ---------------- AVX-512 ----------------
__attribute__((target("avx512f,avx512bw"))) __m512 load16(const void* p, DType dt, int64_t i) {
    switch (dt) {
        case DType::BF16: {
            __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i));
            // maskz forms: GCC 12 warns about the undefined pass-through operand of the unmasked ones
            return _mm512_castsi512_ps(
                _mm512_maskz_slli_epi32(0xffff, _mm512_maskz_cvtepu16_epi32(0xffff, h), 16));
        }
        case DType::F16: {
            __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i));
            return _mm512_maskz_cvtph_ps(0xffff, h);
        }
        default: return _mm512_loadu_ps(static_cast<const float*>(p) + i);
    }
}

__attribute__((target("avx512f,avx512bw"))) float dot_weight_avx512(const float* x, const void* w, DType dt,
                                                                       int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), load16(w, dt, i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), load16(w, dt, i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), load16(w, dt, i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), load16(w, dt, i + 48), s3);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), load16(w, dt, i), s0);
    float s = hsum(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    for (; i < n; ++i) s += x[i] * static_cast<float>(load_as_f64(w, dt, static_cast<size_t>(i)));
    return s;
}

__attribute__((target("avx512f"))) float dot_avx512(const float* a, const float* b, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    if (i < n) {  // masked tail: up to two vectors
        const int64_t r = n - i;
        const __mmask16 m0 = r >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << r) - 1);
        const __mmask16 m1 = r > 16 ? static_cast<__mmask16>((1u << (r - 16)) - 1) : __mmask16(0);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, a + i), _mm512_maskz_loadu_ps(m0, b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, a + i + 16), _mm512_maskz_loadu_ps(m1, b + i + 16), s1);
    }
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, _mm512_add_ps(s0, s1));
    float s = 0;
    for (float l : lanes) s += l;
    return s;
}

__attribute__((target("avx512f"))) inline __mmask16 tail16(int64_t n) {
    return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : static_cast<__mmask16>((1u << n) - 1);
}

// Elements i .. i+15 of a stored row (F32/F16/BF16) as f32, lanes outside mask m zero.
__attribute__((target("avx512f,avx512bw,avx512vl"))) __m512 load16_masked(const void* p, DType dt, int64_t i,
                                                                           __mmask16 m) {
    switch (dt) {
        case DType::BF16:
            return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(
                0xffff, _mm512_maskz_cvtepu16_epi32(0xffff, _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(p) + i)), 16));
        case DType::F16:
            return _mm512_maskz_cvtph_ps(0xffff, _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(p) + i));
        default: return _mm512_maskz_loadu_ps(m, static_cast<const float*>(p) + i);
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) void axpy_avx512(float a, const void* x, DType dt, float* y,
                                                                        int64_t n) {
    const __m512 va = _mm512_set1_ps(a);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail16(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, load16_masked(x, dt, i, m), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) void dot_pairs4_avx512(const float* const a[4],
                                                                              const void* const b[4], DType dt,
                                                                              int64_t n, float out[4]) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail16(n - i);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a[0] + i), load16_masked(b[0], dt, i, m), a0);
        a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a[1] + i), load16_masked(b[1], dt, i, m), a1);
        a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a[2] + i), load16_masked(b[2], dt, i, m), a2);
        a3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a[3] + i), load16_masked(b[3], dt, i, m), a3);
    }
    hsum4(a0, a1, a2, a3, out);
}

}  // namespace

Isa active_isa() { return current(); }
const char* isa_name(Isa isa) {
    return isa == Isa::Avx512 ? "avx512" : isa == Isa::Avx2 ? "avx2" : "portable";
}
bool isa_supported(Isa isa) { return isa <= hardware_best(); }
void force_isa(Isa isa) {
    LMS_CHECK(isa_supported(isa));
    current() = isa;
}

bool has_avx512_bf16() { return current() == Isa::Avx512 && hardware_bf16() && bf16_enabled(); }
bool avx512_bf16_supported() { return hardware_bf16(); }
void force_avx512_bf16(bool on) {
    LMS_CHECK(!on || hardware_bf16());
    bf16_enabled() = on;
}

float dot_f32(const float* a, const float* b, int64_t n) {
    if (current() >= Isa::Avx512) return dot_avx512(a, b, n);
    return current() >= Isa::Avx2 ? dot_avx2(a, b, n) : dot_portable(a, b, n);
}

void axpy_row(float a, const void* x, DType dt, float* y, int64_t n) {
    if (current() >= Isa::Avx512) return axpy_avx512(a, x, dt, y, n);
    if (current() >= Isa::Avx2) return axpy_avx2(a, x, dt, y, n);
    for (int64_t i = 0; i < n; ++i) y[i] += a * static_cast<float>(load_as_f64(x, dt, static_cast<size_t>(i)));
}

void dot_row_pairs4(const float* const a[4], const void* const b[4], DType dt, int64_t n, float out[4]) {
    if (current() >= Isa::Avx512) return dot_pairs4_avx512(a, b, dt, n, out);
    for (int r = 0; r < 4; ++r) out[r] = dot_weight_row(a[r], b[r], dt, n);
}

void f32_to_f16_row(const float* x, int64_t n, uint16_t* out) {
    if (current() >= Isa::Avx2) return f32_to_f16_avx2(x, n, out);
    for (int64_t i = 0; i < n; ++i) out[i] = f16_saturated(x[i]);
}

float dot_weight_row(const float* x, const void* w, DType dt, int64_t n) {
    if (current() >= Isa::Avx512) return dot_weight_avx512(x, w, dt, n);
    if (current() >= Isa::Avx2) return dot_weight_avx2(x, w, dt, n);
    if (dt == DType::F32) return dot_portable(x, static_cast<const float*>(w), n);
    float s = 0;
    for (int64_t i = 0; i < n; ++i) s += x[i] * static_cast<float>(load_as_f64(w, dt, static_cast<size_t>(i)));
    return s;
}

void row_to_f32(const void* w, DType dt, int64_t n, float* out) {
    current() >= Isa::Avx2 ? row_to_f32_avx2(w, dt, n, out) : row_to_f32_portable(w, dt, n, out);
}

void dot_4x2(const float* x, int64_t xs, const float* w, int64_t ws, int64_t n, float acc[4][2]) {
    if (current() >= Isa::Avx2) return dot_4x2_avx2(x, xs, w, ws, n, acc);
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 2; ++j) acc[i][j] = dot_portable(x + i * xs, w + j * ws, n);
}

}  // namespace lmscope::simd
