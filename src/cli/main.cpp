// lmscope command-line entry point: parses the subcommand and maps errors to exit codes
// (0 ok, 1 bad input file / failed check, 2 bad arguments).
#include <cstdio>

#include "cli/commands.h"

int main(int argc, char** argv) { return lmscope::cli_main(argc, argv); }
