// `lmscope train`: the nanochat v0 GPT on the Brown corpus (or --data), on the CPU.
// Flow: corpus -> BPE tokenizer trained on the train split (cached) -> token shards (cached) ->
// GptModel (nanochat init) + AdamW/Muon -> steps with a progress bar, validation loss / bpb every
// --eval-every steps, health messages (loss not moving, gradients exactly zero) -> checkpoint folder,
// written atomically:
//   model.safetensors  gpt_config.json  tokenizer.json  optimizer.safetensors  train_state.json
//   log.jsonl (one {"step", "loss", ...} line per step, "val" lines for evaluations)
// --resume DIR reloads all of it and continues exactly where the checkpoint stopped.
// --arch qwen3 trains a Qwen3ForCausalLM (qwen3train/model.h) through the same loop; its checkpoint is a
// Hugging Face one: config.json + model.safetensors (HF names) + tokenizer.json, plus the same
// optimizer.safetensors / train_state.json ("arch": "qwen3") / log.jsonl. The loop sees a model only
// through TrainModel below.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gpt/gpt.h"
#include "gpt/optim.h"

namespace lmscope::train {

/** What the training loop needs from a model (the GPT and the Qwen3 implement it). */
class TrainModel {
public:
    virtual ~TrainModel() = default;
    /** "gpt" or "qwen3" (train_state.json's "arch"). */
    virtual std::string arch() const = 0;
    /** One line for the start of a run: architecture and sizes. */
    virtual std::string describe() const = 0;
    virtual int64_t n_layer() const = 0;
    virtual int64_t vocab_size() const = 0;
    virtual int64_t num_params() const = 0;
    virtual void init(uint64_t seed) = 0;
    /** Mean loss of (B, T) ids against targets; losses() then holds the per-position nats. */
    virtual float forward(const int32_t* ids, const int32_t* targets, int64_t B, int64_t T) = 0;
    virtual const std::vector<float>& losses() const = 0;
    virtual void zero_grad() = 0;
    virtual void backward() = 0;
    virtual const std::vector<gpt::ParamInfo>& params() const = 0;
    virtual const float* param_data(const gpt::ParamInfo& p) const = 0;
    virtual const float* grad_data(const gpt::ParamInfo& p) const = 0;
    /** Why parameter p's gradient is exactly zero right now when that is expected (zero-initialised
     *  weights downstream), else "" (the health check then reports it). */
    virtual std::string zero_grad_reason(const gpt::ParamInfo& p) const = 0;
    /** The optimiser's view: buffers, Muon / AdamW split and AdamW learning rates. */
    virtual gpt::OptimTarget optim_target(const gpt::OptimConfig& oc) = 0;
    /** Writes the weights and the config file(s) into a checkpoint folder being built. */
    virtual void save(const std::string& dir) const = 0;
    /** Reads the weights of a checkpoint folder. */
    virtual void load(const std::string& dir) = 0;
    /** Query heads x head_dim (the attention FLOPs scale with it). */
    virtual int64_t attention_dim() const = 0;
    /** The matrices a token is multiplied by (every linear and the output head, not the embedding lookup). */
    virtual int64_t matmul_params() const = 0;
};

/**
 * Training FLOPs per token of a (B, T) step, forward + backward: 6 x matmul_params, plus causal attention
 * 6 x layers x attention_dim x T/2 x 2 (Q K^T and P V over T/2 keys on average). The model-FLOPs count
 * used for MFU (as nanochat's estimate_flops, with the causal half).
 */
double train_flops_per_token(const TrainModel& m, int64_t T);
/** The optimiser's Newton-Schulz FLOPs per step: 5 quintic iterations of 4 r^2 n + 2 r^3 per Muon matrix. */
double muon_flops_per_step(const TrainModel& m);

struct TrainOptions {
    std::string arch = "gpt";  // "gpt" (nanochat v0) or "qwen3"
    bool arch_set = false;     // given on the command line (checked against --resume)
    int64_t depth = 4;
    bool depth_set = false;  // given on the command line (checked against --resume)
    // --arch qwen3 sizes (0 / -1: derived from depth, see qwen3train/config.h)
    int64_t hidden = 0, heads = 0, kv_heads = 0, head_dim = 0, intermediate = 0;
    int tie = -1;  // -1 default (untied), 0 --no-tie, 1 --tie
    double lr_norm = 0.004;  // qwen3: AdamW lr of the RMSNorm weights (x (hidden/768)^-0.5)
    int64_t seq_len = 1024;
    int64_t batch = 1;
    int64_t steps = 0;   // 0: from tokens, else 100
    int64_t tokens = 0;  // token budget (steps = tokens / (batch * seq_len))
    double lr_embedding = 0.2, lr_unembedding = 0.004, lr_matrix = 0.02;
    uint64_t seed = 42;
    int64_t vocab_size = 0;  // 0: auto (65536 for >= 100 MB of text, 8192 for >= 1 MB, else 1024)
    std::string data;        // empty: Brown
    std::string out;
    int64_t eval_every = 0;  // 0: only at the end
    int64_t eval_tokens = 16384;
    int64_t save_every = 0;  // 0: only at the end
    int64_t stop_at = 0;     // stop (and save) after this many steps: an interrupted run, for --resume
    std::string resume;
    int64_t log_every = 10;
    bool muon_bf16 = true;
};

struct TrainSummary {
    int64_t steps = 0;
    double final_loss = 0;
    double val_loss = 0, val_bpb = 0;
    double tokens_per_second = 0;
};

struct Corpus;
/** HF tokenizer.json of a BPE trained on the corpus's train split; cached by (text, vocab size). */
std::string corpus_tokenizer_json(const Corpus& c, int64_t vocab);

/** Runs a training job; Error (one line, naming the file) on bad input, before anything is written. */
TrainSummary run_training(TrainOptions opt);

/** The model of a run: a fresh one from the options (sizes from depth) for vocab_size / seq_len. */
std::unique_ptr<TrainModel> make_train_model(const TrainOptions& opt, int64_t vocab_size, int64_t seq_len,
                                             int32_t bos_id);
/** The model of a checkpoint folder (gpt_config.json: GPT; config.json: Qwen3), weights not loaded. */
std::unique_ptr<TrainModel> train_model_of_checkpoint(const std::string& dir);

}  // namespace lmscope::train
