// Hook through which a forward (or backward) pass shows its named intermediate tensors.
// Two phases as in llama.cpp's eval callback: wants(name) first, so a pass with no observer, or
// one that wants nothing, formats no names and copies nothing.
#pragma once

#include <string>
#include <vector>

#include "core/tensor.h"

namespace lmscope {

class TensorObserver {
public:
    virtual ~TensorObserver() = default;
    /** Does the observer want the tensor with this stable dotted name? */
    virtual bool wants(const std::string& name) const = 0;
    /** The tensor's values (f32, row-major, `shape`); only called after wants() said yes. */
    virtual void observe(const std::string& name, const float* data, const Shape& shape) = 0;
    /**
     * Causally masked attention scores or probabilities: `data` is (B, H, T, S) row-major with
     * S = pos0 + T keys, and entry (b, h, t, j) is valid only for j <= pos0 + t; the masked entries
     * hold 0 and are not part of the tensor. The default hands the valid entries, packed in order,
     * to observe() with shape {n_valid}; the trace recorder overrides it to keep the logical shape.
     */
    virtual void observe_causal(const std::string& name, const float* data, const Shape& shape, int64_t pos0) {
        const int64_t T = shape.at(2), S = shape.at(3), rows = shape.at(0) * shape.at(1);
        std::vector<float> packed;
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t t = 0; t < T; ++t)
                packed.insert(packed.end(), data + (r * T + t) * S, data + (r * T + t) * S + pos0 + t + 1);
        observe(name, packed.data(), {static_cast<int64_t>(packed.size())});
    }
};

}  // namespace lmscope
