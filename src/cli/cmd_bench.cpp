// PLACEHOLDER (being written): lmscope bench
#include "cli/commands.h"

namespace lmscope {
void register_bench(CLI::App& app) { app.add_subcommand("bench", "(in progress)"); }
}  // namespace lmscope
