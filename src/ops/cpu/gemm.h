// Blocked f32 GEMM for prefill and training: C (M, N) (+)= op(A) (M, K) x op(B) (K, N).
// B may be stored in F32/F16/BF16 and is converted while it is packed into panels of NR columns
// (k-major, so one vector load covers NR outputs); A is read in place with scalar broadcasts.
// Micro-kernels: AVX-512 (12 x 32 tile), AVX2+FMA (6 x 16), portable; chosen by simd::active_isa().
// Threads split the N dimension in panel multiples (and M when N is small).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace lmscope {

struct GemmArgs {
    int64_t M = 0, N = 0, K = 0;
    // A: element (m, k) at a[m * lda + k], or a[k * lda + m] when a_trans
    const float* a = nullptr;
    int64_t lda = 0;
    bool a_trans = false;
    // B: element (k, n) at b[k * ldb + n], or b[n * ldb + k] when b_trans (a PyTorch Linear weight
    // (out, in) used as x W^T is the b_trans case with ldb = in)
    const void* b = nullptr;
    DType b_dtype = DType::F32;
    int64_t ldb = 0;
    bool b_trans = false;
    // Optional custom loader for quantised B (FP8 blocks, int4 groups): fills out[0..count) with
    // stored row `row`, columns col0..col0+count, dequantised to f32. The stored row is n when
    // b_trans, else k. When set, b / b_dtype are ignored.
    void (*b_loader)(const void* ctx, int64_t row, int64_t col0, int64_t count, float* out) = nullptr;
    const void* b_loader_ctx = nullptr;
    // Optional per-group scale along K, with a b_loader and b_trans false: B(k, n) = loaded(k, n) *
    // s(k / b_group, n), where b_scale(ctx, group, col0, count, out) fills out[0..count) with s(group, col0 ..)
    // (ctx: b_loader_ctx). The f32 kernels multiply it in while packing; the bf16 GEMM keeps the loaded values
    // (int4 codes minus zero point: small integers, exact in bf16) and scales each group's partial sums.
    int64_t b_group = 0;
    void (*b_scale)(const void* ctx, int64_t group, int64_t col0, int64_t count, float* out) = nullptr;
    // Optional, bf16 GEMM only, beside a b_loader: fills the kernel's panel of B's rows k0 .. k0+kc and 32
    // columns from n0 directly, out[kp * 32 + j] = bf16 bits of B(k0 + 2 kp, n0 + j) | of B(k0 + 2 kp + 1,
    // n0 + j) << 16 (unscaled, the b_loader's values), or returns false and the b_loader rows are used.
    bool (*b_pack_pairs)(const void* ctx, int64_t k0, int64_t kc, int64_t n0, uint32_t* out) = nullptr;
    float* c = nullptr;
    int64_t ldc = 0;
    bool accumulate = false;  // C += A B instead of C = A B
    const float* bias = nullptr;  // (N), added once (only when !accumulate)
};

/** Fast blocked GEMM on the thread pool. */
void gemm_cpu(const GemmArgs& g);
/** The same kernels on the calling thread only: for callers that already split work across the pool. */
void gemm_cpu_serial(const GemmArgs& g);
/** Reference: double accumulators, single thread. */
void gemm_ref(const GemmArgs& g);

/**
 * The GEMM on bf16 activations (ops.h, bf16 activation mode): A rounded to bf16 first (nearest even,
 * bf16_round_activations), B exact in bf16, products exact, f32 sums. Restricted to what the prefill
 * linears need: A row-major (!a_trans); B either BF16 storage (either order) or a b_loader with b_trans
 * false whose values are exact in bf16 (the AWQ codes), optionally with b_scale. With AVX512-BF16
 * (simd::has_avx512_bf16) a vdpbf16ps kernel (gemm_bf16.cpp); elsewhere the f32 kernels on the rounded
 * A: the same rounding, so the results agree across machines up to f32 summation order. K may be odd (a
 * zero pad completes the last k-pair); b_group must be even (a k-pair never straddles two groups).
 */
void gemm_bf16_cpu(const GemmArgs& g);
/**
 * For the GEMMs' loops, once columns n0 .. n0+nr of C are done: without accumulate, zero them when K == 0
 * (no kernel stored anything) and add the bias.
 */
void gemm_panel_epilogue(const GemmArgs& g, int64_t n0, int64_t nr);

// Pre-packed B, for callers that reuse one B many times (attention packs K^T and V once per call).
/** Width of a B panel at the active ISA (32 AVX-512, 16 otherwise). */
int64_t gemm_panel_width();
/**
 * Packs f32 B (K, N), element (k, n) at b[k * ldb + n] (b[n * ldb + k] when trans), into panels of
 * gemm_panel_width() = NR columns: out[p * K * NR + k * NR + j] = B(k, p * NR + j), zero past N.
 * out holds ceil(N / NR) * K * NR floats.
 */
void gemm_pack_panels(const float* b, int64_t ldb, bool trans, int64_t K, int64_t N, float* out);
/**
 * C (M, N) = (or += when accumulate) A (M, K) x B on the calling thread; A row-major with row stride
 * lda; B packed by gemm_pack_panels, panel p starting at bp + p * panel_stride (so a packed B of more
 * rows can be used from row k0 with bp = packed + k0 * NR and panel_stride = its K * NR).
 */
void gemm_packed(const float* a, int64_t lda, const float* bp, int64_t panel_stride, int64_t M, int64_t N, int64_t K,
                 float* c, int64_t ldc, bool accumulate);

}  // namespace lmscope
