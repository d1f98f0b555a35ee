// PLACEHOLDER (being written): lmscope trace
#include "cli/commands.h"

namespace lmscope {
void register_trace(CLI::App& app) { app.add_subcommand("trace", "(in progress)"); }
}  // namespace lmscope
