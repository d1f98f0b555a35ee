// lmscope eval --model DIR [--data PATH] [--json]: validation loss, perplexity and bits per byte of a
// GPT checkpoint (gpt_config.json, from `lmscope train`) or a Hugging Face checkpoint (config.json +
// tokenizer.json, run through DecoderModel). Default text: the Brown corpus's validation split; with
// --data, the whole of that text. Windows of --seq-len tokens, stride --seq-len (each target once).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "gpt/gpt.h"
#include "io/atomic_file.h"
#include "model/decoder.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"

namespace fs = std::filesystem;

namespace lmscope {

namespace {

struct EvalArgs {
    std::string model, data;
    bool json = false;
    bool fp8_activations = false;
    bool bf16_activations = false;
    int64_t seq_len = 0, batch = 1, max_tokens = 0;
};

void run_eval(const EvalArgs& a) {
    const fs::path dir(a.model);
    if (!fs::is_directory(dir)) fail("--model {}: not a folder", a.model);
    const bool is_gpt = fs::exists(dir / "gpt_config.json");
    if (!is_gpt && !fs::exists(dir / "config.json"))
        fail("--model {}: neither gpt_config.json nor config.json found", a.model);
    if (!fs::exists(dir / "tokenizer.json")) fail("--model {}: tokenizer.json missing", a.model);
    const std::string tok_json = read_file((dir / "tokenizer.json").string());
    Tokenizer tok = Tokenizer::from_json(tok_json, (dir / "tokenizer.json").string());

    std::vector<train::Document> docs;
    train::Corpus corpus = train::load_corpus(a.data);
    if (a.data.empty()) {
        docs = corpus.val;
    } else {
        docs = corpus.train;
        docs.insert(docs.end(), corpus.val.begin(), corpus.val.end());
    }
    const int32_t bos = tok.token_to_id("<|bos|>").value_or(-1);
    const train::TokenizedSplit split = train::tokenize_split(
        docs, bos, [&](std::string_view t) { return tok.encode(t, false); }, tok_json,
        a.data.empty() ? "val" : "all");
    std::vector<int32_t> nbytes(tok.vocab_size(), 0);
    for (int32_t i = 0; i < tok.vocab_size(); ++i)
        nbytes[i] = tok.is_special(i) ? 0 : static_cast<int32_t>(tok.token_bytes(i).size());

    train::EvalResult r;
    if (is_gpt) {
        apply_fp8_activations_flag(a.fp8_activations, 0, "cpu", "eval");
        apply_bf16_activations_flag(a.bf16_activations, nullptr, "cpu", "eval");
        gpt::GptConfig cfg = gpt::GptConfig::load(a.model);
        gpt::GptModel m(cfg);
        m.load((dir / "model.safetensors").string());
        const int64_t T = a.seq_len > 0 ? std::min(a.seq_len, cfg.sequence_len) : cfg.sequence_len;
        r = train::evaluate_stream(split.tokens, a.batch, T, a.max_tokens, nbytes,
                                   [&](const int32_t* x, const int32_t* y, int64_t B, int64_t TT, float* nats) {
                                       m.forward(x, y, B, TT);
                                       std::copy(m.losses().begin(), m.losses().end(), nats);
                                   });
    } else {
        DecoderModel m = DecoderModel::load(a.model);
        apply_fp8_activations_flag(a.fp8_activations, m.weights().num_fp8_linears, "cpu", "eval");
        apply_bf16_activations_flag(a.bf16_activations, &m.weights(), "cpu", "eval");
        const int64_t V = m.config().vocab_size;
        int64_t T = a.seq_len > 0 ? a.seq_len : 1024;
        if (m.config().max_position_embeddings > 0) T = std::min(T, m.config().max_position_embeddings);
        std::vector<float> logits;
        r = train::evaluate_stream(split.tokens, a.batch, T, a.max_tokens, nbytes,
                                   [&](const int32_t* x, const int32_t* y, int64_t B, int64_t TT, float* nats) {
                                       logits.resize(TT * V);
                                       for (int64_t b = 0; b < B; ++b) {
                                           KVCache cache = m.new_cache(TT);
                                           m.forward(x + b * TT, TT, cache, logits.data(), true);
                                           for (int64_t t = 0; t < TT; ++t) {
                                               const int32_t tg = y[b * TT + t];
                                               if (tg < 0 || tg >= V) {
                                                   nats[b * TT + t] = 0;
                                                   continue;
                                               }
                                               const float* z = logits.data() + t * V;
                                               float mx = -INFINITY;
                                               for (int64_t i = 0; i < V; ++i) mx = std::max(mx, z[i]);
                                               double s = 0;
                                               for (int64_t i = 0; i < V; ++i) s += std::exp(double(z[i] - mx));
                                               nats[b * TT + t] = static_cast<float>(mx + std::log(s) - z[tg]);
                                           }
                                       }
                                   });
    }
    if (a.json) {
        nlohmann::ordered_json j;
        j["loss"] = r.loss;
        j["ppl"] = r.ppl;
        j["bpb"] = r.bpb;
        j["tokens"] = r.tokens;
        fmt::print("{}\n", j.dump());
    } else {
        fmt::print("{}: {} on {} ({} tokens, {} bytes)\nloss {:.4f}  ppl {:.3f}  bpb {:.4f}\n", a.model,
                   is_gpt ? "GPT" : "HF model", a.data.empty() ? "Brown validation split" : a.data, r.tokens, r.bytes,
                   r.loss, r.ppl, r.bpb);
    }
}

}  // namespace

void register_eval(CLI::App& app) {
    auto a = std::make_shared<EvalArgs>();
    CLI::App* sub = app.add_subcommand("eval", "Validation loss, perplexity and bits per byte of a model on text");
    sub->add_option("--model", a->model, "Checkpoint folder (GPT from `lmscope train`, or Hugging Face)")->required();
    sub->add_option("--data", a->data, "A .txt file or folder (default: Brown's validation split)");
    sub->add_flag("--json", a->json, "Print {\"loss\", \"ppl\", \"bpb\", \"tokens\"}");
    sub->add_flag("--fp8-activations", a->fp8_activations, kFp8ActivationsHelp);
    sub->add_flag("--bf16-activations", a->bf16_activations, kBf16ActivationsHelp);
    sub->add_option("--seq-len", a->seq_len, "Window length (default: the model's sequence_len, HF: 1024)");
    sub->add_option("--batch", a->batch, "Windows per forward")->capture_default_str();
    sub->add_option("--max-tokens", a->max_tokens, "Evaluate at most this many targets (0: all)");
    sub->callback([a]() { run_eval(*a); });
}

}  // namespace lmscope
