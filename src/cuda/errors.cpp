// Throwing lmscope errors for the CUDA sources (see cuda/errors.h).
#include "cuda/errors.h"

#include "core/error.h"

namespace lmscope::cuda {

void throw_error(const std::string& msg) { throw Error(msg); }
void throw_usage_error(const std::string& msg) { throw UsageError(msg); }
void cuda_fail(const char* what, const char* stmt, const char* file, int line) {
    throw Error(format_msg("CUDA error: {} in `{}` ({}:{})", what, stmt, file, line));
}

}  // namespace lmscope::cuda
