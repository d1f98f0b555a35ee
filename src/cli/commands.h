// Subcommands of the lmscope CLI. Each cmd_<name>.cpp defines register_<name>(), which adds its
// CLI11 subcommand and the callback that runs it. Callbacks throw lmscope::Error (exit 1) or
// UsageError (exit 2); cli_main() turns them into one line on stderr.
#pragma once

#include <CLI/CLI.hpp>

namespace lmscope {

int cli_main(int argc, char** argv);

void register_inspect(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_run(CLI::App& app);
void register_init(CLI::App& app);
void register_bench(CLI::App& app);
void register_train(CLI::App& app);
void register_eval(CLI::App& app);
void register_trace(CLI::App& app);
void register_quantize(CLI::App& app);
void register_dequantize(CLI::App& app);

}  // namespace lmscope
