// PLACEHOLDER (being written): lmscope quantize
#include "cli/commands.h"

namespace lmscope {
void register_quantize(CLI::App& app) { app.add_subcommand("quantize", "(in progress)"); }
}  // namespace lmscope
