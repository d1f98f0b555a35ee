// The attention half of a batch-1 decode layer as one kernel (decode_attn_block.cu):
//   x += W_o attention(q/k norm + RoPE(W_qkv RMSNorm(x)))
// with the new K / V row written to the cache. It takes the place of three kernels of the per-op step
// (the q|k|v GEMV, the cluster attention, the o GEMV) and so of two kernel boundaries a layer, which
// the knockouts of cuda_notes (sixth session) put at ~4 us each in the 0.6B step. Used by the CUDA
// decoder (decoder_cuda.cu) for one-row decode steps of BF16 models whose per-kv-head weights fit a
// cluster's shared memory (Qwen3-0.6B-class), when LMSCOPE_CUDA_ATTN_BLOCK=1: it is correct, but on an
// H100 the step is slower with it than without (bench/cuda_notes.md, eighth session).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>

#include "ops/cuda/ops_cuda.h"

namespace lmscope::cuda {

/** One layer's device pointers: f32 norms / biases, BF16 weights (out, in) row-major. */
struct AttnBlockLayer {
    const float *in_norm = nullptr, *q_norm = nullptr, *k_norm = nullptr;
    const float* qkv_bias = nullptr;  // (Hq + 2 Hkv) D or null
    const float* o_bias = nullptr;    // H or null
    const void* qkv = nullptr;        // ((Hq + 2 Hkv) D, H): the q heads, then the k heads, then the v heads
    const void* o = nullptr;          // (H, Hq D)
};

struct AttnBlockShape {
    int64_t H = 0, Hq = 0, Hkv = 0, D = 0;
    float eps = 1e-6f;
};

class AttnBlockDecode {
  public:
    /** The plan for this device, or null with the reason in *why when the shape is not taken. */
    static std::unique_ptr<AttnBlockDecode> create(const AttnBlockShape& shape, const float* inv_freq,
                                                   std::string* why);
    ~AttnBlockDecode();
    AttnBlockDecode(const AttnBlockDecode&) = delete;
    AttnBlockDecode& operator=(const AttnBlockDecode&) = delete;

    /** The RoPE table for positions [0, n) (on the stream; before the launches of a cache that long). */
    void reserve_positions(int64_t n, cudaStream_t stream);

    /**
     * Enqueues one layer for one row (rows: its position and sequence, on the device): x (H) f32 is the
     * residual stream, in and out; kv the layer's BF16 cache.
     */
    void launch(const AttnBlockLayer& layer, float* x, const RowPos& rows, const KvView& kv,
                cudaStream_t stream, bool pdl) const;

    /** The cluster size, how many clusters the device holds at once, shared memory a block. */
    std::string describe() const;

  private:
    AttnBlockDecode() = default;
    struct Plan;
    std::unique_ptr<Plan> p_;
};

/** LMSCOPE_CUDA_ATTN_BLOCK: 1 uses the attention block where it applies; 0 (the default) never. */
bool attn_block_enabled();

}  // namespace lmscope::cuda
