// PLACEHOLDER (being written): lmscope train
#include "cli/commands.h"

namespace lmscope {
void register_train(CLI::App& app) { app.add_subcommand("train", "(in progress)"); }
}  // namespace lmscope
