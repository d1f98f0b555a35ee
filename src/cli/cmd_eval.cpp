// PLACEHOLDER (being written): lmscope eval
#include "cli/commands.h"

namespace lmscope {
void register_eval(CLI::App& app) { app.add_subcommand("eval", "(in progress)"); }
}  // namespace lmscope
