// PLACEHOLDER (being written): lmscope run
#include "cli/commands.h"

namespace lmscope {
void register_run(CLI::App& app) { app.add_subcommand("run", "(in progress)"); }
}  // namespace lmscope
