// lmscope error types. Boundaries (file parsing, CLI) throw these; main() maps them to exit codes:
// UsageError -> 2 (bad arguments), Error -> 1 (bad input file, inconsistent checkpoint, ...).
// Messages are one line and name the file / tensor / field, what was expected and what was found.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace lmscope {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

class UsageError : public Error {
public:
    explicit UsageError(const std::string& msg) : Error(msg) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
    throw Error(fmt::format(f, std::forward<Args>(args)...));
}

// Internal invariant: a bug in lmscope, not bad input. Aborts with file and line.
[[noreturn]] void check_failed(const char* expr, const char* file, int line);

}  // namespace lmscope

#define LMS_CHECK(cond)                                                             \
    do {                                                                            \
        if (!(cond)) ::lmscope::check_failed(#cond, __FILE__, __LINE__);            \
    } while (0)
