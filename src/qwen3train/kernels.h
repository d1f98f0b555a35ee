// The Qwen3 layers that the GPT's kernels (gpt/kernels.h) do not have, as f32 forward/backward pairs
// (llm.c style): RMSNorm with a learnable weight (also q_norm / k_norm: rows of head_dim sharing one
// weight), SwiGLU, Hugging Face's rotate-half RoPE (+theta, f32 cos/sin tables of model/rope_table.h),
// Linear on gemm_cpu, and plain cross-entropy. Conventions as gpt/kernels.h: backward OVERWRITES
// activation gradients unless `accumulate` says +=, and ACCUMULATES parameter gradients. Work runs on
// ThreadPool::global(); results do not depend on the thread count (every reduction has a fixed order).
#pragma once

#include <cstdint>

namespace lmscope::qwen3train {

/**
 * transformers' Qwen3RMSNorm over rows of C: xhat = x * rstd, rstd = 1/sqrt(mean(x^2) + eps),
 * out = weight * xhat. xhat (N, C) and rstd (N) are kept for the backward.
 */
void rmsnorm_forward(float* out, float* xhat, float* rstd, const float* inp, const float* weight, int64_t N,
                     int64_t C, float eps);
/** g = dout * weight: dinp = rstd (g - xhat mean(g xhat)) (+= when accumulate); dweight += sum_n dout xhat. */
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* xhat, const float* rstd,
                      const float* weight, int64_t N, int64_t C, bool accumulate);

/** out = silu(gate) * up (n elements). In place on gate allowed. */
void swiglu_forward(float* out, const float* gate, const float* up, int64_t n);
/** dgate = dout up silu'(gate), dup = dout silu(gate). */
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n);

/**
 * HF RoPE on (N, H, HD) rows at positions n % T, halves (i, i + HD/2), cos/sin (T, HD/2):
 * y1 = x1 cos - x2 sin, y2 = x2 cos + x1 sin. In place allowed.
 */
void rope_forward(float* out, const float* inp, const float* cos, const float* sin, int64_t N, int64_t T, int64_t H,
                  int64_t HD);
/** The transpose: dx1 = dy1 cos + dy2 sin, dx2 = dy2 cos - dy1 sin. In place allowed. */
void rope_backward(float* dinp, const float* dout, const float* cos, const float* sin, int64_t N, int64_t T,
                   int64_t H, int64_t HD);


/** losses (N) = -log softmax(logits)[target] (0 where target == -1); returns the number counted. */
int64_t crossentropy_forward(const float* logits, float* losses, const int32_t* targets, int64_t N, int64_t V);
/** In place: logits -> (softmax - onehot) * scale; rows with target -1 become 0. */
void crossentropy_backward(float* logits, const int32_t* targets, int64_t N, int64_t V, float scale);

}  // namespace lmscope::qwen3train
