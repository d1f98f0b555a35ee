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
//
// The 4-row layout (rows4): the AVX-512 GEMV reads 4 rows at a time, and in the checkpoint's row-major codes
// those are 4 streams 1-3 KB apart, which the hardware prefetcher does not follow across 4 KB pages (34 GB/s
// from DRAM on one core against 44 of a plain read: cpu_notes v20). A copy made at load (to_rows4) stores
// each group of 4 rows as one run: per 64 inputs, row 0's 64 codes, then rows 1, 2, 3's. The group keeps
// its place (bytes [4 g in, 4 (g + 1) in)), rows past the last whole group stay row-major, so a thread's
// share of rows is still one contiguous range, now read front to back as one stream. Prefill's row_to_f32
// reads the copy too, so that the file's row-major codes are not touched again after load.
#pragma once

#include <cstdint>
#include <vector>

namespace lmscope::fp8cpu {

struct Fp8Weight {
    const uint8_t* codes;  // (out, in) E4M3 codes, row-major
    const float* scales;   // (ceil(out / bo), nbi) dequantisation multipliers
    int64_t out, in, bi, bo, nbi;
    const uint8_t* rows4 = nullptr;  // the same codes in the 4-row layout (to_rows4), or null
    const float* scale_row(int64_t o) const { return scales + (o / bo) * nbi; }
};

/** Whether the 4-row layout serves a weight of `in` inputs and blocks of bi: both multiples of 64. */
inline bool rows4_fits(int64_t in, int64_t bi) { return in % 64 == 0 && bi % 64 == 0 && in > 0; }
/** dst (out * in bytes) = codes (out, in) in the 4-row layout; rows4_fits(in, bi) must hold. */
void to_rows4(const uint8_t* codes, int64_t out, int64_t in, uint8_t* dst);

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
/** out[i] = f32(code[o, k0 + i]) * scale(o, (k0 + i) / bi) for i < n (from rows4 where w has it). */
void row_to_f32(const Fp8Weight& w, int64_t o, int64_t k0, int64_t n, float* out);

// per-level implementations (the dispatchers above pick one)
Fp8X prepare_x_avx512(const float* x, int64_t in, std::vector<float>& buf);
void gemv_portable(const Fp8Weight& w, const float* x, int64_t r0, int64_t r1, float* y);
void gemv_avx2(const Fp8Weight& w, const float* x, int64_t r0, int64_t r1, float* y);
void gemv_avx512(const Fp8Weight& w, const Fp8X& x, int64_t r0, int64_t r1, float* y);
// one run of a row: c = its codes k0 .. k0 + n - 1 (contiguous), srow = the row's block scales
void row_to_f32_portable(const uint8_t* c, const float* srow, int64_t bi, int64_t k0, int64_t n, float* out);
void row_to_f32_avx2(const uint8_t* c, const float* srow, int64_t bi, int64_t k0, int64_t n, float* out);
void row_to_f32_avx512(const uint8_t* c, const float* srow, int64_t bi, int64_t k0, int64_t n, float* out);
// the same from the 4-row layout: g = the row's first run (its group's start + 64 (o % 4))
void row_to_f32_rows4_avx512(const uint8_t* g, const float* srow, int64_t bi, int64_t k0, int64_t n,
                             float* out);

}  // namespace lmscope::fp8cpu
