// PLACEHOLDER (being written): lmscope init
#include "cli/commands.h"

namespace lmscope {
void register_init(CLI::App& app) { app.add_subcommand("init", "(in progress)"); }
}  // namespace lmscope
