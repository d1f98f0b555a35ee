// Helpers shared by the unit tests: paths, the relative-error metric, running the CLI.
#pragma once

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

namespace lmscope::testing {

/** The repository root (CTest sets LMSCOPE_SOURCE_DIR; the compile definition is the fallback). */
inline std::string source_dir() {
    if (const char* e = std::getenv("LMSCOPE_SOURCE_DIR")) return e;
    return LMSCOPE_SOURCE_DIR;
}
inline std::string golden_dir(const std::string& name) { return source_dir() + "/tests/golden/" + name; }

/** ||a - b|| / ||b|| in double. */
inline double rel_error(const std::vector<double>& a, const std::vector<double>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    if (a.size() != b.size() || std::isnan(num)) return INFINITY;
    return std::sqrt(num) / std::sqrt(den);
}
inline double rel_error(const std::vector<float>& a, const std::vector<double>& b) {
    return rel_error(std::vector<double>(a.begin(), a.end()), b);
}

struct CmdResult {
    int exit_code;
    std::string output;  // stdout and stderr together
};
/** Runs `lmscope <args>` (args are passed to the shell as written). */
CmdResult run_cli(const std::string& args);
/** Same, with `env` ("NAME=value ...") set for the command. */
CmdResult run_cli_env(const std::string& env, const std::string& args);
/** Writes `s` to `path` as bytes (test fixtures). */
void write_file(const std::string& path, const std::string& s);
/** ~3200 words of deterministic pseudo-English in 60 paragraphs: a corpus for the training tests. */
std::string small_text();
/** A fresh temporary directory, removed by the caller if wanted. */
std::string make_temp_dir(const std::string& tag);

}  // namespace lmscope::testing
