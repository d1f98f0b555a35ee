// `lmscope trace` with no model: the seed's configuration (nanochat GPT depth 4, d_model 256,
// 2 heads of 128, vocab 65536, sequence 1024, batch 1) trained for 3 iterations on Brown corpus text
// with real AdamW + Muon steps, every component traced forward and backward. Unlike the seed's run
// (loss 11.090358 three times), the optimiser steps, so the loss goes down; the rules say so.
#include <fmt/format.h>

#include "core/thread_pool.h"
#include "gpt/gpt.h"
#include "gpt/optim.h"
#include "tokenizer/tokenizer.h"
#include "trace/default_run.h"
#include "trace/output.h"
#include "trace/recorder.h"
#include "trace/rules.h"
#include "train/data.h"
#include "train/gpt_cli.h"
#include "train/trainer.h"

namespace lmscope {

namespace {
constexpr int64_t kDepth = 4, kVocab = 65536, kSeqLen = 1024, kBatch = 1;
constexpr int kIterations = 3;
constexpr uint64_t kSeed = 42;
}  // namespace

int run_default_gpt_trace(const DefaultTraceOptions& o) {
    if (o.threads > 0) ThreadPool::set_global_threads(o.threads);
    const RuleConfig rules = o.rules_file.empty() ? default_rules() : load_rules(o.rules_file);

    const train::Corpus corpus = train::load_brown();
    const std::string tok_json = train::corpus_tokenizer_json(corpus, kVocab);
    const Tokenizer tok = Tokenizer::from_json(tok_json, "tokenizer.json");
    const int32_t bos = tok.token_to_id("<|bos|>").value_or(-1);
    const train::TokenizedSplit split = train::tokenize_split(
        corpus.train, bos, [&](std::string_view t) { return tok.encode(t, false); }, tok_json, "train");

    const gpt::GptConfig cfg = gpt::GptConfig::from_depth(kDepth, tok.vocab_size(), kSeqLen);
    gpt::GptModel model(cfg);
    model.init_nanochat(kSeed);
    gpt::Optimizer optim(model, gpt::OptimConfig{});
    train::BatchLoader loader(split.tokens, kBatch, kSeqLen);

    TraceRecorder rec(recorder_options(rules, o.filters, o.save_values));
    TraceMeta& m = rec.meta();
    fill_gpt_trace_meta(m, cfg, kBatch, kSeqLen);
    m.title = fmt::format("nanochat GPT depth {} on the Brown corpus (the seed's configuration)", kDepth);
    m.zero_init_projections = true;
    m.iterations = kIterations;
    m.facts = {{"Config", fmt::format("depth={}, d_model={}, heads={} x head_dim {}, kv_heads={}, vocab={}, "
                                      "sequence={}, batch={}, {:.2f}M parameters",
                                      cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.head_dim, cfg.n_kv_head,
                                      cfg.vocab_size, kSeqLen, kBatch, double(model.num_params()) / 1e6)},
               {"Data", fmt::format("{} ({} training tokens, BPE vocab {} trained on it)", corpus.label,
                                    split.tokens.size(), tok.vocab_size())},
               {"Optimiser", "AdamW (wte, lm_head) + Muon (block matrices), nanochat v0 settings; one step per "
                             "iteration"}};

    std::vector<int32_t> x, y;
    for (int it = 0; it < kIterations; ++it) {
        loader.next(x, y);
        if (it == 0) {
            m.input_ids = x;
            rec.record_ids("input_ids", x.data(), kBatch * kSeqLen, {kBatch, kSeqLen});
            rec.record_ids("targets", y.data(), kBatch * kSeqLen, {kBatch, kSeqLen});
        }
        rec.set_iteration(it);
        rec.set_phase(Phase::Forward);
        model.zero_grad();
        const float loss = model.forward(x.data(), y.data(), kBatch, kSeqLen, &rec);
        rec.record_loss(it, loss);
        rec.set_phase(Phase::Backward);
        model.backward(&rec);
        optim.step(it, kIterations);
        fmt::print(stderr, "iteration {}/{}: loss {:.6f}\n", it + 1, kIterations, loss);
    }
    const std::vector<Finding> findings = emit_trace(rec, rules, {o.format, o.out, false});
    if (o.check) enforce_check(findings);
    return 0;
}

}  // namespace lmscope
