// lmscope quantize --fp8 IN OUT [--quantize-lm-head] [--skip PATTERN]... [--max-shard-bytes N]
// lmscope quantize --awq IN OUT [--method awq|rtn] [--group-size 128] [--calib FILE] [--calib-samples N]
//                  [--calib-len T] [--duo-scaling] [--no-clip] [--tokenizer PATH] [--quantize-lm-head]
// --quantize-lm-head (alias --include-lm-head) also quantises lm_head, as llama.cpp's Q8_0 / Q4_0 files do,
// writing it as its own tensor even when the source ties it to embed_tokens (see docs/fp8.md, docs/awq.md).
// One subcommand, one method flag: each method's options live in its own struct and its work in
// src/quant/<method>_quantize.cpp. To add a method (e.g. --awq), add its flag + options below, add
// it to the exactly-one-method check in quantize_command(), and dispatch to its function there.
#include <fmt/core.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "quant/awq_quantize.h"
#include "quant/fp8_quantize.h"

namespace lmscope {

namespace {

struct QuantizeOptions {
    std::string in, out;
    bool fp8 = false;
    bool awq = false;
    // --fp8
    Fp8QuantizeOptions fp8_opt;
    // --awq
    AwqOptions awq_opt;
    bool no_clip = false;
    bool no_progress = false;
    bool quantize_lm_head = false;  // both methods
};

void run_fp8(const QuantizeOptions& o) {
    Fp8QuantizeOptions opt = o.fp8_opt;
    opt.progress = !o.no_progress;
    opt.include_lm_head = o.quantize_lm_head;
    const Fp8ConvertStats st = fp8_quantize_checkpoint(o.in, o.out, opt);
    for (const std::string& n : st.notes) fmt::print(stderr, "lmscope: note: {}\n", n);
    fmt::print("wrote {}: {} linears to FP8 e4m3 with {}x{} block scales (weight_scale_inv F32), {} tensors "
               "copied; {} -> {} in {:.2f} s ({:.1f} MB/s)\n",
               o.out, st.converted, opt.block.out, opt.block.in, st.kept,
               human_bytes(static_cast<double>(st.in_bytes)), human_bytes(static_cast<double>(st.out_bytes)),
               st.seconds, st.seconds > 0 ? static_cast<double>(st.in_bytes) / 1e6 / st.seconds : 0.0);
}

void quantize_command(const QuantizeOptions& o) {
    const int methods = (o.fp8 ? 1 : 0) + (o.awq ? 1 : 0);
    if (methods != 1) throw UsageError("quantize: choose exactly one method: --fp8 or --awq");
    if (o.fp8) return run_fp8(o);
    AwqOptions opt = o.awq_opt;
    opt.clip = !o.no_clip;
    opt.progress = !o.no_progress;
    opt.quantize_lm_head = o.quantize_lm_head;
    if (opt.method != "awq" && opt.method != "rtn") throw UsageError("quantize: --method must be awq or rtn");
    if (awq_quantize_command(o.in, o.out, opt) != 0) throw Error("quantize --awq failed");
}

}  // namespace

void register_quantize(CLI::App& app) {
    auto o = std::make_shared<QuantizeOptions>();
    CLI::App* c = app.add_subcommand(
        "quantize", "Quantize a checkpoint: --fp8 (block-wise FP8 E4M3, 128x128 scales) or --awq (int4, group 128)");
    c->add_option("in", o->in, "Input model folder (F32/F16/BF16 safetensors + config.json)")->required();
    c->add_option("out", o->out, "Output folder (written atomically)")->required();
    c->add_flag("--fp8", o->fp8,
                "Block FP8 (DeepSeek-V3 / Qwen3-FP8 layout): weight F8_E4M3 + weight_scale_inv F32 per 128x128 block");
    c->add_flag("--quantize-lm-head,--include-lm-head", o->quantize_lm_head,
                "Also quantize lm_head (--fp8: FP8 blocks; --awq: int4 RTN), written as lm_head's own tensor even "
                "when tied to embed_tokens (config gets tie_word_embeddings false); transformers keeps lm_head "
                "dense, so such a checkpoint is for lmscope");
    c->add_option("--skip", o->fp8_opt.skip,
                  "--fp8: keep modules matching PATTERN dense (whole dotted segments, e.g. self_attn, "
                  "mlp.down_proj, layers.0); repeatable; written to modules_to_not_convert")
        ->take_all()
        ->allow_extra_args(false);
    c->add_option("--max-shard-bytes", o->fp8_opt.max_shard_bytes, "Shard size of the output (default 5 GB)")
        ->capture_default_str();
    c->add_flag("--awq", o->awq,
                "AWQ int4, asymmetric, group 128, AutoAWQ gemm layout (qweight/qzeros/scales); calibrated scale + "
                "clip search");
    c->add_option("--method", o->awq_opt.method, "--awq: awq (activation-aware search) or rtn (round to nearest)")
        ->capture_default_str();
    c->add_option("--group-size", o->awq_opt.group_size, "--awq: input channels per quantisation group")
        ->capture_default_str();
    c->add_option("--calib", o->awq_opt.calib_file, "--awq: calibration text file (default: the Brown corpus)");
    c->add_option("--calib-samples", o->awq_opt.n_samples, "--awq: calibration samples")->capture_default_str();
    c->add_option("--calib-len", o->awq_opt.seq_len, "--awq: tokens per calibration sample")->capture_default_str();
    c->add_flag("--duo-scaling", o->awq_opt.duo_scaling, "--awq: AutoAWQ's duo scaling (x and w statistics)");
    c->add_flag("--no-clip", o->no_clip, "--awq: skip the clip search");
    c->add_option("--tokenizer", o->awq_opt.tokenizer, "--awq: tokenizer.json for the calibration text");
    c->add_flag("--no-progress", o->no_progress, "No progress bar");
    c->callback([o] { quantize_command(*o); });
}

}  // namespace lmscope
