// Error helpers for the CUDA sources. nvcc cannot compile fmt (core/error.h), so .cu files format
// with format_msg ("{}" placeholders, ostream output) and throw through these functions, defined in
// cuda/errors.cpp (compiled by the host compiler in every build).
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace lmscope::cuda {

[[noreturn]] void throw_error(const std::string& msg);        // lmscope::Error
[[noreturn]] void throw_usage_error(const std::string& msg);  // lmscope::UsageError
/**
 * An on/off switch from the environment (the LMSCOPE_CUDA_* ones, docs/cuda.md): unset -> dflt, "0" / "1",
 * anything else a lmscope::UsageError "<name>=<value>: expected 0 or 1". Read where it is called, so tests
 * can switch it within one process.
 */
bool env_switch(const char* name, bool dflt);
/** "CUDA error: <what> in `<stmt>` (<file>:<line>)" as lmscope::Error. */
[[noreturn]] void cuda_fail(const char* what, const char* stmt, const char* file, int line);

namespace detail {
inline void format_rest(std::ostringstream& os, std::string_view f) { os << f; }
template <typename A, typename... Rest>
void format_rest(std::ostringstream& os, std::string_view f, const A& a, const Rest&... rest) {
    const size_t p = f.find("{}");
    if (p == std::string_view::npos) {
        os << f;
        return;
    }
    os << f.substr(0, p) << a;
    format_rest(os, f.substr(p + 2), rest...);
}
}  // namespace detail

/** Replaces each "{}" in f by the next argument. */
template <typename... Args>
std::string format_msg(std::string_view f, const Args&... args) {
    std::ostringstream os;
    detail::format_rest(os, f, args...);
    return os.str();
}

template <typename... Args>
[[noreturn]] void fail_rt(std::string_view f, const Args&... args) {
    throw_error(format_msg(f, args...));
}

}  // namespace lmscope::cuda
