// lmscope dequantize IN OUT [--dtype bf16|f16|f32]: block-FP8 checkpoint -> dense checkpoint
// (W = dtype(f32(code) * weight_scale_inv), scales and quantization_config removed).
#include <fmt/core.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "quant/fp8_dequantize.h"

namespace lmscope {

namespace {
struct DequantizeOptions {
    std::string in, out;
    std::string dtype = "bf16";
    uint64_t max_shard_bytes = 5000000000ull;
    bool no_progress = false;
};
}  // namespace

void register_dequantize(CLI::App& app) {
    auto o = std::make_shared<DequantizeOptions>();
    CLI::App* c = app.add_subcommand("dequantize", "Expand a block-FP8 checkpoint to BF16/F16/F32 weights");
    c->add_option("in", o->in, "Input model folder (FP8 safetensors + config.json)")->required();
    c->add_option("out", o->out, "Output folder (written atomically)")->required();
    c->add_option("--dtype", o->dtype, "dtype of the dequantized weights")
        ->check(CLI::IsMember({"bf16", "f16", "f32"}))
        ->capture_default_str();
    c->add_option("--max-shard-bytes", o->max_shard_bytes, "Shard size of the output (default 5 GB)")
        ->capture_default_str();
    c->add_flag("--no-progress", o->no_progress, "No progress bar");
    c->callback([o] {
        Fp8DequantizeOptions opt;
        opt.dtype = o->dtype == "bf16" ? DType::BF16 : o->dtype == "f16" ? DType::F16 : DType::F32;
        opt.max_shard_bytes = o->max_shard_bytes;
        opt.progress = !o->no_progress;
        const Fp8ConvertStats st = fp8_dequantize_checkpoint(o->in, o->out, opt);
        for (const std::string& n : st.notes) fmt::print(stderr, "lmscope: note: {}\n", n);
        fmt::print("wrote {}: {} FP8 weights to {}, {} tensors copied; {} -> {} in {:.2f} s\n", o->out, st.converted,
                   o->dtype, st.kept, human_bytes(static_cast<double>(st.in_bytes)),
                   human_bytes(static_cast<double>(st.out_bytes)), st.seconds);
    });
}

}  // namespace lmscope
