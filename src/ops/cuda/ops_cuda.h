// CUDA versions of the inference ops of src/ops/ops.h: `<op>_cuda` beside `<op>_ref` (ops/ref/) and
// `<op>_cpu` (ops/cpu/), same argument order, every pointer device memory, work enqueued on `stream`
// (each launch checked). Activations are f32 unless a dtype argument says otherwise; weights stay in
// their stored dtype (DeviceLinear). Plus the fused ops the CUDA decoder uses:
//   linear_gemv_cuda   decode GEMV (T <= 8 per weight pass), input transform fused (RMSNorm or
//                      silu(gate)*up) and the residual add fused into the store; dense, FP8-block and
//                      AWQ int4 weights (dequantised in registers)
//   upload_linear_cuda / dequantize_linear_cuda  device layouts of the quantized formats
//   sample_cuda        temperature / top-k / top-p sampling (sort on the GPU, one draw per row)
//   linear_gemm_cuda   cuBLAS GEMM on 16-bit activations for prefill / large batches
//   qkv_rope_cache_cuda q/k RMSNorm + RoPE (angles from positions on the device) + K/V cache write
//   attention_decode_cuda  split-K attention over the KV cache (one query row per sequence or token)
//   attention_prefill_cuda flash-attention (FA2 on mma.sync), never (T, T) in memory
// Dimension letters: T tokens/rows, S keys, Hq/Hkv heads, D head_dim, I intermediate, V vocab.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "model/sampler.h"
#include "model/weights.h"
#include "ops/ops.h"

namespace lmscope::cuda {

/** A weight in device memory, stored dtype. */
struct DeviceTensor {
    DType dtype = DType::F32;
    const void* data = nullptr;
};

/**
 * A linear layer in device memory, in the layout the kernels read (upload_linear_cuda makes it):
 *   Dense     weight (out, in) in `dtype` (F32/F16/BF16)
 *   Fp8Block  weight = E4M3 codes (out, in), 1 byte each; scale = f32 block scales (scale rows,
 *             ceil(in / block)); scale_row (out) = the scale row of each output row, so that
 *             concatenations of linears whose `out` is not a multiple of the block size stay exact
 *   AwqInt4   weight = u32 (out, in / 8): 8 consecutive input columns of one output row per word,
 *             nibble p holding column 8w + (p < 4 ? 2p : 2(p - 4) + 1) (AutoAWQ's interleave, so
 *             that (w >> 4j) & 0x000F000F yields columns 2j, 2j+1 as two f16 lanes); scale = u32
 *             (out, in / block): f16 scale in the low half, f16 (1024 + zero) in the high half
 * For the quantized formats `dtype` is the 16-bit dtype (BF16/F16) their dequantised copy takes
 * for cuBLAS (linear_gemm_cuda): the dtype of the activations there.
 */
struct DeviceLinear {
    LinearFormat format = LinearFormat::Dense;
    DType dtype = DType::BF16;
    const void* weight = nullptr;
    const float* bias = nullptr;          // (out) f32 or null
    const void* scale = nullptr;          // Fp8Block / AwqInt4
    const int32_t* scale_row = nullptr;   // Fp8Block
    int64_t in = 0, out = 0;
    int64_t block = 128;                  // Fp8Block: block_in; AwqInt4: group size
};

/** Device memory that lives as long as the weights using it (cudaMalloc, freed by the destructor). */
class DeviceArena {
public:
    DeviceArena() = default;
    ~DeviceArena();
    DeviceArena(const DeviceArena&) = delete;
    DeviceArena& operator=(const DeviceArena&) = delete;
    void* alloc(size_t bytes);
    /** Bytes allocated so far. */
    size_t bytes() const { return bytes_; }

private:
    std::vector<void*> ptrs_;
    size_t bytes_ = 0;
};

/**
 * Uploads host linears of one format and one `in` (F32/F16/BF16 of one dtype, Fp8Block with one
 * block_in, or AwqInt4 with one group size), concatenated along `out` (q|k|v, gate|up), into
 * `arena`, in DeviceLinear's layout: AWQ is repacked on the GPU, FP8 codes are copied and their
 * scale rows concatenated (scale_row maps each output row to its part's block row). The biases,
 * when any part has one, are concatenated as f32 (zeros for parts without). `dtype16` is the
 * DeviceLinear::dtype of a quantized result. Error (one line, naming the linear) when they differ.
 */
DeviceLinear upload_linear_cuda(const std::vector<const Linear*>& parts, DeviceArena& arena,
                                DType dtype16 = DType::BF16, cudaStream_t stream = nullptr);

/**
 * Dense (out, in) copy of a quantized weight in w.dtype (BF16/F16) into `dst` (out * in * 2 bytes):
 * FP8 code * block scale, AWQ (q - z) * s, each in f32 then rounded once. Returns the dense view
 * (same bias). Dense weights are returned unchanged.
 */
DeviceLinear dequantize_linear_cuda(const DeviceLinear& w, void* dst, cudaStream_t stream = nullptr);

/** out (T, H) f32 = table[ids]; ids device (T). */
void embedding_cuda(const int32_t* ids, int64_t T, DeviceTensor table, int64_t H, float* out,
                    cudaStream_t stream = nullptr);

/** y (R, C) = rms_norm(x) * weight (f32 weight or null), y in `y_dtype` (F32/BF16/F16). y == x allowed for F32. */
void rms_norm_cuda(const float* x, int64_t R, int64_t C, const float* weight, float eps, void* y,
                   DType y_dtype = DType::F32, cudaStream_t stream = nullptr);

/** Rotate-half RoPE in place on x (T, H, D) with tables cos/sin (T, D/2), as rope_cpu. */
void rope_cuda(float* x, int64_t T, int64_t H, int64_t D, const float* cos, const float* sin,
               cudaStream_t stream = nullptr);

/** out (n) = cap * tanh(x / cap), f32, as softcap_cpu (out == x allowed). */
void softcap_cuda(const float* x, int64_t n, float cap, float* out, cudaStream_t stream = nullptr);

/** out (n) = silu(gate) * up, f32, as silu_mul_cpu. */
void silu_mul_cuda(const float* gate, const float* up, int64_t n, float* out, cudaStream_t stream = nullptr);
/** out (T, I) = silu(gu[:, :I]) * gu[:, I:], gu (T, 2I); both in `dtype`. */
void silu_mul_rows_cuda(const void* gu, int64_t T, int64_t I, void* out, DType dtype, cudaStream_t stream = nullptr);

/** y (R, C) += bias (C); f32. */
void add_bias_cuda(float* y, int64_t R, int64_t C, const float* bias, cudaStream_t stream = nullptr);

/** Converts n f32 values to `dtype` (F32/BF16/F16). */
void cast_cuda(const float* x, int64_t n, void* y, DType dtype, cudaStream_t stream = nullptr);

/** out (R) = argmax of each row of x (R, V); ties pick the lowest index (as lmscope::argmax). */
void argmax_cuda(const float* x, int64_t R, int64_t V, int32_t* out, cudaStream_t stream = nullptr);

/**
 * Where row r of a batch sits: position pos[r] (pos0 + r when pos is null), sequence seq[r] (when seq
 * is null: r if seq_is_row, else seq0). Prefill: seq0 and pos0 + t; batched decode: device pos, seq_is_row.
 */
struct RowPos {
    const int32_t* pos = nullptr;
    const int32_t* seq = nullptr;
    int64_t pos0 = 0;
    int64_t seq0 = 0;
    bool seq_is_row = false;
};

/** The KV cache of one layer: (sequences, capacity, Hkv, D) in `dtype` (F32/BF16/F16). */
struct KvView {
    void* k = nullptr;
    void* v = nullptr;
    DType dtype = DType::F32;
    int64_t capacity = 0;  // positions per sequence
};

/**
 * qkv (T, (Hq + 2 Hkv) D) f32 [+ bias] -> q (T, Hq, D) f32 after the optional per-head RMSNorm
 * (q_norm, k_norm: (D) f32 or null) and RoPE at the row's position (angle = float(pos) * inv_freq,
 * cos/sin in double, as rope_cos_sin); K (normed, rotated) and V go to the cache at the row's
 * sequence and position.
 */
void qkv_rope_cache_cuda(const float* qkv, const float* bias, int64_t T, int64_t Hq, int64_t Hkv, int64_t D,
                         const float* q_norm, const float* k_norm, float eps, const float* inv_freq, RowPos rows,
                         float* q, KvView kv, cudaStream_t stream = nullptr);

/** Causal GQA attention with f32 q/k/v laid out as attention_cpu (k, v (S, Hkv, D)); out (T, Hq, D). */
void attention_cuda(const float* q, const float* k, const float* v, const AttentionShape& s, float* out,
                    cudaStream_t stream = nullptr);

/** Split count and workspace floats attention_decode_cuda needs for R rows and keys up to `max_len`. */
int attention_decode_splits(int64_t R, int64_t Hkv, int64_t max_len);
size_t attention_decode_workspace(int64_t R, int64_t Hq, int64_t Hkv, int64_t D, int64_t max_len);

/**
 * q (R, Hq, D) f32: row r attends keys 0..pos(r) of sequence seq(r) in the cache; out (R, Hq, D) in
 * out_dtype. For D 64 / 128 / 256 and Hq / Hkv <= 8 a cluster kernel runs (attention_decode_cluster.cu:
 * its splits merge in distributed shared memory, `work` and `counters` unused). Otherwise keys are
 * split into chunks (attention_decode_splits(max_len)); `work` has
 * attention_decode_workspace(...) floats for the partial softmax states, which the last split of
 * each (row, head) to finish combines. `counters` (R * Hkv, zero when first used) count the finished
 * splits; every call leaves them at zero. Positions may live on the device (graph replays read them
 * there). D a multiple of 8, <= 256; (Hq / Hkv) * D <= 1024.
 */
void attention_decode_cuda(const float* q, int64_t R, int64_t Hq, int64_t Hkv, int64_t D, float scale,
                           KvView kv, RowPos rows, int64_t max_len, float* work, unsigned* counters, void* out,
                           DType out_dtype, cudaStream_t stream = nullptr);

/**
 * qkv_rope_cache_cuda and attention_decode_cuda in one kernel, for decode rows (one new position per
 * row, at its sequence's pos(r)): each block normalises and rotates its own q heads from the raw
 * qkv (R, (Hq + 2 Hkv) D) f32 [+ bias], and the block whose key range holds pos(r) also the new K / V
 * rows, which it writes to the cache and uses directly. Same results as the two calls.
 */
void attention_decode_fused_cuda(const float* qkv, const float* bias, int64_t R, int64_t Hq, int64_t Hkv, int64_t D,
                                 const float* q_norm, const float* k_norm, float eps, const float* inv_freq, float scale,
                                 KvView kv, RowPos rows, int64_t max_len, float* work, unsigned* counters, void* out,
                                 DType out_dtype, cudaStream_t stream = nullptr, bool pdl = false);

/** True when attention_prefill_cuda handles this head_dim (64 or 128). */
bool attention_prefill_supported(int64_t D);
/**
 * Flash-attention prefill for sequence `seq`: q (T, Hq, D) f32 for positions pos0..pos0+T-1, keys
 * 0..pos0+T-1 from the cache; tiles of 64 queries x 64 keys on bf16 tensor cores with f32
 * accumulation and online softmax. out (T, Hq, D) in out_dtype.
 */
void attention_prefill_cuda(const float* q, int64_t T, int64_t pos0, int64_t Hq, int64_t Hkv, int64_t D, float scale,
                            KvView kv, int seq, void* out, DType out_dtype, cudaStream_t stream = nullptr);

/**
 * Device memory a kernel asks L2 to fetch while it runs (the next kernels' weights, so that DRAM keeps
 * streaming across the short kernels of a decode step): up to kMax ranges, 16-byte aligned, split
 * over the kernel's blocks (cp.async.bulk.prefetch.L2).
 */
struct L2Prefetch {
    static constexpr int kMax = 4;
    const void* p[kMax] = {};
    int64_t bytes[kMax] = {};
    int n = 0;
};
/** Bytes a GEMV of w reads from memory (weight or codes, then scales). */
int64_t linear_read_bytes(const DeviceLinear& w);
/** Adds the first `max_bytes` of w's memory (weight, then scales) to pf; false when pf has no room. */
bool l2_prefetch_add(L2Prefetch& pf, const DeviceLinear& w, int64_t max_bytes);

/** How linear_gemv_cuda reads its input rows x (T, x_stride). */
enum class GemvInput {
    Plain,    // x
    RmsNorm,  // rms_norm(x) * norm_weight, over the `in` columns
    SiluMul,  // silu(x[:, :in]) * x[:, up_offset : up_offset + in]
};
struct GemvIn {
    GemvInput mode = GemvInput::Plain;
    const float* norm_weight = nullptr;
    float eps = 1e-6f;
    int64_t x_stride = 0;   // 0: in
    int64_t up_offset = 0;  // SiluMul
    L2Prefetch l2;          // issued when each block starts its last pass over the rows
    bool pdl = false;       // programmatic dependent launch (launch_kernel in cuda/common.cuh)
    bool smem = false;      // dense batch 1: the weights through shared memory where they fit (gemv_smem.cuh)
    // with smem and pdl: the next kernel may start at this one's start, not after its wait (the o projection,
    // so that gate|up's weights arrive during it: 0.6B b=1 1155 -> 1179 tok/s; every GEMV: slower)
    bool smem_next_early = false;
};

/**
 * y (T, out) (+)= f(x) W^T + b, f32 activations, W streamed once per 8 rows with 16-byte loads and
 * dequantised in registers (FP8: 16 codes x block scale; AWQ: 32 nibbles, (q - z) * s), warps of one
 * (dense) or two (FP8/AWQ) output rows, warp-shuffle reductions. accumulate: y += (the residual add).
 */
void linear_gemv_cuda(const float* x, int64_t T, const DeviceLinear& w, const GemvIn& in, float* y,
                      int64_t y_stride, bool accumulate, cudaStream_t stream = nullptr);

/** Blocks of the shared-memory GEMV (GemvIn::smem) linear_gemv_cuda runs for w at T rows; 0: the row GEMV. */
int linear_gemv_smem_grid(const DeviceLinear& w, int64_t T);

/** Same as linear_cpu: y (T, out) = x (T, in) W^T + b, f32 device buffers (GEMV kernel). */
void linear_cuda(const float* x, int64_t T, const DeviceLinear& w, float* y, cudaStream_t stream = nullptr);

/**
 * cuBLAS: y (T, out) = x (T, in) W^T (+ y when accumulate) (+ b); x in the weight's dtype (F32 weights:
 * f32 x, no TF32), y f32 or (16-bit weights) the weight dtype. f32 accumulation. Quantized weights
 * (x then in w.dtype, BF16/F16): T <= 64 runs a tensor-core GEMM that dequantises tiles in shared
 * memory (the weight read once, linear_qgemm.cu); larger T first dequantises the whole weight into
 * `scratch` (out * in 16-bit values, dequantize_linear_cuda) for cuBLAS.
 */
void linear_gemm_cuda(cublasHandle_t handle, const void* x, int64_t T, const DeviceLinear& w, void* y,
                      DType y_dtype, bool accumulate, cudaStream_t stream = nullptr, void* scratch = nullptr);

/** Bytes of device workspace sample_cuda needs for R rows of V logits. */
size_t sample_workspace(int64_t R, int64_t V);
/**
 * out (R) = one token per row of logits (R, V) drawn as lmscope::Sampler::sample does for
 * p.temperature > 0: logits / temperature sorted descending (ties: lower id first), the top_k kept,
 * exp(l - max) in f32, the smallest prefix whose probability reaches top_p, then the first id whose
 * running sum reaches u * total. u (R) are device draws in [0, 1) (generate_canonical of the
 * Sampler's mt19937_64 gives the CPU's choice exactly). temperature <= 0: argmax, u unused.
 * `work` holds sample_workspace(R, V) bytes.
 */
void sample_cuda(const float* logits, int64_t R, int64_t V, const SamplingParams& p, const double* u, void* work,
                 int32_t* out, cudaStream_t stream = nullptr);

/** A cuBLAS handle with a fixed workspace (so that its calls can be captured in graphs). */
cublasHandle_t default_cublas();

}  // namespace lmscope::cuda
