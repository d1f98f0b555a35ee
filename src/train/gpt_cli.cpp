// `lmscope run` / `lmscope trace` on a trained GPT (see gpt_cli.h).
#include "train/gpt_cli.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "core/error.h"
#include "core/thread_pool.h"
#include "gpt/gpt.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "tokenizer/tokenizer.h"
#include "trace/output.h"
#include "trace/recorder.h"
#include "trace/rules.h"

namespace lmscope {

namespace fs = std::filesystem;

namespace {

struct LoadedGpt {
    gpt::GptConfig cfg;
    gpt::GptModel model;
    std::optional<Tokenizer> tok;
};

LoadedGpt load_gpt(const std::string& dir, bool need_tokenizer) {
    gpt::GptConfig cfg = gpt::GptConfig::load(dir);
    LoadedGpt g{cfg, gpt::GptModel(cfg), std::nullopt};
    g.model.load(dir);
    const fs::path tj = fs::path(dir) / "tokenizer.json";
    if (fs::exists(tj))
        g.tok.emplace(Tokenizer::from_json(read_file(tj.string()), tj.string()));
    else if (need_tokenizer)
        fail("{}: tokenizer.json missing (needed for --prompt; give --ids instead)", dir);
    return g;
}

// <|bos|> then the prompt, as `lmscope train` tokenised its documents; or the ids as given
std::vector<int32_t> prompt_ids(const LoadedGpt& g, const std::string& prompt, const std::vector<int32_t>& ids) {
    std::vector<int32_t> out = ids;
    if (out.empty()) {
        if (auto bos = g.tok->token_to_id("<|bos|>")) out.push_back(*bos);
        const std::vector<int32_t> p = g.tok->encode(prompt, false);
        out.insert(out.end(), p.begin(), p.end());
    }
    if (out.empty()) throw UsageError("the prompt encodes to no tokens");
    for (int32_t id : out)
        if (id < 0 || id >= g.cfg.vocab_size)
            fail("token id {} is outside the model's vocabulary [0, {})", id, g.cfg.vocab_size);
    if (static_cast<int64_t>(out.size()) > g.cfg.sequence_len)
        fail("the prompt has {} tokens; this GPT's sequence_len is {}", out.size(), g.cfg.sequence_len);
    return out;
}

}  // namespace

bool is_gpt_model_dir(const std::string& dir) { return fs::exists(fs::path(dir) / "gpt_config.json"); }

void fill_gpt_trace_meta(TraceMeta& m, const gpt::GptConfig& cfg, int64_t batch, int64_t seq_len) {
    m.kind = "gpt";
    m.architecture = "nanochat v0 GPT";
    m.generated = trace_timestamp();
    m.batch = batch;
    m.seq_len = seq_len;
    m.vocab_size = cfg.vocab_size;
    m.hidden = cfg.n_embd;
    m.layers = cfg.n_layer;
    m.heads = cfg.n_head;
    m.kv_heads = cfg.n_kv_head;
    m.head_dim = cfg.head_dim;
    m.intermediate = cfg.ffn_dim();
    m.logit_softcap = cfg.softcap;
    m.weight_bytes = 4;
    m.rope_theta = cfg.rope_theta;
}

void gpt_run(const GptRunArgs& a) {
    LoadedGpt g = load_gpt(a.model, a.ids.empty());
    std::vector<int32_t> ids = prompt_ids(g, a.prompt, a.ids);
    const int64_t V = g.cfg.vocab_size, T0 = static_cast<int64_t>(ids.size());
    using clock = std::chrono::steady_clock;
    auto t0 = clock::now();
    g.model.forward(ids.data(), nullptr, 1, T0);
    const double prefill_s = std::chrono::duration<double>(clock::now() - t0).count();
    if (!a.save_logits.empty()) {
        SafetensorsWriter w;
        w.set_metadata("model", a.model);
        w.set_metadata("generator", std::string("lmscope ") + LMSCOPE_VERSION);
        w.add("logits", Tensor::from_f32({T0, V}, std::vector<float>(g.model.logits(), g.model.logits() + T0 * V)));
        w.write(a.save_logits);
    }
    const std::optional<int32_t> bos = g.tok ? g.tok->token_to_id("<|bos|>") : std::nullopt;
    Sampler sampler(a.sampling);
    std::optional<StreamDecoder> stream;
    if (g.tok) stream.emplace(*g.tok);
    std::vector<float> last(g.model.logits() + (T0 - 1) * V, g.model.logits() + T0 * V);
    double decode_s = 0;
    int generated = 0;
    for (int i = 0; i < a.max_new_tokens; ++i) {
        const int32_t next = sampler.sample(last.data(), V);
        ++generated;
        if (bos && next == *bos) break;  // a new document: this one is finished
        if (stream)
            fmt::print("{}", stream->push(next));
        else
            fmt::print("{}{}", i ? " " : "", next);
        std::fflush(stdout);
        if (i + 1 == a.max_new_tokens) break;
        ids.push_back(next);
        // no KV cache in the training engine: re-run the last sequence_len tokens
        const int64_t T = std::min<int64_t>(static_cast<int64_t>(ids.size()), g.cfg.sequence_len);
        auto t1 = clock::now();
        g.model.forward(ids.data() + ids.size() - static_cast<size_t>(T), nullptr, 1, T);
        decode_s += std::chrono::duration<double>(clock::now() - t1).count();
        last.assign(g.model.logits() + (T - 1) * V, g.model.logits() + T * V);
    }
    if (stream) fmt::print("{}", stream->flush());
    if (a.max_new_tokens > 0) fmt::print("\n");
    fmt::print(stderr, "GPT (no KV cache): prompt {} tokens in {:.3f} s; {} new tokens in {:.3f} s; {} threads\n", T0,
               prefill_s, std::max(0, generated - 1), decode_s, ThreadPool::global().size());
}

int gpt_trace(const GptTraceArgs& a) {
    if (a.base.threads > 0) ThreadPool::set_global_threads(a.base.threads);
    const RuleConfig rules = a.base.rules_file.empty() ? default_rules() : load_rules(a.base.rules_file);
    LoadedGpt g = load_gpt(a.model, a.ids.empty());
    const std::vector<int32_t> ids = prompt_ids(g, a.prompt, a.ids);
    const int64_t T = static_cast<int64_t>(ids.size());
    TraceRecorder rec(recorder_options(rules, a.base.filters, a.base.save_values));
    TraceMeta& m = rec.meta();
    fill_gpt_trace_meta(m, g.cfg, 1, T);
    m.title = a.model;
    m.input_ids = ids;
    m.prompt = a.prompt;
    m.facts = {{"Config", fmt::format("depth={}, d_model={}, heads={} x head_dim {}, kv_heads={}, vocab={}, "
                                      "sequence_len={}, {:.2f}M parameters",
                                      g.cfg.n_layer, g.cfg.n_embd, g.cfg.n_head, g.cfg.head_dim, g.cfg.n_kv_head,
                                      g.cfg.vocab_size, g.cfg.sequence_len, double(g.model.num_params()) / 1e6)}};
    rec.record_ids("input_ids", ids.data(), T, {1, T});
    rec.set_phase(Phase::Forward);
    g.model.forward(ids.data(), nullptr, 1, T, &rec);
    const std::vector<Finding> findings = emit_trace(rec, rules, {a.base.format, a.base.out, false});
    if (a.base.check) enforce_check(findings);
    return 0;
}

}  // namespace lmscope
