// Hook through which a forward (or backward) pass shows its named intermediate tensors.
// Two phases as in llama.cpp's eval callback: wants(name) first, so a pass with no observer, or
// one that wants nothing, formats no names and copies nothing.
#pragma once

#include <string>

#include "core/tensor.h"

namespace lmscope {

class TensorObserver {
public:
    virtual ~TensorObserver() = default;
    /** Does the observer want the tensor with this stable dotted name? */
    virtual bool wants(const std::string& name) const = 0;
    /** The tensor's values (f32, row-major, `shape`); only called after wants() said yes. */
    virtual void observe(const std::string& name, const float* data, const Shape& shape) = 0;
};

}  // namespace lmscope
