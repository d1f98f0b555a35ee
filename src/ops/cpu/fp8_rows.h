// Block-FP8 weight rows for the fast CPU linear (linear_fp8.cpp): a fused decode + dot over a range
// of output rows for decode (GEMV: the 1-byte codes are streamed once and never expanded in memory),
// and a row dequantiser that the prefill GEMM calls while it packs weight panels.
// One implementation per ISA level: portable and AVX2 in fp8_rows.cpp, AVX-512 in fp8_rows_avx512.cpp;
// the entry points dispatch on simd::active_isa().
//
// Decoding E4M3 in registers (AVX2, AVX-512): the 7 magnitude bits shifted left by 7 form an IEEE half
// whose value is code / 256, normal and subnormal codes alike, so F16C converts the codes exactly and
// the factor 256 is folded into the block scale. The NaN codes 0x7F/0xFF (never written by quantisers)
// decode as +-480 there instead of NaN; the portable path and the reference use a table with NaN.
#pragma once

#include <cstdint>
#include <vector>

namespace lmscope::fp8cpu {

struct Fp8Weight {
    const uint8_t* codes;  // (out, in) E4M3 codes, row-major
    const float* scales;   // (ceil(out / bo), nbi) dequantisation multipliers
    int64_t out, in, bi, bo, nbi;
    const float* scale_row(int64_t o) const { return scales + (o / bo) * nbi; }
};

/** One token's input as the GEMV reads it (the AVX-512 kernel wants it pre-scaled: fp8_rows_avx512.cpp). */
struct Fp8X {
    const float* x = nullptr;   // the input row (in)
    const float* xs = nullptr;  // AVX-512: x * 2^shift, or null for the F16C decode of x
    float unshift = 1.0f;       // 2^(120 - shift)
};
/** What gemv() reads for input row x (in) at the active ISA level; `buf` holds it (one per token). */
Fp8X prepare_x(const float* x, int64_t in, std::vector<float>& buf);
/** For one token x: y[o] = sum_kb scale(o, kb) * sum_{i in block kb} x[i] * f32(code[o, i]), o in [r0, r1).
 */
void gemv(const Fp8Weight& w, const Fp8X& x, int64_t r0, int64_t r1, float* y);
/** out[i] = f32(code[o, k0 + i]) * scale(o, (k0 + i) / bi) for i < n. */
void row_to_f32(const Fp8Weight& w, int64_t o, int64_t k0, int64_t n, float* out);

// per-level implementations (the dispatchers above pick one)
Fp8X prepare_x_avx512(const float* x, int64_t in, std::vector<float>& buf);
void gemv_portable(const Fp8Weight& w, const float* x, int64_t r0, int64_t r1, float* y);
void gemv_avx2(const Fp8Weight& w, const float* x, int64_t r0, int64_t r1, float* y);
void gemv_avx512(const Fp8Weight& w, const Fp8X& x, int64_t r0, int64_t r1, float* y);
void row_to_f32_portable(const Fp8Weight& w, int64_t o, int64_t k0, int64_t n, float* out);
void row_to_f32_avx2(const Fp8Weight& w, int64_t o, int64_t k0, int64_t n, float* out);
void row_to_f32_avx512(const Fp8Weight& w, int64_t o, int64_t k0, int64_t n, float* out);

}  // namespace lmscope::fp8cpu
