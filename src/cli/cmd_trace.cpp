// lmscope trace: the component debug trace with numeric health checks.
//   lmscope trace --model DIR (--prompt TEXT | --ids 1,2,3) [--filter PAT]... [--format md|json|html|term]
//                 [--out FILE] [--rules FILE] [--check] [--save-values PAT]... [--print-rules]
//                 [--device cpu|cuda [--exact]]
//   lmscope trace diff A.json B.json [--json] [--threshold 1e-3] [--top N] [--check]
// HF models are traced forward only: one pass over the prompt, every named intermediate tensor of
// decoder.cpp plus attention scores/probabilities. Without --model the seed's GPT training trace runs
// (run_default_gpt_trace, src/trace/default_run.h) once the GPT trainer provides it.
// --device cuda runs the same forward on the GPU (CudaDecoder::prefill with the recorder as observer):
// the same tensor names, each read back only when the filters want it, so `trace diff cpu.json
// cuda.json` shows where the two backends part (docs/cuda.md "Trace").
#include <fmt/core.h>

#include <cmath>
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/common.h"
#include "train/gpt_cli.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "cuda/cuda_api.h"
#include "io/atomic_file.h"
#include "model/decoder.h"
#include "ops/ops.h"
#include "tokenizer/tokenizer.h"
#include "trace/default_run.h"
#include "trace/diff.h"
#include "trace/output.h"
#include "trace/recorder.h"
#include "trace/rules.h"

namespace lmscope {

namespace {

struct TraceOptions {
    std::string model, prompt, ids, format, out, rules, device = "cpu";
    std::vector<std::string> filters, save_values;
    bool check = false, print_rules = false, fp8_activations = false, bf16_activations = false, exact = false;
    int threads = 0;
};

struct DiffCmdOptions {
    std::string a, b;
    bool json = false, check = false;
    double threshold = 1e-3;
    size_t top = 10;
};

// Logits of every position are kept (the `logits` record) unless that would exceed this many floats.
constexpr int64_t kMaxLogitElements = int64_t{1} << 27;

void trace_command(const TraceOptions& o) {
    const RuleConfig rules = o.rules.empty() ? default_rules() : load_rules(o.rules);
    if (o.print_rules) {
        fmt::print("{}", rules_to_json(rules));
        return;
    }
    if (o.model.empty()) {
        // the default: the seed's GPT configuration, traced while it trains
        if (!o.prompt.empty() || !o.ids.empty()) throw UsageError("trace: --prompt/--ids need --model");
        if (o.device != "cpu" || o.exact) throw UsageError("trace: --device cuda / --exact need --model");
        apply_bf16_activations_flag(o.bf16_activations, nullptr, o.device, "trace");  // (a note: the GPT is f32)
        DefaultTraceOptions d{o.filters, o.save_values, o.format, o.out, o.rules, o.check, o.threads};
        run_default_gpt_trace(d);
        return;
    }
    if (o.prompt.empty() == o.ids.empty()) throw UsageError("trace: give exactly one of --prompt or --ids");
    if (is_gpt_model_dir(o.model)) {  // a GPT of `lmscope train` (src/train/gpt_cli.cpp)
        apply_bf16_activations_flag(o.bf16_activations, nullptr, o.device, "trace");
        DefaultTraceOptions d{o.filters, o.save_values, o.format, o.out, o.rules, o.check, o.threads};
        gpt_trace({d, o.model, o.prompt, o.ids.empty() ? std::vector<int32_t>{} : parse_id_list(o.ids, "--ids")});
        return;
    }
    if (o.threads > 0) ThreadPool::set_global_threads(o.threads);

    DecoderModel model = DecoderModel::load(o.model, o.device != "cuda");  // no CPU copies for a GPU run
    const ModelConfig& cfg = model.config();
    apply_fp8_activations_flag(o.fp8_activations, model.weights().num_fp8_linears, o.device, "trace");
    apply_bf16_activations_flag(o.bf16_activations, &model.weights(), o.device, "trace");
    if (o.exact && o.device != "cuda") throw UsageError("trace: --exact needs --device cuda");
    std::vector<int32_t> ids;
    if (!o.ids.empty()) {
        ids = parse_id_list(o.ids, "--ids");
    } else {
        ids = Tokenizer::load(o.model).encode(o.prompt);
        if (ids.empty()) throw UsageError("trace: the prompt encodes to no tokens");
    }
    for (int32_t id : ids)
        if (id < 0 || id >= cfg.vocab_size)
            fail("trace: token id {} is outside the model's vocabulary [0, {})", id, cfg.vocab_size);
    const int64_t T = static_cast<int64_t>(ids.size()), V = cfg.vocab_size;

    TraceRecorder rec(recorder_options(rules, o.filters, o.save_values));
    TraceMeta& m = rec.meta();
    m.kind = "hf";
    m.title = o.model;
    m.architecture = cfg.architecture;
    m.generated = trace_timestamp();
    m.seq_len = T;
    m.vocab_size = V;
    m.hidden = cfg.hidden_size;
    m.layers = cfg.num_layers;
    m.heads = cfg.num_heads;
    m.kv_heads = cfg.num_kv_heads;
    m.head_dim = cfg.head_dim;
    m.intermediate = cfg.intermediate_size;
    m.qk_norm = cfg.qk_norm;
    m.qkv_bias = cfg.qkv_bias;
    m.tied_embeddings = cfg.tie_word_embeddings;
    m.rope_theta = cfg.rope.theta;
    m.weight_bytes = cfg.torch_dtype == "float32" ? 4 : 2;
    m.input_ids = ids;
    m.prompt = o.prompt;
    m.facts = {{"Config", fmt::format("hidden_size={}, intermediate_size={}, layers={}, heads={}, kv_heads={}, "
                                      "head_dim={}{}, vocab_size={}, rms_norm_eps={}, rope_theta={}{}, tied embeddings: {}",
                                      cfg.hidden_size, cfg.intermediate_size, cfg.num_layers, cfg.num_heads,
                                      cfg.num_kv_heads, cfg.head_dim, cfg.head_dim_from_config ? " (from config.json)" : "",
                                      cfg.vocab_size, cfg.rms_norm_eps, cfg.rope.theta,
                                      cfg.rope.type == "default" ? "" : " (" + cfg.rope.type + " scaling)",
                                      cfg.tie_word_embeddings ? "yes" : "no")},
               {"Weights dtype", cfg.torch_dtype.empty() ? "?" : cfg.torch_dtype}};
    rec.record_ids("input_ids", ids.data(), T, {1, T});

    const bool all_logits = T * V <= kMaxLogitElements;
    if (!all_logits)
        m.facts.emplace_back("Logits", "only the last position's logits are recorded (all positions would exceed "
                                       "the memory cap)");
    std::vector<float> logits(static_cast<size_t>((all_logits ? T : 1) * V));
    if (o.device == "cuda") {
        // ---- --device cuda (issue 7): the forward on the GPU; src/cuda/decoder_cuda.cu shows the tensors ----
        cuda::CudaDecoder dev(model, {o.exact, false});
        dev.reset(1, T);
        m.facts.emplace_back("Device", fmt::format("cuda, {} ({})", cuda::device_description(),
                                                   o.exact ? "exact: f32 activations" : "fast: 16-bit GEMM activations for T > 8"));
        dev.prefill(0, ids.data(), T, logits.data(), all_logits, &rec);
    } else {
        if (bf16_activation_mode())
            m.facts.emplace_back("Activations", "bf16 in the prefill linears over BF16 / AWQ weights (--bf16-activations)");
        KVCache cache = model.new_cache(T, DType::F32);  // the model's f32 math, without the f16 cache's rounding
        model.forward(ids.data(), T, cache, logits.data(), all_logits, &rec);
    }

    // The report tables show shapes with the batch dimension, like transformers: (1, T, ...).
    auto findings = emit_trace(rec, rules, {o.format, o.out, false});
    if (o.check) enforce_check(findings);
}

void diff_command(const DiffCmdOptions& o) {
    if (!(o.threshold >= 0)) throw UsageError("trace diff: --threshold must be >= 0");
    const LoadedTrace a = load_trace_json(o.a), b = load_trace_json(o.b);
    const DiffResult d = diff_traces(a, b, {o.threshold, o.top});
    fmt::print("{}", o.json ? diff_to_json(d, a, b) : diff_to_text(d, a, b));
    std::fflush(stdout);  // the --check error line goes to stderr after the whole report
    if (o.check && d.first) throw Error(fmt::format("trace diff --check: the traces diverge at {}", d.aligned[*d.first].name));
}

}  // namespace

void register_trace(CLI::App& app) {
    auto o = std::make_shared<TraceOptions>();
    CLI::App* c = app.add_subcommand("trace", "Component debug trace of a model's forward pass with health checks");
    c->add_option("--model", o->model, "Model folder (config.json + safetensors); required until the default GPT trace lands");
    c->add_option("--prompt", o->prompt, "Prompt text (needs tokenizer.json)");
    c->add_option("--ids", o->ids, "Prompt as token ids, comma separated");
    c->add_option("--filter", o->filters,
                  "Record only these tensors: glob (model.layers.*.self_attn.*), re:<regex>, a dotted component "
                  "(model.layers.3, scores), !PAT excludes; repeatable")
        ->allow_extra_args(false);
    c->add_option("--format", o->format, "md, json, html or term (default: trace.md + trace.html + summary)");
    c->add_option("--out", o->out, "Output file (default trace.md / trace.<format>; '-' = stdout)");
    c->add_option("--rules", o->rules, "JSON file overriding any subset of the rule thresholds (see --print-rules)");
    c->add_flag("--check", o->check, "Exit 1 when an error-level finding fires (for CI)");
    c->add_option("--save-values", o->save_values,
                  "Also keep the full values of tensors matching this pattern (JSON 'values', compared by trace diff)")
        ->allow_extra_args(false);
    c->add_flag("--print-rules", o->print_rules, "Print the rule thresholds as a rules file and exit");
    c->add_option("--threads", o->threads, "Worker threads (default: all cores)");
    c->add_flag("--fp8-activations", o->fp8_activations, kFp8ActivationsHelp);
    c->add_flag("--bf16-activations", o->bf16_activations, kBf16ActivationsHelp);
    c->add_option("--device", o->device, "cpu or cuda (the same tensor names; compare with `trace diff`)")
        ->capture_default_str()
        ->check(CLI::IsMember({"cpu", "cuda"}));
    c->add_flag("--exact", o->exact, "--device cuda: f32 activations everywhere (the CPU's precision)");

    auto d = std::make_shared<DiffCmdOptions>();
    CLI::App* dc = c->add_subcommand("diff", "Compare two JSON traces: first component where they part, top divergences");
    dc->add_option("a", d->a, "Trace A (lmscope trace --format json)")->required();
    dc->add_option("b", d->b, "Trace B")->required();
    dc->add_flag("--json", d->json, "Machine-readable output");
    dc->add_option("--threshold", d->threshold, "Relative divergence that counts as parting")->capture_default_str();
    dc->add_option("--top", d->top, "How many top divergences to list")->capture_default_str();
    dc->add_flag("--check", d->check, "Exit 1 when the traces diverge beyond the threshold");
    dc->callback([d] { diff_command(*d); });
    c->callback([o, dc] {
        if (dc->parsed()) return;
        trace_command(*o);
    });
}

}  // namespace lmscope
