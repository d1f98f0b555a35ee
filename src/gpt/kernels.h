// The GPT's layers as plain f32 functions, llm.c style: <layer>_forward / <layer>_backward.
// Dimension letters: B = batch, T = sequence, N = B*T rows, C = channels, NH = query heads,
// NKV = key/value heads, HD = head_dim, V = vocab. All buffers are contiguous row-major.
// Backward functions OVERWRITE activation gradients (dinp) unless they say "+=", and ACCUMULATE
// parameter gradients (dweight +=), so a caller zeroes parameter gradients once per step.
// The expensive ones run on ThreadPool::global(); the results do not depend on the thread count.
#pragma once

#include <cstdint>
#include <vector>

namespace lmscope::gpt {

/**
 * C (M, Ncol) = A (M, K) · B (K, Ncol), or C += when accumulate. A's element (i, k) is at
 * a[i * a_rs + k * a_cs] (so A may be a transposed view); B and C are row-major with ldb / ldc.
 */
void gemm(float* c, int64_t ldc, const float* a, int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb,
          int64_t M, int64_t Ncol, int64_t K, bool accumulate);
/** out (cols, rows) = in (rows, cols)^T */
void transpose(float* out, const float* in, int64_t rows, int64_t cols);

/** out (N, C) = wte[ids[n]] */
void encoder_forward(float* out, const int32_t* ids, const float* wte, int64_t N, int64_t C);
/** dwte[ids[n]] += dout[n] */
void encoder_backward(float* dwte, const float* dout, const int32_t* ids, int64_t N, int64_t C);

/** Weightless RMSNorm over rows of C: out = x * rstd, rstd = 1/sqrt(mean(x^2) + eps); rstd (N) kept. */
void rmsnorm_forward(float* out, float* rstd, const float* inp, int64_t N, int64_t C, float eps);
/** dinp = rstd * (dout - out * mean(dout * out)); `accumulate`: dinp += instead. */
void rmsnorm_backward(float* dinp, const float* dout, const float* out, const float* rstd, int64_t N, int64_t C,
                      bool accumulate);

/** out (N, OC) = inp (N, IC) · W^T, W (OC, IC) as PyTorch's Linear stores it. */
void matmul_forward(float* out, const float* inp, const float* w, int64_t N, int64_t IC, int64_t OC);
/** dinp (N, IC) = dout · W (or += when accumulate_dinp; skipped when dinp is null); dw (OC, IC) += dout^T · inp. */
void matmul_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, int64_t N,
                     int64_t IC, int64_t OC, bool accumulate_dinp);

/**
 * nanochat RoPE on (N, H, HD) rows at positions n % T, halves (i, i + HD/2):
 * y1 = x1 cos + x2 sin, y2 = -x1 sin + x2 cos; cos/sin are (T, HD/2). In-place allowed.
 */
/** The rotation both conventions share: y1 = x1 c + x2 (sign s), y2 = -x1 (sign s) + x2 c. sign +1 is
 *  nanochat's -theta rotation, sign -1 the HF (+theta) one; the products are identical either way. */
void rope_rotate_forward(float* out, const float* inp, const float* cos, const float* sin, float sin_sign, int64_t N,
                         int64_t T, int64_t H, int64_t HD);
void rope_rotate_backward(float* dinp, const float* dout, const float* cos, const float* sin, float sin_sign,
                          int64_t N, int64_t T, int64_t H, int64_t HD);
void rope_forward(float* out, const float* inp, const float* cos, const float* sin, int64_t N, int64_t T,
                  int64_t H, int64_t HD);
/** dx1 = dy1 cos - dy2 sin, dx2 = dy1 sin + dy2 cos. In-place allowed. */
void rope_backward(float* dinp, const float* dout, const float* cos, const float* sin, int64_t N, int64_t T,
                   int64_t H, int64_t HD);
/** nanochat v0's tables: inv_freq = 1/base^(2i/HD) and angles t*inv_freq in f32, cos/sin rounded to bf16. */
void rope_tables(std::vector<float>& cos, std::vector<float>& sin, int64_t T, int64_t HD, double base);

/**
 * Causal attention. q (B, T, NH, HD), k/v (B, T, NKV, HD); head h reads kv head h / (NH / NKV).
 * att (B, NH, T, T) receives the softmax probabilities (row t, columns <= t); out (B, T, NH, HD).
 */
void attention_forward(float* out, float* att, const float* q, const float* k, const float* v, int64_t B,
                       int64_t T, int64_t NH, int64_t NKV, int64_t HD, float scale);
/** dq, dk, dv overwritten; datt is (B, NH, T, T) scratch. */
void attention_backward(float* dq, float* dk, float* dv, float* datt, const float* dout, const float* att,
                        const float* q, const float* k, const float* v, int64_t B, int64_t T, int64_t NH,
                        int64_t NKV, int64_t HD, float scale);

/** out = relu(inp)^2 */
void relu2_forward(float* out, const float* inp, int64_t n);
/** dinp = 2 relu(inp) dout */
void relu2_backward(float* dinp, const float* dout, const float* inp, int64_t n);

/**
 * logits (N, V): raw lm_head outputs in, soft-capped cap*tanh(z/cap) out (in place). losses (N):
 * -log softmax(capped)[target], 0 where target == -1. Returns the number of counted targets.
 */
int64_t softcap_crossentropy_forward(float* logits, float* losses, const int32_t* targets, int64_t N, int64_t V,
                                     float cap);
/**
 * In place: capped logits -> gradient of (sum of losses) * scale w.r.t. the RAW logits:
 * (softmax - onehot) * scale * (1 - (capped/cap)^2); rows with target -1 become 0.
 */
void softcap_crossentropy_backward(float* logits, const int32_t* targets, int64_t N, int64_t V, float cap,
                                   float scale);

}  // namespace lmscope::gpt
