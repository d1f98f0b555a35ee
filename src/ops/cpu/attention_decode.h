// The AVX-512 key-range kernel of decode attention (attention_decode_avx512.cpp), for attention.cpp's
// flash-decoding: see there.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "ops/ops.h"

namespace lmscope::attncpu {

/** Whether key_range_avx512 takes this shape: head_dim a multiple of 16 up to 128, at most 128 query heads. */
bool key_range_avx512_fits(const AttentionShape& s);

/**
 * Partial attention of one query token qt (Hq, D) over keys [ja, jb) of a cache k, v (S, Hkv, D) of
 * dtype dt (F32 or F16): per head h, the running max m[h], the sum l[h] and the unnormalised
 * acc[h * D ..] of an online softmax. Needs the AVX-512 level.
 */
void key_range_avx512(const float* qt, const void* k, const void* v, DType dt, const AttentionShape& s, int64_t ja,
                      int64_t jb, float* m, float* l, float* acc);

}  // namespace lmscope::attncpu
