// The batch-1 decode step of a small BF16 model as one persistent kernel (decode_persistent.cu): one
// block per SM runs every layer, the phases (q|k|v GEMV, attention, o GEMV, gate|up GEMV + SwiGLU,
// down GEMV) separated by grid barriers instead of kernel boundaries. Each GEMV phase's weights are
// copied into shared memory by the TMA one phase ahead (two buffers), so that their DRAM stream
// overlaps the phase before, the barrier and the staging of the phase's input. Used by the CUDA decoder
// (decoder_cuda.cu), when LMSCOPE_CUDA_PERSISTENT=1, for shapes whose phases fit shared memory; everything
// else keeps the one-kernel-per-op decode.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lmscope::cuda {

/** Device pointers of one layer: f32 norms / bias, BF16 weights (out, in) row-major. */
struct PersistentLayer {
    const float *in_norm = nullptr, *post_norm = nullptr, *q_norm = nullptr, *k_norm = nullptr;
    const float* qkv_bias = nullptr;  // (Hq + 2 Hkv) D or null
    const float* o_bias = nullptr;    // H or null (Llama's attention_bias)
    const void *qkv = nullptr, *o = nullptr, *gate_up = nullptr, *down = nullptr;
};

struct PersistentShape {
    int64_t H = 0, I = 0, Hq = 0, Hkv = 0, D = 0;
    float eps = 1e-6f;
};

class PersistentDecode {
  public:
    /** The plan for this device, or null with the reason in *why when the shape is not taken. */
    static std::unique_ptr<PersistentDecode> create(const PersistentShape& shape,
                                                    const std::vector<PersistentLayer>& layers,
                                                    const float* inv_freq, std::string* why);
    ~PersistentDecode();
    PersistentDecode(const PersistentDecode&) = delete;
    PersistentDecode& operator=(const PersistentDecode&) = delete;

    /**
     * Enqueues every layer for one row: x (H) f32 is the residual stream in and out, xb (H) scratch;
     * pos (device, one int) the new token's position; kc / vc the BF16 caches of layer 0 with
     * layer_elems elements per layer, kv row stride Hkv D (batch 1).
     */
    void launch(float* x, float* xb, const int32_t* pos, void* kc, void* vc, int64_t layer_elems,
                cudaStream_t stream, bool pdl) const;

  private:
    PersistentDecode() = default;
    struct Plan;
    std::unique_ptr<Plan> p_;
};

/**
 * LMSCOPE_CUDA_PERSISTENT: 1 uses the persistent step where it applies; 0 (the default) never: it is
 * correct but, measured on an H100, slower than the kernel-per-op step (bench/cuda_notes.md).
 */
bool persistent_decode_enabled();

}  // namespace lmscope::cuda
