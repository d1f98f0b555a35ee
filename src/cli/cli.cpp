#include <fmt/core.h>

#include <cstdio>
#include <exception>
#include <new>

#include "cli/commands.h"
#include "core/error.h"

namespace lmscope {

int cli_main(int argc, char** argv) {
    CLI::App app{"lmscope: look inside transformer language models, quantize, run and train them", "lmscope"};
    app.set_version_flag("--version", std::string("lmscope ") + LMSCOPE_VERSION);
    app.require_subcommand(1);
    register_inspect(app);
    register_tokenize(app);
    register_run(app);
    register_init(app);
    register_bench(app);
    register_train(app);
    register_eval(app);
    register_trace(app);
    register_quantize(app);
    register_dequantize(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        // one error line, one usage line, exit 2 (scripts can tell bad arguments from bad files)
        const CLI::App* sub = nullptr;
        for (const CLI::App* s : app.get_subcommands()) sub = s;
        std::string name = sub ? "lmscope " + sub->get_name() : "lmscope";
        fmt::print(stderr, "{}: error: {}\nusage: {} --help\n", name, e.what(), name);
        return 2;
    } catch (const UsageError& e) {
        fmt::print(stderr, "lmscope: error: {}\n", e.what());
        return 2;
    } catch (const Error& e) {
        fmt::print(stderr, "lmscope: error: {}\n", e.what());
        return 1;
    } catch (const std::bad_alloc&) {
        fmt::print(stderr, "lmscope: error: out of memory\n");
        return 1;
    } catch (const std::exception& e) {
        fmt::print(stderr, "lmscope: error: {}\n", e.what());
        return 1;
    }
    return 0;
}

}  // namespace lmscope
