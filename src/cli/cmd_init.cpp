// lmscope init --preset NAME OUT [--dtype bf16|f16|f32] [--seed S] [--tokenizer FILE]:
// a Hugging Face layout checkpoint of a known shape with random weights, for benchmarks and tests.
#include <fmt/core.h>

#include "cli/commands.h"
#include "core/error.h"
#include "model/presets.h"
#include "model/random_init.h"

namespace lmscope {

namespace {
struct InitOptions {
    std::string preset;
    std::string out;
    std::string dtype = "bf16";
    uint64_t seed = 0;
    std::string tokenizer;
};
}  // namespace

void register_init(CLI::App& app) {
    auto o = std::make_shared<InitOptions>();
    std::string presets;
    for (const auto& n : preset_names()) presets += (presets.empty() ? "" : ", ") + n;
    CLI::App* c = app.add_subcommand("init", "Write a checkpoint of a known shape with random weights");
    c->add_option("--preset", o->preset, "Shape: " + presets)->required();
    c->add_option("out", o->out, "Output folder (written atomically)")->required();
    c->add_option("--dtype", o->dtype, "Weight dtype")->check(CLI::IsMember({"bf16", "f16", "f32"}))->capture_default_str();
    c->add_option("--seed", o->seed, "Random seed")->capture_default_str();
    c->add_option("--tokenizer", o->tokenizer, "tokenizer.json to copy into the folder");
    c->callback([o] {
        RandomInitOptions opt;
        opt.dtype = o->dtype == "bf16" ? DType::BF16 : o->dtype == "f16" ? DType::F16 : DType::F32;
        opt.seed = o->seed;
        opt.tokenizer = o->tokenizer;
        write_random_checkpoint(preset_config(o->preset), o->out, opt);
        fmt::print("wrote {} ({}, {}, seed {})\n", o->out, o->preset, o->dtype, o->seed);
    });
}

}  // namespace lmscope
