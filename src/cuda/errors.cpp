// Throwing lmscope errors for the CUDA sources (see cuda/errors.h).
#include "cuda/errors.h"

#include <cstdlib>

#include "core/error.h"

namespace lmscope::cuda {

void throw_error(const std::string& msg) { throw Error(msg); }
void throw_usage_error(const std::string& msg) { throw UsageError(msg); }
bool env_switch(const char* name, bool dflt) {
    const char* e = std::getenv(name);
    if (!e) return dflt;
    const std::string v(e);
    if (v != "0" && v != "1") throw UsageError(format_msg("{}={}: expected 0 or 1", name, v));
    return v == "1";
}
void cuda_fail(const char* what, const char* stmt, const char* file, int line) {
    throw Error(format_msg("CUDA error: {} in `{}` ({}:{})", what, stmt, file, line));
}

}  // namespace lmscope::cuda
