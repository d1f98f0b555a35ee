// Reading device tensors back for a traced CudaDecoder prefill (lmscope trace --device cuda): a
// tensor is copied to the host (and converted to f32) only when the observer wants its name, so an
// untraced run, or a filter that asks for one tensor, costs nothing else. Used by decoder_cuda.cu.
#pragma once

#include <string>
#include <vector>

#include "core/tensor.h"
#include "cuda/common.cuh"
#include "trace/observer.h"

namespace lmscope::cuda {

struct DeviceTrace {
    TensorObserver* obs = nullptr;
    cudaStream_t stream = nullptr;

    bool wants(const std::string& name) const { return obs && obs->wants(name); }

    /** rows x cols of `dt` with a row pitch of `ld` elements -> f32 (rows * cols), after the stream's work. */
    std::vector<float> download(const void* p, DType dt, int64_t rows, int64_t cols, int64_t ld) const {
        CUDA_CHECK(cudaStreamSynchronize(stream));
        const size_t es = dtype_size(dt);
        Tensor t = Tensor::empty(dt, {rows * cols});
        CUDA_CHECK(cudaMemcpy2D(t.raw_mut(), static_cast<size_t>(cols) * es, p, static_cast<size_t>(ld) * es,
                                static_cast<size_t>(cols) * es, static_cast<size_t>(rows), cudaMemcpyDeviceToHost));
        return t.to_f32_vector();
    }

    void show(const std::string& name, const void* p, DType dt, int64_t rows, int64_t cols, int64_t ld,
              const Shape& shape) const {
        if (!wants(name)) return;
        const std::vector<float> h = download(p, dt, rows, cols, ld);
        obs->observe(name, h.data(), shape);
    }
};

}  // namespace lmscope::cuda
