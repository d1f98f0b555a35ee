#include "test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace lmscope::testing {

CmdResult run_cli(const std::string& args) { return run_cli_env("", args); }

CmdResult run_cli_env(const std::string& env, const std::string& args) {
    std::string cmd = (env.empty() ? "" : "env " + env + " ") + std::string(LMSCOPE_BINARY) + " " + args + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) throw std::runtime_error("popen failed");
    std::string out;
    std::array<char, 4096> buf{};
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
    int status = pclose(p);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return {code, out};
}

void write_file(const std::string& path, const std::string& s) {
    std::ofstream f(path, std::ios::binary);
    f << s;
}

std::string small_text() {
    std::string t;
    const char* words[] = {"alpha", "beta", "gamma", "delta", "the", "a", "runs", "sees", "quickly", "river", "stone"};
    uint32_t x = 12345;
    for (int p = 0; p < 60; ++p) {
        for (int s = 0; s < 6; ++s) {
            for (int w = 0; w < 9; ++w) {
                x = x * 1103515245u + 12345u;
                t += words[(x >> 16) % 11];
                t += w == 8 ? ". " : " ";
            }
        }
        t += "\n\n";
    }
    return t;
}

std::string make_temp_dir(const std::string& tag) {
    std::string tmpl = (std::filesystem::temp_directory_path() / ("lmscope-" + tag + "-XXXXXX")).string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    return tmpl;
}

}  // namespace lmscope::testing
