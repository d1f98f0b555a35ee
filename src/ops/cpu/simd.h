// Small f32 vector primitives with run-time ISA selection (portable, AVX2+FMA+F16C, AVX-512), shared by
// the fast CPU ops. LMSCOPE_ISA=portable|avx2|avx512 caps the level (tests run every level).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace lmscope::simd {

enum class Isa { Portable = 0, Avx2 = 1, Avx512 = 2 };  // ordered: each level includes the ones below
/** Best ISA this CPU supports, unless LMSCOPE_ISA overrides it. */
Isa active_isa();
const char* isa_name(Isa isa);
bool isa_supported(Isa isa);
/** For tests: force an ISA (must be supported). */
void force_isa(Isa isa);
/**
 * Whether the vdpbf16ps kernels run (gemm_bf16.cpp): the active level is AVX-512 (so LMSCOPE_ISA below
 * avx512 turns them off) and the CPU has AVX512-BF16, unless a test turned them off.
 */
bool has_avx512_bf16();
/** Whether the CPU has AVX512-BF16 (and the AVX-512 level), whatever the active level. */
bool avx512_bf16_supported();
/** For tests: the AVX-512 level without (false) or with (true; the CPU must have it) the AVX512-BF16 kernels. */
void force_avx512_bf16(bool on);

float dot_f32(const float* a, const float* b, int64_t n);
/** y += a * x, x a stored row (F32/F16/BF16) converted in registers. */
void axpy_row(float a, const void* x, DType dt, float* y, int64_t n);
/**
 * out[i] = dot(a[i], b[i]) for i < 4, all of length n (the four reduced together); a f32, b stored rows
 * of one dtype (F32/F16/BF16).
 */
void dot_row_pairs4(const float* const a[4], const void* const b[4], DType dt, int64_t n, float out[4]);
/** out (n) = x as IEEE f16, round to nearest even; values beyond +-65504 (infinities too) saturate, NaN stays NaN. */
void f32_to_f16_row(const float* x, int64_t n, uint16_t* out);
/** Dot of an f32 vector with a stored weight row (F32/F16/BF16), converting in registers. */
float dot_weight_row(const float* x, const void* w_row, DType dt, int64_t n);
/** Row of a stored weight (F32/F16/BF16) to f32. */
void row_to_f32(const void* w_row, DType dt, int64_t n, float* out);
/**
 * acc[i][j] = dot(x_i, w_j) for i < 4 tokens and j < 2 rows, all f32 of length n.
 * x rows at x + i * x_stride; w rows at w + j * w_stride.
 */
void dot_4x2(const float* x, int64_t x_stride, const float* w, int64_t w_stride, int64_t n, float acc[4][2]);

}  // namespace lmscope::simd
