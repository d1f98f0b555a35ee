// Scalar reference: embedding lookup.
#include "core/error.h"
#include "ops/ops.h"

namespace lmscope {

void embedding_ref(const int32_t* ids, int64_t T, const Tensor& table, float* out) {
    const int64_t V = table.dim(0), H = table.dim(1);
    const auto* base = static_cast<const uint8_t*>(table.raw());
    const size_t row_bytes = static_cast<size_t>(H) * dtype_size(table.dtype());
    for (int64_t t = 0; t < T; ++t) {
        if (ids[t] < 0 || ids[t] >= V) fail("token id {} out of range [0, {})", ids[t], V);
        convert(base + static_cast<size_t>(ids[t]) * row_bytes, table.dtype(), out + t * H, DType::F32,
                static_cast<size_t>(H));
    }
}

}  // namespace lmscope
