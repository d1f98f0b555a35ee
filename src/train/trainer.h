// `lmscope train`: the nanochat v0 GPT on the Brown corpus (or --data), on the CPU.
// Flow: corpus -> BPE tokenizer trained on the train split (cached) -> token shards (cached) ->
// GptModel (nanochat init) + AdamW/Muon -> steps with a progress bar, validation loss / bpb every
// --eval-every steps, health messages (loss not moving, gradients exactly zero) -> checkpoint folder,
// written atomically:
//   model.safetensors  gpt_config.json  tokenizer.json  optimizer.safetensors  train_state.json
//   log.jsonl (one {"step", "loss", ...} line per step, "val" lines for evaluations)
// --resume DIR reloads all of it and continues exactly where the checkpoint stopped.
#pragma once

#include <cstdint>
#include <string>

namespace lmscope::train {

struct TrainOptions {
    std::string arch = "gpt";
    int64_t depth = 4;
    bool depth_set = false;  // given on the command line (checked against --resume)
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

}  // namespace lmscope::train
