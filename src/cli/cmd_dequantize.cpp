// PLACEHOLDER (being written): lmscope dequantize
#include "cli/commands.h"

namespace lmscope {
void register_dequantize(CLI::App& app) { app.add_subcommand("dequantize", "(in progress)"); }
}  // namespace lmscope
