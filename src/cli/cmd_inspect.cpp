// PLACEHOLDER (being written): lmscope inspect
#include "cli/commands.h"

namespace lmscope {
void register_inspect(CLI::App& app) { app.add_subcommand("inspect", "(in progress)"); }
}  // namespace lmscope
