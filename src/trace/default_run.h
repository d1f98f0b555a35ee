// The default `lmscope trace` (no --model): the seed's configuration, traced while it trains.
// DECLARED HERE, IMPLEMENTED WITH THE GPT TRAINER (src/gpt/, src/train/): until then cmd_trace.cpp
// answers `lmscope trace` without --model with a UsageError, and the lead wires this in.
//
// What the implementation does (everything else is in src/trace/):
//   RuleConfig rules = o.rules_file.empty() ? default_rules() : load_rules(o.rules_file);
//   TraceRecorder rec(recorder_options(rules, o.filters, o.save_values));
//   rec.meta(): kind "gpt", title, generated = trace_timestamp(), layers/hidden/heads/kv_heads/head_dim/
//     intermediate (4*d_model)/vocab_size/seq_len/batch, logit_softcap 15, zero_init_projections true
//     (nanochat init zeroes every c_proj and lm_head), iterations, weight_bytes 4, input_ids;
//   rec.record_ids("input_ids", ...), rec.record_ids("targets", ...) for iteration 0;
//   for it in 0..iterations-1: rec.set_iteration(it); rec.set_phase(Phase::Forward); forward with
//     &rec as observer (names in the brief: transformer.wte ... logits, loss); rec.record_loss(it, loss);
//     rec.set_phase(Phase::Backward); backward showing grad.<param> / grad.<activation>; optimiser step.
//   Attention scores/probabilities: observe_causal(name, data, {B, H, T, T}, 0) (or observe() with the
//     masked entries set to anything: names ending .scores / .probs are read as causal).
//   auto findings = emit_trace(rec, rules, {o.format, o.out});  if (o.check) enforce_check(findings);
#pragma once

#include <string>
#include <vector>

namespace lmscope {

struct DefaultTraceOptions {
    std::vector<std::string> filters;      // --filter
    std::vector<std::string> save_values;  // --save-values
    std::string format;                    // --format ("" = trace.md + trace.html)
    std::string out;                       // --out
    std::string rules_file;                // --rules
    bool check = false;                    // --check
    int threads = 0;                       // --threads
};

/** Trains the seed configuration (GPT depth 4, d_model 256, 2 heads, vocab 65536, sequence 1024,
 *  3 iterations, batch 1) on Brown corpus text with a real optimiser step, tracing every component.
 *  Returns the process exit code (1 with --check when an error-level finding fired). */
int run_default_gpt_trace(const DefaultTraceOptions& o);

}  // namespace lmscope
