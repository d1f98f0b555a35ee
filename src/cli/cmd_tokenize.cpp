// PLACEHOLDER (being written): lmscope tokenize
#include "cli/commands.h"

namespace lmscope {
void register_tokenize(CLI::App& app) { app.add_subcommand("tokenize", "(in progress)"); }
}  // namespace lmscope
