// The CUDA backend as the rest of lmscope sees it: plain C++ (no CUDA headers), so the CLI and the
// tests compile in every build. With nvcc (LMSCOPE_HAVE_CUDA) it is implemented in src/cuda/*.cu;
// without, src/cuda/no_cuda.cpp answers device_count() == 0 and throws Error("built without CUDA").
// CudaDecoder mirrors DecoderModel: weights uploaded once in their stored format (dense, FP8-block,
// AWQ int4; q/k/v and gate/up concatenated), KV caches for B sequences on the GPU, prefill of T
// tokens and batched decode steps (captured once as a CUDA graph per batch size, replayed every
// step), sampling on the GPU, and traced prefills that show the decoder's named tensors.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/sampler.h"

namespace lmscope {

class DecoderModel;
class TensorObserver;

namespace cuda {

/** True when this binary was built with the CUDA backend. */
bool built_with_cuda();
/** Number of usable CUDA devices; 0 without a driver, a device, or CUDA support. Never throws. */
int device_count();
/** "NVIDIA H100 80GB HBM3, 132 SMs, 79.1 GiB, cc 9.0" for device 0; throws without CUDA. */
std::string device_description();

struct CudaOptions {
    // exact: f32 activations everywhere (custom GEMV for every T, f32 KV cache, f32 attention):
    // the precision of the CPU path. Otherwise 16-bit models run GEMMs on bf16/f16 activations
    // (cuBLAS) for T > 8 and keep the KV cache in the weights' 16-bit dtype.
    bool exact = false;
    bool graphs = true;  // capture each decode step as a CUDA graph
};

class CudaDecoder {
public:
    /** Uploads the weights of a loaded CPU model (the host model can be dropped afterwards). */
    CudaDecoder(const DecoderModel& host, CudaOptions opt = {});
    ~CudaDecoder();
    CudaDecoder(const CudaDecoder&) = delete;
    CudaDecoder& operator=(const CudaDecoder&) = delete;

    const ModelConfig& config() const;
    /** Bytes of the weights on the GPU (each tensor once; a tied head counted once). */
    size_t weight_bytes() const;
    /** Bytes of K and V one position of one sequence takes in the cache (all layers). */
    size_t kv_bytes_per_position() const;
    /**
     * How a batch-1 decode step runs: "persistent" (one kernel for every layer, decode_persistent.h),
     * "attention-block (...)" (decode_attn_block.h), or "per-op: <why not persistent>; <why not the
     * attention block>; dense GEMVs: <shared memory where the weights fit, each asking L2 for the next 2 MB |
     * rows (...)>" (ops/cuda/gemv_smem.cuh), with "; L2 prefetch: <off | N MB ahead of every GEMV>" in place
     * of the L2 clause where LMSCOPE_CUDA_L2_PREFETCH_MB is set.
     */
    std::string batch1_step() const;

    /** (Re)allocates the KV caches for `batch` sequences of `capacity` positions, all empty. */
    void reset(int batch, int64_t capacity);
    /** Empties every sequence (keeps the allocation). */
    void clear();
    int64_t length(int seq) const;

    /**
     * Runs T tokens (host ids) of sequence `seq` at its current length and appends their K/V.
     * logits (host): (T, V) if all_logits, else (1, V) for the last token; may be null.
     * observer: shows the tensors of DecoderModel::forward's names that it wants (read back only
     * then; see docs/cuda.md "Trace"); T must fit one chunk (4096 rows) when set.
     */
    void prefill(int seq, const int32_t* ids, int64_t T, float* logits, bool all_logits,
                 TensorObserver* observer = nullptr);
    /** One token for each of the `batch` sequences (host ids (B)); logits (B, V) to host, may be null. */
    void decode(const int32_t* ids, float* logits);
    /**
     * n greedy steps for all sequences, chained on the GPU (argmax feeds the next step, no host
     * round trip): first (B) are the tokens to feed first; out (n, B) the tokens chosen.
     */
    void decode_greedy(const int32_t* first, int n, int32_t* out);
    /**
     * Draws the next token on the GPU from the logits of the last prefill (its last token: 1 row)
     * or decode step (B rows), as lmscope::Sampler with `p`: u (rows) are the host's uniform draws in
     * [0, 1) (std::generate_canonical of the Sampler's mt19937_64 reproduces the CPU's choice; unused
     * when p.temperature <= 0, which takes the argmax). out (rows) host ids.
     */
    void sample_next(const SamplingParams& p, const double* u, int32_t* out);
    /** Waits for the GPU. */
    void synchronize();

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

/** Wall-clock of the GPU between two points, for bench: a started CUDA event pair. */
class GpuTimer {
public:
    GpuTimer();
    ~GpuTimer();
    void start();
    /** Milliseconds since start(), after the GPU has finished the work enqueued so far. */
    double stop_ms();

private:
    void* a_ = nullptr;
    void* b_ = nullptr;
};

}  // namespace cuda
}  // namespace lmscope
