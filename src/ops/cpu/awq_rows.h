// AWQ int4 weights (AutoAWQ gemm layout, read in place) for the fast CPU linear (linear_awq.cpp):
// a decode GEMV over a range of output columns and a row dequantiser that the prefill GEMM calls
// while it packs weight panels. Portable and AVX2 levels in awq_rows.cpp, AVX-512 in
// awq_rows_avx512.cpp; the entry points dispatch on simd::active_isa().
//
// The GEMV factors the zero point out of each group g (x_g: the group's slice of x):
//   y[n] = sum_g s[g, n] * (sum_k x_g[k] * q[k, n]  -  z[g, n] * sum_k x_g[k])
// so the inner loop is nibble -> f32 and one FMA per weight; the group sums of x come from prepare_x.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "quant/awq_pack.h"

namespace lmscope::awqcpu {

struct AwqWeight {
    const int32_t* qw;  // qweight (in, pc): 8 nibbles per int32, logical column 8c + kAwqOrder[i] at bits 4i
    const int32_t* tiles;  // awq_tile_qweight's layout (for gemv_i16), or null
    const int32_t* qz;     // qzeros (ng, pc), packed like qweight
    const float* sf;       // scales (ng, out) as f32, or null when F16
    const uint16_t* sh;    // scales (ng, out) as F16 bits, or null
    int64_t in, out, pc, g, ng;
    const int32_t* groups = nullptr;  // awq_tile_groups' records (with tiles), or null
    int64_t grec = 0;                 // int32 per record
};

/** Where the f32 GEMV reads packed column c (c % 8 == 0) of row 0 (gemm layout), and the distance between rows. */
inline const int32_t* column_base(const AwqWeight& w, int64_t c, int64_t& row_stride) {
    row_stride = w.pc;
    return w.qw + c;
}

/** Packed int32 c of row k (gemm layout). */
inline const int32_t* packed_at(const AwqWeight& w, int64_t k, int64_t c) { return w.qw + k * w.pc + c; }

/** The scale s[gi, n] as f32. */
inline float scale_at(const AwqWeight& w, int64_t gi, int64_t n) {
    return w.sf ? w.sf[gi * w.out + n] : f16_to_f32(w.sh[gi * w.out + n]);
}

/** q - z of Wt[k, n]: an integer in [-15, 15]. */
inline float code_at(const AwqWeight& w, int64_t k, int64_t n) {
    return static_cast<float>(awq_unpack_nibble(w.qw + k * w.pc, n) - awq_unpack_nibble(w.qz + (k / w.g) * w.pc, n));
}

/** Wt[k, n] = (q - z) * s, exact in f32; without the scale when !scaled. */
inline float weight_at(const AwqWeight& w, int64_t k, int64_t n, bool scaled = true) {
    return scaled ? code_at(w, k, n) * scale_at(w, k / w.g, n) : code_at(w, k, n);
}

/**
 * The integer GEMV (AVX-512 VNNI): x quantised per group gi to int16, x ~ dx[gi] * xq (dx = max|x| / 32767,
 * round to nearest), against the tiled codes with vpdpwssd (exact int32 sums);
 *   y[n] = sum_gi s[gi, n] * dx[gi] * (sum_k xq[k] q[k, n] - z[gi, n] * xs[gi]),  xs[gi] = sum_k xq[k].
 * The quantisation error of x is at most dx / 2 = max|x| / 65534 per input (relative ~1.5e-5 on y; the f32
 * kernel's arithmetic does 3 ops per weight where this does about 1: issue 8's int4 decode was compute-bound).
 */
struct AwqX16 {
    const int32_t* xp;  // (in / 2): per 8 inputs 8 b .., 4 pairs (xq[8 b + i] low, xq[8 b + 4 + i] high 16 bits)
    const float* dx;    // (ng)
    const int32_t* xs;  // (ng)
};
/** Whether gemv_i16 runs this weight here: tiles present, g % 8 == 0, g <= 1024, AVX-512 level with VNNI. */
bool gemv_i16_fits(const AwqWeight& w);
/** Fills the buffers of AwqX16 for one token (xp in / 2, dx and xs ng); false if x is not finite. */
bool quantize_x16(const AwqWeight& w, const float* x, int32_t* xp, float* dx, int32_t* xs);
/** y[n] for the output columns of tiles [t0, t1) (16 columns each; those past out are not written). */
void gemv_i16(const AwqWeight& w, const AwqX16& x, int64_t t0, int64_t t1, float* y);

/** Sums of x (in) over each group of g inputs, into xg (ng). */
void group_sums(const AwqWeight& w, const float* x, float* xg);
/** For one token x with group sums xg: y[n] = sum_k x[k] * Wt[k, n] for packed columns [p0, p1) (n = 8 p0
 * ..). */
void gemv(const AwqWeight& w, const float* x, const float* xg, int64_t p0, int64_t p1, float* y);
/** out[i] = Wt[k, n0 + i] = (q - z) * s for i < n; q - z only when !scaled (the bf16 GEMM scales per group). */
void row_to_f32(const AwqWeight& w, int64_t k, int64_t n0, int64_t n, float* out, bool scaled);
/** out[i] = s[gi, n0 + i] for i < n. */
void group_scales(const AwqWeight& w, int64_t gi, int64_t n0, int64_t n, float* out);
/**
 * The bf16 GEMM's k-pair panel (GemmArgs::b_pack_pairs) of q - z: out[kp * 32 + j] = bf16(q - z)(k0 + 2 kp,
 * n0 + j) | bf16(q - z)(k0 + 2 kp + 1, n0 + j) << 16, from the tiled copy at the AVX-512 level; false (nothing
 * written) without tiles, below AVX-512, or for a panel past out or not aligned to the 8 x 16 tiles.
 */
bool pack_pairs(const AwqWeight& w, int64_t k0, int64_t kc, int64_t n0, uint32_t* out);

// per-level implementations (the dispatchers above pick one)
void gemv_portable(const AwqWeight& w, const float* x, const float* xg, int64_t p0, int64_t p1, float* y);
void gemv_avx2(const AwqWeight& w, const float* x, const float* xg, int64_t p0, int64_t p1, float* y);
void gemv_avx512(const AwqWeight& w, const float* x, const float* xg, int64_t p0, int64_t p1, float* y);
void row_to_f32_portable(const AwqWeight& w, int64_t k, int64_t n0, int64_t n, float* out, bool scaled);
void row_to_f32_avx2(const AwqWeight& w, int64_t k, int64_t n0, int64_t n, float* out, bool scaled);
void row_to_f32_avx512(const AwqWeight& w, int64_t k, int64_t n0, int64_t n, float* out, bool scaled);
bool pack_pairs_avx512(const AwqWeight& w, int64_t k0, int64_t kc, int64_t n0, uint32_t* out);

}  // namespace lmscope::awqcpu
