#include "train/trainer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "core/error.h"
#include "core/thread_pool.h"
#include "core/progress.h"
#include "gpt/gpt.h"
#include "gpt/optim.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "qwen3train/config.h"
#include "qwen3train/train_model.h"
#include "tokenizer/tokenizer.h"
#include "train/bpe_train.h"
#include "train/data.h"

namespace fs = std::filesystem;

namespace lmscope::train {

namespace {

using Clock = std::chrono::steady_clock;

int64_t auto_vocab(int64_t bytes) {
    if (bytes >= 100ll * 1000 * 1000) return 65536;
    if (bytes >= 1000ll * 1000) return 8192;
    return 1024;
}

uint64_t fnv1a(std::string_view s, uint64_t h = 0xcbf29ce484222325ull) {
    for (unsigned char c : s) {
        h ^= c;
        h *= 0x100000001b3ull;
    }
    return h;
}

std::vector<int32_t> token_nbytes(const Tokenizer& tok) {
    std::vector<int32_t> nb(tok.vocab_size(), 0);
    for (int32_t i = 0; i < tok.vocab_size(); ++i) nb[i] = tok.is_special(i) ? 0 : int32_t(tok.token_bytes(i).size());
    return nb;
}

bool is_checkpoint_dir(const std::string& d) {
    return fs::exists(fs::path(d) / "train_state.json") || fs::exists(fs::path(d) / "gpt_config.json");
}

}  // namespace

// The tokenizer for a corpus: trained once, cached by (train text, vocab size).
std::string corpus_tokenizer_json(const Corpus& c, int64_t vocab) {
    uint64_t h = fnv1a(fmt::format("bpe v1 vocab {}", vocab));
    for (const Document& d : c.train) h = fnv1a(d.text, h);
    const fs::path file = fs::path(cache_dir()) / "tokenizers" / fmt::format("{:016x}.json", h);
    if (fs::exists(file)) return read_file(file.string());
    std::vector<std::string_view> texts;
    for (const Document& d : c.train) texts.push_back(d.text);
    BpeTrainStats st;
    BpeTokenizer tk = BpeTokenizer::train(texts, vocab, &st);
    fmt::print("tokenizer: trained BPE on {:.1f} MB ({} unique pre-tokens) in {:.1f}s: {} merges, vocab {}\n",
               double(st.bytes) / 1e6, st.unique_words, st.seconds, st.merges, tk.vocab_size());
    std::string json = tk.to_hf_json();
    std::error_code ec;
    fs::create_directories(file.parent_path(), ec);
    if (!ec) write_text_atomic(file.string(), json);
    return json;
}

double train_flops_per_token(const TrainModel& m, int64_t T) {
    return 6.0 * double(m.matmul_params()) + 6.0 * double(m.n_layer()) * double(m.attention_dim()) * double(T);
}

double muon_flops_per_step(const TrainModel& m) {
    double f = 0;
    for (const gpt::ParamInfo& p : m.params())
        if (p.matrix && p.shape.size() == 2) {
            const double r = double(std::min(p.shape[0], p.shape[1])), n = double(std::max(p.shape[0], p.shape[1]));
            f += 5.0 * (4.0 * r * r * n + 2.0 * r * r * r);
        }
    return f;
}

namespace {

// nanochat's GPT (gpt/gpt.h) as a TrainModel.
class GptTrainable final : public TrainModel {
public:
    explicit GptTrainable(const gpt::GptConfig& cfg) : m_(cfg) {}

    std::string arch() const override { return "gpt"; }
    std::string describe() const override {
        const gpt::GptConfig& c = m_.config();
        return fmt::format("nanochat GPT depth {} (n_embd {}, {} heads x {}, vocab {}), {:.2f}M parameters", c.n_layer,
                           c.n_embd, c.n_head, c.head_dim, c.vocab_size, double(m_.num_params()) / 1e6);
    }
    int64_t n_layer() const override { return m_.config().n_layer; }
    int64_t vocab_size() const override { return m_.config().vocab_size; }
    int64_t num_params() const override { return m_.num_params(); }
    void init(uint64_t seed) override { m_.init_nanochat(seed); }
    float forward(const int32_t* ids, const int32_t* targets, int64_t B, int64_t T) override {
        return m_.forward(ids, targets, B, T);
    }
    const std::vector<float>& losses() const override { return m_.losses(); }
    void zero_grad() override { m_.zero_grad(); }
    void backward() override { m_.backward(); }
    const std::vector<gpt::ParamInfo>& params() const override { return m_.params(); }
    const float* param_data(const gpt::ParamInfo& p) const override { return m_.param(p.name); }
    const float* grad_data(const gpt::ParamInfo& p) const override { return m_.grad(p.name); }
    // Expected while what sits downstream is still zero: every gradient but lm_head's while lm_head = 0
    // (step 0), and a layer's c_q/c_k/c_v (c_fc) while its attn.c_proj (mlp.c_proj) = 0 (step 1: Muon's
    // first update of a zero gradient is zero).
    std::string zero_grad_reason(const gpt::ParamInfo& p) const override {
        if (p.name != "lm_head.weight" && all_zero(m_.param("lm_head.weight"), m_.info("lm_head.weight").numel))
            return "lm_head is zero-initialised (nanochat init)";
        if (p.matrix && p.name.find("c_proj") == std::string::npos) {
            const std::string proj = p.name.substr(0, p.name.rfind('.', p.name.rfind('.') - 1)) + ".c_proj.weight";
            if (all_zero(m_.param(proj), m_.info(proj).numel)) return proj + " is still zero (zero-initialised)";
        }
        return "";
    }
    gpt::OptimTarget optim_target(const gpt::OptimConfig& oc) override { return gpt::gpt_optim_target(m_, oc); }
    void save(const std::string& dir) const override {
        m_.save((fs::path(dir) / "model.safetensors").string(), {{"generator", "lmscope train"}});
        write_text_atomic((fs::path(dir) / "gpt_config.json").string(), m_.config().to_json());
    }
    void load(const std::string& dir) override { m_.load((fs::path(dir) / "model.safetensors").string()); }
    int64_t attention_dim() const override { return m_.config().q_dim(); }
    int64_t matmul_params() const override { return m_.num_params() - m_.info("transformer.wte.weight").numel; }

private:
    static bool all_zero(const float* v, int64_t n) {
        for (int64_t i = 0; i < n; ++i)
            if (v[i] != 0.0f) return false;
        return true;
    }
    gpt::GptModel m_;
};

qwen3train::Qwen3Config::Overrides qwen3_overrides(const TrainOptions& o) {
    qwen3train::Qwen3Config::Overrides ov;
    ov.hidden = o.hidden;
    ov.heads = o.heads;
    ov.kv_heads = o.kv_heads;
    ov.head_dim = o.head_dim;
    ov.intermediate = o.intermediate;
    ov.tie = o.tie;
    return ov;
}

bool has_qwen3_sizes(const TrainOptions& o) {
    return o.hidden > 0 || o.heads > 0 || o.kv_heads > 0 || o.head_dim > 0 || o.intermediate > 0 || o.tie >= 0;
}

}  // namespace

std::unique_ptr<TrainModel> make_train_model(const TrainOptions& opt, int64_t vocab_size, int64_t seq_len,
                                             int32_t bos_id) {
    if (opt.arch == "gpt") {
        if (has_qwen3_sizes(opt))
            throw UsageError("--hidden/--heads/--kv-heads/--head-dim/--intermediate/--tie/--no-tie need --arch qwen3 "
                             "(the GPT is sized by --depth alone)");
        return std::make_unique<GptTrainable>(gpt::GptConfig::from_depth(opt.depth, vocab_size, seq_len));
    }
    if (opt.arch == "qwen3") {
        qwen3train::Qwen3Config c =
            qwen3train::Qwen3Config::from_depth(opt.depth, vocab_size, seq_len, qwen3_overrides(opt));
        c.bos_token_id = bos_id;
        c.eos_token_id = bos_id;  // documents are delimited by <|bos|>: predicting it ends the text
        return qwen3train::make_qwen3_train_model(c);
    }
    throw UsageError(fmt::format("--arch {}: expected gpt (nanochat v0) or qwen3", opt.arch));
}

std::unique_ptr<TrainModel> train_model_of_checkpoint(const std::string& dir) {
    if (fs::exists(fs::path(dir) / "gpt_config.json"))
        return std::make_unique<GptTrainable>(gpt::GptConfig::load(dir));
    if (fs::exists(fs::path(dir) / "config.json"))
        return qwen3train::make_qwen3_train_model(qwen3train::Qwen3Config::load(dir));
    fail("{}: neither gpt_config.json nor config.json (not a training checkpoint)", dir);
}

TrainSummary run_training(TrainOptions opt) {
    if (opt.arch != "gpt" && opt.arch != "qwen3")
        throw UsageError(fmt::format("--arch {}: expected gpt (nanochat v0) or qwen3", opt.arch));
    if (opt.out.empty())
        opt.out = opt.resume.empty() ? fmt::format("runs/{}-d{}", opt.arch, opt.depth) : opt.resume;
    if (opt.batch < 1 || opt.seq_len < 2) throw UsageError("--batch must be >= 1 and --seq-len >= 2");
    // never replace a folder that is not ours
    if (fs::exists(opt.out) && opt.out != opt.resume) {
        if (!fs::is_directory(opt.out)) fail("--out {}: exists and is not a folder; nothing written", opt.out);
        if (!fs::is_empty(opt.out) && !is_checkpoint_dir(opt.out))
            fail("--out {}: folder exists and is not an lmscope checkpoint; refusing to replace it", opt.out);
    }

    nlohmann::json state;
    std::string tok_json;
    std::unique_ptr<TrainModel> model;
    if (!opt.resume.empty()) {
        const fs::path r(opt.resume);
        for (const char* f : {"train_state.json", "tokenizer.json", "model.safetensors", "optimizer.safetensors"})
            if (!fs::exists(r / f)) fail("--resume {}: {} missing (not a training checkpoint)", opt.resume, f);
        try {
            state = nlohmann::json::parse(read_file((r / "train_state.json").string()));
        } catch (const nlohmann::json::exception& e) {
            fail("{}: not valid JSON ({})", (r / "train_state.json").string(), e.what());
        }
        const std::string arch = state.value("arch", std::string("gpt"));
        if (!fs::exists(r / (arch == "gpt" ? "gpt_config.json" : "config.json")))
            fail("--resume {}: {} missing (not a training checkpoint)", opt.resume,
                 arch == "gpt" ? "gpt_config.json" : "config.json");
        if (opt.arch_set && opt.arch != arch)
            fail("--resume {}: the checkpoint is a {} model, --arch says {}; nothing written", opt.resume, arch,
                 opt.arch);
        model = train_model_of_checkpoint(opt.resume);
        if (opt.depth_set && opt.depth != model->n_layer())
            fail("--resume {}: the checkpoint has depth {}, --depth says {}; nothing written", opt.resume,
                 model->n_layer(), opt.depth);
        if (has_qwen3_sizes(opt))
            fail("--resume {}: the sizes come from the checkpoint; drop --hidden/--heads/--kv-heads/--head-dim/"
                 "--intermediate/--tie/--no-tie",
                 opt.resume);
        opt.arch = arch;
        tok_json = read_file((r / "tokenizer.json").string());
        opt.depth = model->n_layer();
        opt.seq_len = state.at("seq_len").get<int64_t>();
        opt.batch = state.at("batch").get<int64_t>();
        if (opt.steps == 0 && opt.tokens == 0) opt.steps = state.at("num_iterations").get<int64_t>();
        opt.seed = state.at("seed").get<uint64_t>();
        opt.lr_embedding = state.at("lr_embedding").get<double>();
        opt.lr_unembedding = state.at("lr_unembedding").get<double>();
        opt.lr_matrix = state.at("lr_matrix").get<double>();
        if (state.contains("lr_norm")) opt.lr_norm = state.at("lr_norm").get<double>();
        opt.muon_bf16 = state.at("muon_bf16").get<bool>();
        if (opt.data.empty()) opt.data = state.at("data").get<std::string>();
    } else if (opt.arch == "gpt" && has_qwen3_sizes(opt)) {
        throw UsageError("--hidden/--heads/--kv-heads/--head-dim/--intermediate/--tie/--no-tie need --arch qwen3 "
                         "(the GPT is sized by --depth alone)");
    } else if (opt.arch == "qwen3") {
        // sizes checked before the corpus and tokenizer work (vocab and sequence length do not matter here)
        (void)qwen3train::Qwen3Config::from_depth(opt.depth, 1024, opt.seq_len, qwen3_overrides(opt));
    }

    const Corpus corpus = load_corpus(opt.data);
    if (corpus.train.empty() || corpus.val.empty())
        fail("{}: needs text for both a train and a validation split", corpus.label);
    int64_t train_bytes = 0;
    for (const Document& d : corpus.train) train_bytes += static_cast<int64_t>(d.text.size());
    if (tok_json.empty()) {
        const int64_t vocab = opt.vocab_size > 0 ? opt.vocab_size : auto_vocab(train_bytes);
        tok_json = corpus_tokenizer_json(corpus, vocab);
    }
    Tokenizer tok = Tokenizer::from_json(tok_json, "tokenizer.json");
    const int32_t bos = tok.token_to_id("<|bos|>").value_or(-1);
    auto encode = [&](std::string_view t) { return tok.encode(t, false); };
    const TokenizedSplit train_split = tokenize_split(corpus.train, bos, encode, tok_json, "train");
    const TokenizedSplit val_split = tokenize_split(corpus.val, bos, encode, tok_json, "val");
    const std::vector<int32_t> nbytes = token_nbytes(tok);

    if (!model) model = make_train_model(opt, tok.vocab_size(), opt.seq_len, bos);
    const int64_t tokens_per_step = opt.batch * opt.seq_len;
    const int64_t num_iterations = opt.steps > 0 ? opt.steps : opt.tokens > 0 ? std::max<int64_t>(1, opt.tokens / tokens_per_step) : 100;

    gpt::OptimConfig oc;
    oc.lr_embedding = opt.lr_embedding;
    oc.lr_unembedding = opt.lr_unembedding;
    oc.lr_matrix = opt.lr_matrix;
    oc.lr_norm = opt.lr_norm;
    oc.muon_bf16 = opt.muon_bf16;
    gpt::Optimizer optim(model->optim_target(oc), oc);
    BatchLoader loader(train_split.tokens, opt.batch, opt.seq_len);
    int64_t step = 0;
    if (!opt.resume.empty()) {
        model->load(opt.resume);
        SafetensorsFile of = SafetensorsFile::open((fs::path(opt.resume) / "optimizer.safetensors").string());
        step = state.at("step").get<int64_t>();
        optim.load_from(of, step, of.path());
        loader.set_position(state.at("data_position").get<int64_t>());
        fmt::print("resuming {} at step {} of {}\n", opt.resume, step, num_iterations);
    } else {
        model->init(opt.seed);
    }
    fmt::print("model: {}; batch {} x {} tokens, {} steps; data {} ({} train / {} val tokens)\n", model->describe(),
               opt.batch, opt.seq_len, num_iterations, corpus.label, train_split.tokens.size(), val_split.tokens.size());

    // log: carried over from the checkpoint on resume
    std::string log_text;
    if (!opt.resume.empty() && fs::exists(fs::path(opt.resume) / "log.jsonl"))
        log_text = read_file((fs::path(opt.resume) / "log.jsonl").string());

    auto evaluate = [&]() {
        return evaluate_stream(val_split.tokens, opt.batch, opt.seq_len, opt.eval_tokens, nbytes,
                               [&](const int32_t* x, const int32_t* y, int64_t B, int64_t T, float* nats) {
                                   model->forward(x, y, B, T);
                                   std::copy(model->losses().begin(), model->losses().end(), nats);
                               });
    };
    auto save = [&](int64_t next_step) {
        nlohmann::ordered_json st;
        st["arch"] = model->arch();
        st["step"] = next_step;
        st["num_iterations"] = num_iterations;
        st["data_position"] = loader.position();
        st["seed"] = opt.seed;
        st["batch"] = opt.batch;
        st["seq_len"] = opt.seq_len;
        st["lr_embedding"] = opt.lr_embedding;
        st["lr_unembedding"] = opt.lr_unembedding;
        st["lr_matrix"] = opt.lr_matrix;
        if (model->arch() != "gpt") st["lr_norm"] = opt.lr_norm;
        st["muon_bf16"] = opt.muon_bf16;
        st["data"] = opt.data;
        st["corpus"] = corpus.label;
        write_dir_atomic(opt.out, [&](const std::string& tmp) {
            const fs::path d(tmp);
            model->save(tmp);
            SafetensorsWriter w;
            w.set_metadata("step", std::to_string(next_step));
            optim.save_to(w);
            w.write((d / "optimizer.safetensors").string());
            write_text_atomic((d / "tokenizer.json").string(), tok_json);
            write_text_atomic((d / "train_state.json").string(), st.dump(2) + "\n");
            write_text_atomic((d / "log.jsonl").string(), log_text);
        });
    };

    TrainSummary sum;
    const double ln_v = std::log(double(model->vocab_size()));
    std::vector<double> recent;
    bool warned_flat = false;
    std::map<std::string, std::vector<std::string>> expected_zero;
    std::set<std::string> reported_zero;
    ProgressBar bar("train", double(num_iterations), "steps");
    std::vector<int32_t> x, y;
    const auto t_start = Clock::now();
    int64_t tokens_done = 0;
    const int64_t last = opt.stop_at > 0 ? std::min(opt.stop_at, num_iterations) : num_iterations;
    for (; step < last; ++step) {
        if (opt.eval_every > 0 && step % opt.eval_every == 0 && step > 0) {
            EvalResult ev = evaluate();
            fmt::print("step {:5d} | val loss {:.4f} | val bpb {:.4f}\n", step, ev.loss, ev.bpb);
            log_text += nlohmann::json{{"step", step}, {"val_loss", ev.loss}, {"val_bpb", ev.bpb}}.dump() + "\n";
        }
        const auto t0 = Clock::now();
        loader.next(x, y);
        model->zero_grad();
        const float loss = model->forward(x.data(), y.data(), opt.batch, opt.seq_len);
        if (!std::isfinite(loss)) fail("step {}: loss is {} (diverged); last checkpoint kept", step, loss);
        model->backward();
        // health: gradients that are exactly zero (expected only while a weight downstream is still zero)
        auto all_zero = [&](const float* v, int64_t n) {
            for (int64_t i = 0; i < n; ++i)
                if (v[i] != 0.0f) return false;
            return true;
        };
        for (const gpt::ParamInfo& p : model->params()) {
            if (!all_zero(model->grad_data(p), p.numel)) continue;
            const std::string why = model->zero_grad_reason(p);
            if (!why.empty()) {
                expected_zero[why].push_back(p.name);
            } else {
                fmt::print("health: step {}: the gradient of {} is exactly zero: this parameter is not learning "
                           "(not connected to the loss, or its input is all zero)\n",
                           step, p.name);
            }
        }
        for (const auto& [why, names] : expected_zero) {
            if (!reported_zero.insert(why).second) continue;  // once per cause
            fmt::print("health: step {}: {} gradient{} exactly zero ({}{}) because {}: expected at the start, they "
                       "move once that weight does\n",
                       step, names.size(), names.size() == 1 ? " is" : "s are", names.front(),
                       names.size() > 1 ? fmt::format(" and {} more", names.size() - 1) : "", why);
        }
        expected_zero.clear();
        const double gnorm = optim.step(step, num_iterations);
        const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
        tokens_done += tokens_per_step;
        log_text += nlohmann::json{{"step", step}, {"loss", loss}, {"grad_norm", gnorm},
                                   {"lrm", gpt::lr_multiplier(step, num_iterations, oc)}, {"dt", dt}}.dump() + "\n";
        // health: the loss must move
        recent.push_back(loss);
        if (recent.size() > 4) recent.erase(recent.begin());
        if (!warned_flat && recent.size() >= 3 && step >= 2) {
            bool flat = true;
            for (double l : recent) flat = flat && std::abs(l - recent.front()) < 1e-6;
            if (flat) {
                warned_flat = true;
                const bool at_lnv = std::abs(recent.front() - ln_v) < 1e-4;
                fmt::print("health: the loss has not moved for {} steps ({:.6f}{}): likely no optimiser step is "
                           "applied or the learning rate is zero (the seed run sat at ln(65536) = 11.090355 three "
                           "times)\n",
                           recent.size(), recent.front(), at_lnv ? fmt::format(" = ln(V = {})", model->vocab_size()) : "");
            }
        }
        const double elapsed = std::chrono::duration<double>(Clock::now() - t_start).count();
        sum.tokens_per_second = double(tokens_done) / elapsed;
        bar.set(double(step + 1), fmt::format("loss {:.4f} | {:.0f} tok/s", loss, sum.tokens_per_second));
        if (opt.log_every > 0 && (step % opt.log_every == 0 || step + 1 == last))
            fmt::print("step {:5d}/{} | loss {:.6f} | grad norm {:.4f} | lrm {:.3f} | {:.0f} tok/s\n", step,
                       num_iterations, loss, gnorm, gpt::lr_multiplier(step, num_iterations, oc), sum.tokens_per_second);
        sum.final_loss = loss;
        if (opt.save_every > 0 && (step + 1) % opt.save_every == 0 && step + 1 < last) save(step + 1);
    }
    bar.finish();
    sum.steps = step;
    if (step >= num_iterations) {
        EvalResult ev = evaluate();
        sum.val_loss = ev.loss;
        sum.val_bpb = ev.bpb;
        fmt::print("step {:5d} | val loss {:.4f} | val bpb {:.4f} | ppl {:.2f} ({} tokens)\n", step, ev.loss, ev.bpb,
                   ev.ppl, ev.tokens);
        log_text += nlohmann::json{{"step", step}, {"val_loss", ev.loss}, {"val_bpb", ev.bpb}}.dump() + "\n";
    }
    save(step);
    fmt::print("saved {} (step {}, {:.0f} tok/s)\n", opt.out, step, sum.tokens_per_second);
    const double fpt = train_flops_per_token(*model, opt.seq_len), muon = muon_flops_per_step(*model);
    fmt::print("compute: {:.1f} MFLOP/token forward+backward (+ {:.1f} MFLOP/token of Muon Newton-Schulz) = {:.1f} "
               "GFLOP/s model, {:.1f} GFLOP/s with the optimiser, {} threads\n",
               fpt / 1e6, muon / double(tokens_per_step) / 1e6, fpt * sum.tokens_per_second / 1e9,
               (fpt + muon / double(tokens_per_step)) * sum.tokens_per_second / 1e9, ThreadPool::global().size());
    return sum;
}

}  // namespace lmscope::train
