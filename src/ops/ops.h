// The inference ops of the decoder, on f32 activations. Each op has a scalar reference `<op>_ref`
// (ops/ref/, double accumulators, single thread: the oracle for tests) and a fast CPU version
// `<op>_cpu` (ops/cpu/, threads + SIMD) with the same signature; `<op>` dispatches to the fast one
// unless reference mode is on (LMSCOPE_REF=1 or set_reference_mode(true)).
// Dimension letters: T tokens in this call, S keys in the cache, H/Hq/Hkv heads, D head_dim, C channels.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "model/weights.h"

namespace lmscope {

void set_reference_mode(bool on);
bool reference_mode();

/** out (T, H) = table[ids] converted to f32; table (V, H) any float dtype. */
void embedding_ref(const int32_t* ids, int64_t T, const Tensor& table, float* out);
void embedding_cpu(const int32_t* ids, int64_t T, const Tensor& table, float* out);
void embedding(const int32_t* ids, int64_t T, const Tensor& table, float* out);

/**
 * y (R, C) = x / sqrt(mean(x^2) + eps) * weight, per row, in transformers' order (normalise in f32,
 * then multiply by the weight). weight (C) any float dtype, or undefined for a weightless norm.
 * In-place (y == x) is allowed.
 */
void rms_norm_ref(const float* x, int64_t R, int64_t C, const Tensor& weight, float eps, float* y);
void rms_norm_cpu(const float* x, int64_t R, int64_t C, const Tensor& weight, float eps, float* y);
void rms_norm(const float* x, int64_t R, int64_t C, const Tensor& weight, float eps, float* y);

/** y (T, out) = x (T, in) W^T + b; W (out, in) F32/F16/BF16. */
void linear_ref(const float* x, int64_t T, const Linear& w, float* y);
void linear_cpu(const float* x, int64_t T, const Linear& w, float* y);
void linear(const float* x, int64_t T, const Linear& w, float* y);

/**
 * BF16 activation mode (set_bf16_activation_mode(true) or LMSCOPE_BF16_ACT=1; off by default): the prefill
 * linears (T >= kBf16ActivationMinTokens tokens) whose weights are exact in bf16 round x to bf16 first
 * (bf16_round_activations) and multiply with bf16 products and f32 sums: BF16 weights, and AWQ int4
 * ((q - z) is a small integer; the group scale multiplies each group's f32 partial sum). With AVX512-BF16 that
 * is the vdpbf16ps GEMM (ops/cpu/gemm_bf16.cpp, ~1.8x the f32 FMA ceiling); elsewhere the f32 kernels on
 * the rounded x: each linear agrees across machines to f32 summation order (docs/bf16_activations.md).
 * Unchanged: decode (T < 4: the GEMVs are memory-bound, f32 costs nothing there), F32/F16 weights (rounding
 * them to bf16 would lose bits), block FP8 (already faster than llama.cpp's Q8_0 here; see
 * set_fp8_activation_mode), training (gemm_cpu). The reference ops honour it too.
 */
void set_bf16_activation_mode(bool on);
bool bf16_activation_mode();
inline constexpr int64_t kBf16ActivationMinTokens = 4;  // the fast linears' prefill threshold (T >= 4: GEMM)
/** Whether weights of this format and dtype are the mode's: exact in bf16 (BF16 dense, AWQ int4). */
bool bf16_activation_weights(LinearFormat format, DType weight_dtype);
/** Whether a linear of T tokens over such weights rounds its x now: the mode is on and T >= 4. */
bool bf16_activations_apply(int64_t T, LinearFormat format, DType weight_dtype);
/**
 * out (n) = x rounded to bf16 and back to f32, as vcvtne2ps2bf16 does: nearest even, denormals to a
 * signed zero, NaN quietened, overflow to +-inf. Exact, so it has no reference twin.
 */
void bf16_round_activations(const float* x, int64_t n, float* out);
/** For the reference linears: x (T, w.in()) rounded into buf when bf16_activations_apply, else x itself. */
const float* bf16_activations_ref(const float* x, int64_t T, const Linear& w, std::vector<float>& buf);

/**
 * ys[i] = x W_i^T + b_i for n <= 4 linears of any format that read the same x (T, in): q/k/v, gate/up.
 * The fast decode (T < 4) runs them in one parallel_for (ops/cpu/linear_decode.h); otherwise, and in
 * reference mode, it is n calls of linear().
 */
void linear_shared_input_cpu(const float* x, int64_t T, const Linear* const* ws, float* const* ys, int n);
void linear_shared_input(const float* x, int64_t T, const Linear* const* ws, float* const* ys, int n);

/**
 * Block-FP8 linear (w.format == LinearFormat::Fp8Block): y = x W^T + b with W read as F8_E4M3 codes and
 * the block scale applied on the fly (W[o, i] = f32(code) * scale[o / block_out, i / block_in]); the
 * weight is never expanded. Default weight-only: x stays f32 and the result reproduces the linear over
 * the dequantised weight. In FP8 activation mode (set_fp8_activation_mode(true) or LMSCOPE_FP8_ACT=1),
 * each token's x is first quantised per group of block_in channels (1x128, dynamic, as DeepSeek-V3 /
 * vLLM): s = amax / 448 (1 for an all-zero group), x_q = RNE(clamp(x / s, +-448)) to E4M3, then
 * y[t, o] = sum_kb (sum_{i in kb} x_q[t, i] * w_q[o, i]) * s_x[t, kb] * s_w[o / block_out, kb] + b[o].
 */
void linear_fp8_ref(const float* x, int64_t T, const Linear& w, float* y);
void linear_fp8_cpu(const float* x, int64_t T, const Linear& w, float* y);
void set_fp8_activation_mode(bool on);
bool fp8_activation_mode();
/**
 * Dynamic per-token-group activation quantisation of one row x (n), groups of `group` channels:
 * codes (n) as the f32 value of each E4M3 code, scales (ceil(n / group)). x[i] ~ codes[i] * scales[i / group].
 */
void fp8_quantize_activation_row(const float* x, int64_t n, int64_t group, float* codes, float* scales);

/**
 * Rotate-half RoPE in place on x (T, H, D) with per-token tables cos/sin (T, D/2):
 * x[i] <- x[i] cos - x[i+D/2] sin, x[i+D/2] <- x[i+D/2] cos + x[i] sin  (HF convention, +theta).
 */
void rope_ref(float* x, int64_t T, int64_t H, int64_t D, const float* cos, const float* sin);
void rope_cpu(float* x, int64_t T, int64_t H, int64_t D, const float* cos, const float* sin);
void rope(float* x, int64_t T, int64_t H, int64_t D, const float* cos, const float* sin);

/**
 * Causal GQA attention over a KV cache, never materialising (T, S) scores.
 * q (T, Hq, D); k, v (S, Hkv, D) with S >= pos0 + T; query t sits at position pos0 + t and attends
 * keys 0..pos0+t; query head h uses kv head h / (Hq / Hkv). out (T, Hq, D). Softmax in f32.
 */
struct AttentionShape {
    int64_t T, pos0, Hq, Hkv, D;
    float scale;
};
void attention_ref(const float* q, const float* k, const float* v, const AttentionShape& s, float* out);
void attention_cpu(const float* q, const float* k, const float* v, const AttentionShape& s, float* out);
void attention(const float* q, const float* k, const float* v, const AttentionShape& s, float* out);
/** The same over a 16-bit KV cache: k, v hold IEEE binary16 values (converted to f32 as they are read). */
void attention_ref(const float* q, const uint16_t* k, const uint16_t* v, const AttentionShape& s, float* out);
void attention_cpu(const float* q, const uint16_t* k, const uint16_t* v, const AttentionShape& s, float* out);
void attention(const float* q, const uint16_t* k, const uint16_t* v, const AttentionShape& s, float* out);

/**
 * out (n) = x rounded to IEEE f16 (nearest even), values beyond +-65504 (infinities too) saturated to +-65504, NaN kept:
 * how the decoder stores K and V in a 16-bit cache. Exact, so it has no reference twin.
 */
void to_f16_saturated(const float* x, int64_t n, uint16_t* out);

/** out (n) = cap * tanh(x / cap): logit soft-capping (the GPT's head, as nanochat / Gemma 2); out == x allowed. */
void softcap_ref(const float* x, int64_t n, float cap, float* out);
void softcap_cpu(const float* x, int64_t n, float cap, float* out);
void softcap(const float* x, int64_t n, float cap, float* out);

/** out (n) = silu(gate) * up. */
void silu_mul_ref(const float* gate, const float* up, int64_t n, float* out);
void silu_mul_cpu(const float* gate, const float* up, int64_t n, float* out);
void silu_mul(const float* gate, const float* up, int64_t n, float* out);

}  // namespace lmscope
